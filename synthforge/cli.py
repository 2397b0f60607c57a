"""The ``synthforge`` command line.

Heavy imports (polars, numpy, torch) happen inside the commands, so ``synthforge
--help`` answers at once. A :class:`SynthForgeError` is printed as a message, with
no traceback. Exit status: 0 done, 2 bad input (recipe, data, model, plugin), 3 a
failed gate (``run``, and ``evaluate`` when an error gate fails), so a scheduler can
tell "fix the input" from "the output was not good enough".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from synthforge.errors import SynthForgeError

app = typer.Typer(
    name="synthforge",
    help="Learn a real table and produce synthetic or augmented versions of it, with quality and privacy gates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

PluginsDir = Annotated[
    Path | None, typer.Option("--plugins-dir", help="Load every .py file in this folder as a plugin.")
]
Params = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Override a recipe key: key.path=value (YAML value), repeatable."),
]
Store = Annotated[
    str, typer.Option("--store", envvar="SYNTHFORGE_JOBS_STORE",
                      help="Job store URL: sqlite:///path.db or postgresql+psycopg://user@host/db.")
]
DEFAULT_STORE = "sqlite:///synthforge-jobs.db"
EXIT_BAD_INPUT, EXIT_GATE_FAILED = 2, 3


def _print_version(asked: bool) -> None:
    if asked:
        from synthforge import __version__

        typer.echo(f"synthforge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Learn a real table and produce synthetic or augmented versions of it, with quality and privacy gates."""


def _plugin_manager(plugins_dir: Path | None = None) -> Any:
    from synthforge.plugins import get_plugin_manager

    return get_plugin_manager(plugins_dir=plugins_dir)


def _console(stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped into another program, tables keep their full cells (`synthforge plugins | grep …`), not 80 columns,
    # unless $COLUMNS says how wide to be.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 1_000
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def escape(text: object) -> str:
    """Text shown as it is: rich would read ``[violent_recid]`` in a message as markup and drop it."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
    param: Params = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Run a recipe: load, fit, sample, check, and write the dataset, model and reports atomically."""
    from synthforge.engine import run as run_recipe
    from synthforge.recipe import load_recipe, parse_overrides

    console = _console()
    pm = _plugin_manager(plugins_dir)
    log = (lambda message: None) if quiet else (lambda message: console.print(f"[dim]•[/dim] {escape(message)}"))
    loaded = load_recipe(recipe, pm=pm, overrides=parse_overrides(param or []))
    # In a terminal, progress bars show each stage and check as it runs, and the results print once, as a
    # table; piped (a job's log), each check's line is logged as it ends instead. Quiet: only the result.
    progress = not quiet and sys.stderr.isatty()
    try:
        result = run_recipe(loaded, pm=pm, log=log, progress=progress)
    except SynthForgeError as error:
        failures = getattr(error, "failures", None)
        if failures and progress:  # otherwise logged already; the error message names each failed gate
            _print_checks(console, failures)
        raise
    if progress:
        _print_checks(console, result.checks)
    for line in result.privacy_off:
        console.print(f"[bold red]privacy protection off:[/bold red] {escape(line)}")
    if result.privacy is not None:
        spent, asked = result.privacy["spent"], result.privacy["requested"]
        console.print(f"[bold]differential privacy:[/bold] spent ε = {spent['epsilon']:.4g}, δ = {spent['delta']:.3g} "
                      f"of ε = {asked['epsilon']:g}, δ = {asked['delta']:.3g} (the dataset and the model; the checks "
                      f"and the report read the real rows and are not covered)")
    tables = {k.removesuffix(".synthetic"): v for k, v in result.rows.items() if k.endswith(".synthetic")}
    if tables:
        made = ", ".join(f"{name} {rows:,}" for name, rows in tables.items()) + " synthetic rows"
    elif "imputed_cells" in result.rows:
        made = (f"{result.rows['imputed_cells']:,} cells imputed in {result.rows['imputed_rows']:,} of "
                f"{result.rows['real']:,} rows")
    else:
        unit = "images" if getattr(result.generator, "data_kind", "table") == "images" else "rows"
        made = f"{result.rows.get('synthetic', 0):,} synthetic {unit}" + (
            f" + {result.rows['real']:,} real" if result.rows.get("real") else "") + (
            f" ({result.rows['copies_redrawn']:,} copies of rare training rows drawn again)"
            if result.rows.get("copies_redrawn") else "")
    warned = [c.name for c in result.checks if not c.passed and c.on_fail == "warn"]
    console.print(f"[bold green]done[/bold green] in {sum(result.timings.values()):.1f} s — {made}" + (
        f"; [yellow]{len(warned)} quality gate{'s' if len(warned) != 1 else ''} warned[/yellow] "
        f"({', '.join(warned)}: see the report)" if warned else ""))
    console.print(f"dataset: {result.dataset_path}")
    console.print(f"report:  {result.output_path / 'report.html'}")


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    data: Annotated[bool, typer.Option("--data/--no-data", help="Also read the source and check every column and "
                                                               "rule against it (default).")] = True,
    plugins_dir: PluginsDir = None,
) -> None:
    """Check a recipe and its data without training: every mistake in its keys at once (with their lines), then every
    way it does not fit its data, each with its fix."""
    from synthforge.engine import validate_recipe
    from synthforge.recipe import load_recipe

    pm = _plugin_manager(plugins_dir)
    loaded = load_recipe(recipe, pm=pm)
    console = _console()
    if data:
        for line in validate_recipe(loaded, pm):
            console.print(f"[dim]•[/dim] {escape(line)}")
    console.print(f"{escape(recipe)}: valid ({loaded.output.mode} with {loaded.generator.name!r}"
                  f"{', data checked' if data else ''})")


@app.command()
def profile(
    data: Annotated[str, typer.Argument(help="A table (CSV, Parquet, NDJSON, Arrow IPC), a folder of them (its "
                                             "keys proposed), or a database's URL "
                                             "(postgresql://user@host/db, sqlite:///file.db; a password as "
                                             "${VARIABLE} or --password-file).")],
    column: Annotated[list[str] | None, typer.Option(
        "--column", help="A column's kind, name=kind, as a recipe's source.columns; repeatable.")] = None,
    max_categories: Annotated[int, typer.Option(min=2, help="As a recipe's source.max_categories.")] = 1000,
    generator: Annotated[str, typer.Option(help="The generator the starter recipe names.")] = "copula",
    schema: Annotated[str | None, typer.Option(help="A database's schema (default: its default one).")] = None,
    password_file: Annotated[Path | None, typer.Option(help="A file holding the database's password.")] = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Print a table's profile and the rules every row keeps, as a starter recipe: `profile data.csv > recipe.yaml`;
    for a folder of tables, the keys found in their values; for a database, its tables, keys and rules from its
    catalog: `profile postgresql://… > recipe.yaml`."""
    from synthforge.data.database import is_database_url

    pm = _plugin_manager(plugins_dir)
    pm.get_generator(generator)  # an unknown name lists the installed ones
    if is_database_url(data):
        from synthforge.data.database import database_recipe

        typer.echo(database_recipe(data, schema, password_file, generator=generator), nl=False)
        return
    if Path(data).is_dir():
        from synthforge.data.keys import folder_recipe

        typer.echo(folder_recipe(Path(data), generator=generator, pm=pm), nl=False)
        return
    from synthforge.data.io import read_table
    from synthforge.data.schema import column_overrides
    from synthforge.profile import profile_table, starter_recipe

    table = read_table(Path(data), pm=pm)
    overrides = column_overrides({key: str(value) for key, value in _key_values(column or [], "--column").items()})
    found = profile_table(table, path=data, overrides=overrides, max_categories=max_categories)
    typer.echo(starter_recipe(found, generator=generator), nl=False)


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    plugins_dir: PluginsDir = None,
) -> None:
    """List installed plugins, their versions and hooks, what they provide, and any that failed to load."""
    pm = _plugin_manager(plugins_dir)
    description = pm.describe()
    if as_json:
        typer.echo(json.dumps(description, indent=2))
        return
    from rich.table import Column, Table

    # A plugin's name is what a user types (`pip uninstall`, a recipe's generator): never cut. What it provides
    # is one column that wraps between names, so an 80-column terminal cuts no word either.
    longest = max((len(plugin["name"]) for plugin in description["plugins"]), default=6)
    table = Table(Column("plugin", no_wrap=True, min_width=longest), Column("origin", no_wrap=True),
                  Column("version", no_wrap=True), Column("provides", ratio=1))
    for plugin in description["plugins"]:
        provides = [f"{what}: {', '.join(plugin[what])}" for what in ("generators", "checks") if plugin[what]]
        hooks = ", ".join(h.removeprefix("synthforge_") for h in plugin["hooks"])
        table.add_row(plugin["name"], plugin["origin"], plugin["version"] or "",
                      "\n".join([*provides, f"hooks: {hooks}"]))
    console = _console()
    console.print(table)
    for error in description["errors"]:
        console.print(f"[bold red]failed to load[/bold red] {escape(error['name'])} "
                      f"({escape(error['distribution'] or 'unknown distribution')} {escape(error['version'] or '')}): "
                      f"{escape(error['error'])}")


@app.command()
def sample(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by a run (…/model).")],
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="How many rows.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file; its extension picks the format unless "
                                                          "--format does; - writes CSV to standard output.")],
    condition: Annotated[
        list[str] | None, typer.Option("--condition", "-c", help="column=value, repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Rows per batch written.")] = 100_000,
    partitions: Annotated[int, typer.Option(
        min=1, help="Above 1: sample in parallel partitions into a folder of parquet parts (--out is a folder).")] = 1,
    executor: Annotated[str, typer.Option(help="For partitions: ray or local (processes).")] = "ray",
    ray_address: Annotated[str | None, typer.Option(help="A Ray cluster to join (default: start one here).")] = None,
    protect_rows_of: Annotated[Path | None, typer.Option(
        help="The training table: rows copying one of its rare rows are drawn again (a saved model keeps none).",
        exists=True, dir_okay=False)] = None,
    protect_rows_below: Annotated[int, typer.Option(
        min=1, help="With --protect-rows-of: protect rows fewer than this many training rows share.")] = 5,
    sampling: Annotated[list[str] | None, typer.Option(
        "--set", help="A sampling param of the generator, key=value (e.g. steps=10), repeatable.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --out file (a folder only if SynthForge wrote it).")] = False,
    out_format: Annotated[str | None, typer.Option(
        "--format", help="csv, parquet, ndjson or ipc (a plugin may add more); default: --out's extension.")] = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Sample from a saved model, streamed to a file (or parquet parts) that appears only when complete."""
    from synthforge.api import load
    from synthforge.data.io import atomic_table, read_table, stream_table
    from synthforge.engine import batch_plan
    from synthforge.generator import as_polars, coerce_conditions, validate_params
    from synthforge.seeds import derive_seed
    from synthforge.threads import limited_threads, thread_share

    pm = _plugin_manager(plugins_dir)
    from synthforge.relational import is_database_model

    to_stdout = str(out) == "-"
    if to_stdout and (partitions > 1 or is_database_model(model_dir)):
        raise typer.BadParameter("- (standard output) takes one table: name a folder for partitions or related "
                                 "tables", param_hint="--out")
    if out_format is not None and partitions > 1 and out_format != "parquet":
        raise typer.BadParameter(f"{out_format!r}: partitions are written as parquet parts", param_hint="--format")
    if is_database_model(model_dir):
        if condition or sampling or protect_rows_of:
            raise typer.BadParameter("a related-tables model samples whole databases: --condition, --set and "
                                     "--protect-rows-of apply to one table", param_hint="--rows")
        if partitions == 1:
            _sample_database(model_dir, rows, out, seed, batch_size, pm, out_format)
            return
        from synthforge.jobs.partitioned import sample_partitioned

        manifest = sample_partitioned(model_dir, rows, out, partitions=partitions, seed=seed,
                                      executor=executor, ray_address=ray_address, plugins_dir=plugins_dir)  # type: ignore[arg-type]
        _console().print(f"wrote {', '.join(f'{n} ({r:,} rows)' for n, r in manifest['tables'].items())} in "
                         f"{manifest['partitions']} partitions to {out}/ in {manifest['seconds']:.1f} s ({executor})")
        return
    model = load(model_dir, pm=pm)
    if getattr(model, "data_kind", "table") == "images":
        raise typer.BadParameter(f"{model_dir} holds an image model ({model.name!r}); `synthforge sample` writes "
                                 "tables. Sample images in Python (synthforge.load(MODEL_DIR).sample(labels)) or "
                                 "with a recipe whose source is `images:`.", param_hint="MODEL_DIR")
    raw = {}
    for item in condition or []:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not column=value", param_hint="--condition")
        key, value = item.split("=", 1)
        raw[key.strip()] = value.strip()
    conditions = coerce_conditions(model.schema_, raw)
    sample_params = dict(validate_params(model.SampleParams, _key_values(sampling or [], "--set"),
                                         f"generator {model.name!r}'s sampling").model_dump(exclude_unset=True))
    protection = (str(protect_rows_of), protect_rows_below) if protect_rows_of else None
    if partitions > 1:
        from synthforge.jobs.partitioned import sample_partitioned

        if executor not in ("ray", "local"):
            raise typer.BadParameter(f"{executor!r}: use ray or local", param_hint="--executor")
        manifest = sample_partitioned(model_dir, rows, out, partitions=partitions, batch_size=batch_size, seed=seed,
                                      conditions=conditions, executor=executor, ray_address=ray_address,  # type: ignore[arg-type]
                                      plugins_dir=plugins_dir, protection=protection, sample_params=sample_params)
        _console().print(f"wrote {manifest['rows']:,} rows in {len(manifest['parts'])} parts to {out}/ "
                         f"in {manifest['seconds']:.1f} s ({executor})")
        return
    if protect_rows_of is not None:
        model.protect_rows(read_table(protect_rows_of, None, pm=pm), below=protect_rows_below)
    if to_stdout:
        sinking: Any = stream_table(sys.stdout.buffer, out_format or "csv")
    else:
        sinking = atomic_table(
            out, out_format, pm=pm, how_to_say="give --format (csv, parquet, ndjson, ipc)", overwrite=overwrite,
            protected=[("the model's folder", model_dir)] + ([("--protect-rows-of", protect_rows_of)]
                                                            if protect_rows_of else []))
    with limited_threads(thread_share()), sinking as sink:
        for offset, count in batch_plan(rows, batch_size):
            sink.write(as_polars(model.sample(count, conditions, seed=derive_seed(seed, offset), **sample_params)))
    redrawn = f" ({model.copies_redrawn_:,} copies of rare training rows drawn again)" if protection else ""
    # the rows went to standard output: the message goes to standard error, out of the data's way
    _console(stderr=to_stdout).print(f"wrote {rows:,} rows to {'standard output' if to_stdout else out}{redrawn}")


def _sample_database(model_dir: Path, rows: int, out: Path, seed: int, batch_size: int, pm: Any,
                     out_format: str | None = None) -> None:
    """A related-tables model: ``rows`` rows of its first root table with children, and theirs, one file per table in
    the folder ``out`` (csv, or the format its name's extension says: ``out.parquet/``), written atomically,
    ``batch_size`` main rows with their children at a time."""
    from synthforge.data.io import open_writer, staged_folder
    from synthforge.relational import DatabaseGenerator
    from synthforge.threads import limited_threads, thread_share

    model = DatabaseGenerator.load(model_dir, pm)
    extension = out_format or out.suffix.lstrip(".") or "csv"
    with staged_folder(out, protected=[("the model's folder", model_dir)]) as staging, limited_threads(thread_share()):
        rows_written, _ = model.write_batches(staging, extension, lambda path: open_writer(path, extension, pm=pm),
                                              rows, batch_size, seed)
    _console().print(f"wrote {', '.join(f'{n} ({r:,} rows)' for n, r in rows_written.items())} to {out}/")


def _key_values(items: list[str], option: str) -> dict[str, Any]:
    """``key=value`` options to a dict, values read as YAML scalars (``10``, ``true``, ``ddim``)."""
    from synthforge.recipe import parse_overrides

    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint=option)
    return parse_overrides(items)


@app.command()
def evaluate(
    real: Annotated[Path, typer.Argument(help="The real (training) table.")],
    synthetic: Annotated[Path, typer.Argument(help="The synthetic table to judge.")],
    holdout: Annotated[Path | None, typer.Option(help="Real rows the generator never saw.")] = None,
    target: Annotated[str | None, typer.Option(help="Column to predict, for ML efficacy.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report.json and report.html.")] = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", help="A column's kind, name=kind (continuous, integer, categorical, boolean, datetime, "
                         "identifier, free_text), as a recipe's source.columns; repeatable.")] = None,
    max_categories: Annotated[int | None, typer.Option(
        min=2, help="Above this many distinct values, text needs a --column kind (a recipe's "
                    "source.max_categories).")] = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Score any synthetic table against its real source, whoever generated it; exit 3 if a gate fails."""
    from synthforge.evaluation import evaluate_tables

    pm = _plugin_manager(plugins_dir)
    kinds = {key: str(value) for key, value in _key_values(column or [], "--column").items()}
    results = evaluate_tables(real, synthetic, holdout=holdout, target=target, out=out, pm=pm, columns=kinds,
                              max_categories=max_categories, progress=sys.stderr.isatty())
    console = _console()
    _print_checks(console, results)
    if out is not None:
        console.print(f"report: {out / 'report.html'}")
    if any(not r.passed and r.on_fail == "error" for r in results):
        raise typer.Exit(EXIT_GATE_FAILED)


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="The generator's name, e.g. 'mymodel' (lower case, digits, _).")],
    family: Annotated[str, typer.Option(help="Template: vae, gan, diffusion (torch) or numpy (no torch).")] = "vae",
    directory: Annotated[Path, typer.Option("--dir", help="Where to create synthforge-NAME/.")] = Path("."),
) -> None:
    """Write a ready plugin distribution: pyproject with the entry point, a real torch model, a conformance test."""
    from synthforge.scaffold import new_plugin as scaffold

    root = scaffold(name, family, directory)
    console = _console()
    console.print(f"created {root}")
    console.print(f"next: pip install -e {root} && synthforge plugins && pytest {root / 'tests'}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of recipes (for editors and CI linting)."""
    from synthforge.recipe import recipe_json_schema

    typer.echo(json.dumps(recipe_json_schema(), indent=2))


jobs_app = typer.Typer(help="Queue, schedule and inspect synthesis jobs (run them with `synthforge worker`).",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _store(url: str) -> Any:
    from synthforge.jobs.store import JobStore

    return JobStore(url)


@jobs_app.command("submit")
def jobs_submit(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    schedule: Annotated[str | None, typer.Option(help="Cron expression, e.g. '0 2 * * *' (02:00 daily).")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone the schedule is read in.")] = "UTC",
    param: Params = None,
    max_attempts: Annotated[int, typer.Option(min=1, help="Runs before a crashing job is failed.")] = 3,
    store: Store = DEFAULT_STORE,
    plugins_dir: PluginsDir = None,
) -> None:
    """Queue a recipe (validated now, not when it runs), or schedule it with --schedule."""
    from synthforge.recipe import load_recipe, parse_overrides

    overrides = parse_overrides(param or [])
    load_recipe(recipe, pm=_plugin_manager(plugins_dir), overrides=overrides)
    jobs = _store(store)
    console = _console()
    if schedule:
        schedule_id = jobs.add_schedule(recipe.resolve(), schedule, timezone=timezone, params=overrides,
                                        max_attempts=max_attempts)
        first = next(s for s in jobs.list_schedules() if s.id == schedule_id).next_run_at
        console.print(f"schedule {schedule_id}: {recipe} at '{schedule}' ({timezone}); first run "
                      f"{_when(first, timezone)}")
        return
    job_id = jobs.submit(recipe.resolve(), overrides, max_attempts=max_attempts)
    console.print(f"job {job_id}: queued {recipe}")
    typer.echo(job_id)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="Most recent jobs shown.")] = 50,
    store: Store = DEFAULT_STORE,
) -> None:
    """Jobs, newest first, and the schedules."""
    from rich.table import Table

    jobs = _store(store)
    table = Table("id", "status", "recipe", "attempts", "created", "took", "error", title="jobs")
    for job in jobs.list_jobs(status=status, limit=limit):
        took = f"{job.finished_at - job.started_at:.1f} s" if job.finished_at and job.started_at else ""
        table.add_row(str(job.id), job.status, Path(job.recipe).name, f"{job.attempts}/{job.max_attempts}",
                      _when(job.created_at), took, (job.error or "").splitlines()[0][:60] if job.error else "")
    console = _console()
    console.print(table)
    schedules = jobs.list_schedules()
    if schedules:
        rows = Table("schedule", "cron", "time zone", "recipe", "next run", "enabled", title="schedules")
        for item in schedules:
            rows.add_row(str(item.id), item.cron, item.timezone, Path(item.recipe).name,
                         _when(item.next_run_at, item.timezone),
                         "yes" if item.enabled else "no")
        console.print(rows)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: Store = DEFAULT_STORE,
) -> None:
    """A job's status, timings, check results and output paths."""
    from dataclasses import asdict

    job = _store(store).get(job_id)
    if as_json:
        typer.echo(json.dumps(asdict(job), indent=2, default=str))
        return
    console = _console()
    console.print(f"job {job.id}: [bold]{job.status}[/bold] — {job.recipe}")
    console.print(f"params: {escape(job.params or '{}')}; attempts {job.attempts}/{job.max_attempts}"
                  + (f"; from schedule {job.schedule_id}" if job.schedule_id else ""))
    console.print(f"created {_when(job.created_at)}, started {_when(job.started_at)}, "
                  f"finished {_when(job.finished_at)}")
    if job.error:
        console.print(f"[red]error:[/red] {escape(job.error)}")
    if job.result:
        console.print(f"dataset: {job.result.get('dataset_path')}")
        console.print(escape(f"rows: {job.result.get('rows')}; timings: {job.result.get('timings')}"))
        from rich.table import Table

        table = Table("check", "kind", "score", "gate", "passed", title="checks")
        for check in job.result.get("checks", []):
            score = "n/a" if check["score"] is None else f"{check['score']:.4f}"
            table.add_row(check["name"], check["kind"], score, check["gate"], "yes" if check["passed"] else "NO")
        console.print(table)


@jobs_app.command("logs")
def jobs_logs(job_id: Annotated[int, typer.Argument(help="The job's id.")], store: Store = DEFAULT_STORE) -> None:
    """Every log line of every attempt of a job."""
    for attempt, at, line in _store(store).logs(job_id):
        typer.echo(f"{_when(at)} [{attempt}] {line}")


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[int, typer.Argument(help="The job's id (or the schedule's, with --schedule).")],
    schedule: Annotated[bool, typer.Option("--schedule", help="Disable schedule ID instead.")] = False,
    store: Store = DEFAULT_STORE,
) -> None:
    """Cancel a queued job, stop a running one, or disable a schedule."""
    jobs = _store(store)
    if schedule:
        jobs.disable_schedule(job_id)
        _console().print(f"schedule {job_id}: disabled")
        return
    _console().print(f"job {job_id}: {jobs.cancel(job_id)}")


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[int, typer.Argument(help="The job's id.")], store: Store = DEFAULT_STORE) -> None:
    """Queue a failed or cancelled job again."""
    _store(store).retry(job_id)
    _console().print(f"job {job_id}: queued again")


@jobs_app.command("gc")
def jobs_gc(store: Store = DEFAULT_STORE) -> None:
    """Remove what killed jobs left: hidden partial outputs beside their output folders, stale result files."""
    from synthforge.jobs.worker import collect_garbage

    removed = collect_garbage(_store(store))
    console = _console()
    for path in removed:
        console.print(f"removed {escape(path)}")
    console.print(f"{len(removed)} leftover(s) removed")


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
    executor: Annotated[str, typer.Option(help="local (child processes) or ray (Ray tasks).")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start one here).")] = None,
    lease: Annotated[float, typer.Option(help="Seconds a claim lasts without a heartbeat.")] = 30.0,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the queue.")] = 1.0,
    retry_delay: Annotated[float, typer.Option(help="First retry back-off in seconds (doubles each time).")] = 30.0,
    drain: Annotated[bool, typer.Option(help="Exit when nothing is queued or running.")] = False,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after finishing this many jobs.")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads per job (a Ray task's num_cpus); default: the cores divided by --concurrency.")
    ] = None,
    store: Store = DEFAULT_STORE,
    plugins_dir: PluginsDir = None,
) -> None:
    """Run queued and due scheduled jobs until stopped (SIGTERM/SIGINT release running jobs)."""
    import time

    from synthforge.jobs.worker import Worker

    console = _console()
    runner = Worker(_store(store), concurrency=concurrency, executor=executor, lease_seconds=lease,  # type: ignore[arg-type]
                    poll_seconds=poll, retry_delay=retry_delay, plugins_dir=plugins_dir, ray_address=ray_address,
                    threads=threads,
                    log=lambda line: console.print(f"[dim]{_when(time.time())}[/dim] {escape(line)}"))
    finished = runner.run(drain=drain, max_jobs=max_jobs)
    console.print(f"worker stopped after {finished} job(s)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    recipes: Annotated[Path, typer.Option(help="The recipes folder: named recipes, and submitted recipes' home "
                                               "(their relative paths read from here).")] = Path("recipes"),
    data: Annotated[Path, typer.Option(help="The managed data folder (uploads go to its uploads/).")] = Path(
        "synthforge-data"),
    outputs: Annotated[Path, typer.Option(help="Every job's output must be inside this folder.")] = Path("out"),
    source_folder: Annotated[list[Path] | None, typer.Option(
        "--source-folder", help="Another folder sources may be read from (repeatable).")] = None,
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Also run one local worker in this "
                                                                          "process (otherwise run `synthforge "
                                                                          "worker` beside it).")] = False,
    insecure_cookies: Annotated[bool, typer.Option(help="Send the session cookie over plain http too (behind a "
                                                        "TLS proxy that talks http to us, or on a trusted "
                                                        "network).")] = False,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="The largest upload, in MiB (larger: 413).")] = 1024,
    max_body_kb: Annotated[int, typer.Option(min=1, help="The largest other request body (a recipe's text, a "
                                                         "form), in KiB (larger: 413).")] = 1024,
    forwarded_allow_ips: Annotated[list[str] | None, typer.Option(
        "--forwarded-allow-ips", help="A reverse proxy's address or network (repeatable): only from it is "
                                      "X-Forwarded-For believed as the client's address (login limits, audit "
                                      "log). Default: none, the socket's address.")] = None,
    store: Store = DEFAULT_STORE,
    plugins_dir: PluginsDir = None,
) -> None:
    """Serve the HTTP API (/api/v1, its OpenAPI schema at /api/v1/openapi.json) and the web dashboard."""
    try:
        import uvicorn

        from synthforge.service.app import ServiceConfig, create_app
        from synthforge.service.folders import Folders
    except ModuleNotFoundError as error:
        raise SynthForgeError(f"the service needs {error.name}: pip install 'synthforge[service]'.") from None
    folders = Folders(recipes, data, outputs, list(source_folder or []))
    config = ServiceConfig(store=store, folders=folders, plugins_dir=plugins_dir,
                           secure_cookies=not insecure_cookies, max_upload_bytes=max_upload_mb << 20,
                           max_body_bytes=max_body_kb << 10, forwarded_allow_ips=list(forwarded_allow_ips or []))
    application = create_app(config)
    from synthforge.service.accounts import Accounts

    console = _console()
    if not Accounts(application.state.store).count_admins():
        console.print("[yellow]no admin yet:[/yellow] create one with "
                      f"`synthforge users add NAME --role admin --store {store}`")
    if with_worker:
        import threading
        import time

        from synthforge.jobs.worker import Worker

        runner = Worker(_store(store), plugins_dir=plugins_dir, poll_seconds=0.5,
                        log=lambda line: console.print(f"[dim]{_when(time.time())}[/dim] {escape(line)}"))
        threading.Thread(target=runner.run, daemon=True, name="synthforge-worker").start()
    console.print(f"SynthForge at http://{host}:{port}/  (recipes {folders.recipes}, outputs {folders.outputs}, "
                  f"store {store})")
    # The app settles the client's address itself (ServiceConfig.forwarded_allow_ips): uvicorn's own proxy
    # handling would believe X-Forwarded-For from any local client.
    uvicorn.run(application, host=host, port=port, log_level="warning", proxy_headers=False)


users_app = typer.Typer(help="The service's users: add, list, change role or password, disable.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="The service's API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


def _accounts(url: str) -> Any:
    from synthforge.service.accounts import Accounts

    return Accounts(_store(url))


def _password(given: str | None, name: str) -> str:
    import os

    if given is not None:
        return given
    if os.environ.get("SYNTHFORGE_PASSWORD"):
        return os.environ["SYNTHFORGE_PASSWORD"]
    return typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user name (one word).")],
    role: Annotated[str, typer.Option(help="viewer (reads), member (also submits and cancels), admin (also users, "
                                           "tokens, others' schedules).")] = "viewer",
    password: Annotated[str | None, typer.Option(help="Default: asked for (or $SYNTHFORGE_PASSWORD).")] = None,
    no_password: Annotated[bool, typer.Option("--no-password", help="No browser login: API tokens only.")] = False,
    store: Store = DEFAULT_STORE,
) -> None:
    """Add a user (the first admin is made this way)."""
    user = _accounts(store).add_user(name, role, None if no_password else _password(password, name))
    _console().print(f"added {user.name} ({user.role})")


@users_app.command("list")
def users_list(store: Store = DEFAULT_STORE) -> None:
    from rich.table import Table

    table = Table("name", "role", "state")
    for user in _accounts(store).list_users():
        table.add_row(user.name, user.role, "disabled" if user.disabled else "active")
    _console().print(table)


@users_app.command("set")
def users_set(
    name: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str | None, typer.Option(help="A new role.")] = None,
    password: Annotated[bool, typer.Option("--password", help="Set a new password (asked for).")] = False,
    disabled: Annotated[bool | None, typer.Option("--disable/--enable", help="Disable (or enable) the user: "
                                                                             "their sessions and tokens stop.")] = None,
    store: Store = DEFAULT_STORE,
) -> None:
    """Change a user's role, password, or whether they may sign in."""
    accounts = _accounts(store)
    if role is not None:
        accounts.set_role(name, role)
    if password:
        accounts.set_password(name, _password(None, name))
    if disabled is not None:
        accounts.set_disabled(name, disabled)
    user = accounts.user(name)
    _console().print(f"{user.name}: {user.role}, {'disabled' if user.disabled else 'active'}")


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="Whose token.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "token",
    store: Store = DEFAULT_STORE,
) -> None:
    """Create an API token; it is printed once (only its digest is stored)."""
    token_id, secret = _accounts(store).create_token(user, name)
    _console(stderr=True).print(f"token {token_id} for {user} (shown once; send it as Authorization: Bearer …):")
    typer.echo(secret)


@tokens_app.command("list")
def tokens_list(user: Annotated[str | None, typer.Option(help="Only this user's.")] = None,
                store: Store = DEFAULT_STORE) -> None:
    from rich.table import Table

    table = Table("id", "user", "name", "starts", "created", "last used", "revoked")
    for token in _accounts(store).list_tokens(user):
        table.add_row(str(token["id"]), token["user"], token["name"], token["prefix"] + "…",
                      _when(token["created_at"]), _when(token["last_used_at"]), _when(token["revoked_at"]))
    _console().print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The token's id (tokens list).")],
                  store: Store = DEFAULT_STORE) -> None:
    _accounts(store).revoke_token(token_id)
    _console().print(f"token {token_id} revoked")


def _when(timestamp: float | None, zone: str = "UTC") -> str:
    """To the second in ``zone``, labelled with its abbreviation (``UTC``, ``CET``); a dash for a time not come."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if not timestamp:
        return "—"
    return datetime.fromtimestamp(timestamp, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _print_checks(console: Any, results: list[Any]) -> None:
    if not results:
        return
    from rich.table import Table

    table = Table("check", "kind", "score", "gate", "result", "summary", title="checks")
    for result in results:
        verdict = "[green]pass[/green]" if result.passed else (
            "[red]FAIL[/red]" if result.on_fail == "error" else "[yellow]warn[/yellow]")
        score = "n/a" if result.score is None else f"{result.score:.4f}"
        table.add_row(result.name, result.kind, score, result.gate, verdict, escape(result.summary))
    console.print(table)


def main() -> None:
    from synthforge.errors import GateFailed

    try:
        app()
    except SynthForgeError as error:
        _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(error)}", soft_wrap=True)
        sys.exit(EXIT_GATE_FAILED if isinstance(error, GateFailed) else EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
