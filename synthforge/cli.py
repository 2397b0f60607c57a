"""The ``synthforge`` command line.

Heavy imports (polars, numpy, torch) happen inside the commands, so ``synthforge
--help`` answers at once. A :class:`SynthForgeError` is printed as a message, with
no traceback, and exits 2; a failed quality gate in ``evaluate`` exits 1.
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


def _plugin_manager(plugins_dir: Path | None = None) -> Any:
    from synthforge.plugins import get_plugin_manager

    return get_plugin_manager(plugins_dir=plugins_dir)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
    plugins_dir: PluginsDir = None,
) -> None:
    """Run a recipe: load, fit, sample, check, and write the dataset, model and reports atomically."""
    from synthforge.engine import run as run_recipe

    console = _console()
    pm = _plugin_manager(plugins_dir)
    log = (lambda message: None) if quiet else (lambda message: console.print(f"[dim]•[/dim] {message}"))
    try:
        result = run_recipe(recipe, pm=pm, log=log, progress=not quiet and sys.stderr.isatty())
    except SynthForgeError as error:
        failures = getattr(error, "failures", None)
        if failures:
            _print_checks(console, failures)
        raise
    _print_checks(console, result.checks)
    console.print(f"[bold green]done[/bold green] in {sum(result.timings.values()):.1f} s — "
                  f"{result.rows.get('synthetic', 0):,} synthetic rows"
                  + (f" + {result.rows['real']:,} real" if result.rows.get("real") else ""))
    console.print(f"dataset: {result.dataset_path}")
    console.print(f"report:  {result.output_path / 'report.html'}")


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="The recipe YAML file.")],
    plugins_dir: PluginsDir = None,
) -> None:
    """Check a recipe (keys, types, generator and check names, params) without running it."""
    from synthforge.recipe import load_recipe

    loaded = load_recipe(recipe, pm=_plugin_manager(plugins_dir))
    _console().print(f"{recipe}: valid ({loaded.output.mode} with {loaded.generator.name!r})")


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
    from rich.table import Table

    table = Table("plugin", "origin", "version", "generators", "checks", "hooks")
    for plugin in description["plugins"]:
        table.add_row(plugin["name"], plugin["origin"], plugin["version"] or "",
                      ", ".join(plugin["generators"]), ", ".join(plugin["checks"]),
                      ", ".join(h.removeprefix("synthforge_") for h in plugin["hooks"]))
    console = _console()
    console.print(table)
    for error in description["errors"]:
        console.print(f"[bold red]failed to load[/bold red] {error['name']} "
                      f"({error['distribution'] or 'unknown distribution'} {error['version'] or ''}): {error['error']}")


@app.command()
def sample(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by a run (…/model).")],
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="How many rows.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file; its extension picks the format.")],
    condition: Annotated[
        list[str] | None, typer.Option("--condition", "-c", help="column=value, repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Rows per batch written.")] = 100_000,
    plugins_dir: PluginsDir = None,
) -> None:
    """Sample from a saved model, streamed to a file that appears only when complete."""
    import os
    import tempfile

    from synthforge.api import load
    from synthforge.data.io import open_writer
    from synthforge.engine import derive_seed
    from synthforge.generator import coerce_conditions

    model = load(model_dir, pm=_plugin_manager(plugins_dir))
    raw = {}
    for item in condition or []:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not column=value", param_hint="--condition")
        key, value = item.split("=", 1)
        raw[key.strip()] = value.strip()
    conditions = coerce_conditions(model.schema_, raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    try:
        sink = open_writer(Path(temporary), _format_of(out))
        done = 0
        while done < rows or (rows == 0 and done == 0):
            batch = model.sample(min(batch_size, rows - done), conditions, seed=derive_seed(seed, done))
            sink.write(batch)
            done += batch.height
            if rows == 0:
                break
        sink.close()
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    _console().print(f"wrote {rows:,} rows to {out}")


def _format_of(path: Path) -> str | None:
    from synthforge.data.io import WRITERS

    for writer in WRITERS:
        if any(path.name.lower().endswith(extension) for extension in writer.extensions):
            return writer.format
    return None


@app.command()
def evaluate(
    real: Annotated[Path, typer.Argument(help="The real (training) table.")],
    synthetic: Annotated[Path, typer.Argument(help="The synthetic table to judge.")],
    holdout: Annotated[Path | None, typer.Option(help="Real rows the generator never saw.")] = None,
    target: Annotated[str | None, typer.Option(help="Column to predict, for ML efficacy.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report.json and report.html.")] = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Score any synthetic table against its real source, whoever generated it; exit 1 if a gate fails."""
    from synthforge.evaluate import evaluate_tables

    pm = _plugin_manager(plugins_dir)
    results = evaluate_tables(real, synthetic, holdout=holdout, target=target, out=out, pm=pm)
    console = _console()
    _print_checks(console, results)
    if out is not None:
        console.print(f"report: {out / 'report.html'}")
    if any(not r.passed and r.on_fail == "error" for r in results):
        raise typer.Exit(1)


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="The generator's name, e.g. 'mymodel' (lower case, digits, _).")],
    family: Annotated[str, typer.Option(help="Template: vae, gan or diffusion.")] = "vae",
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


def _print_checks(console: Any, results: list[Any]) -> None:
    if not results:
        return
    from rich.table import Table

    table = Table("check", "kind", "score", "gate", "result", "summary", title="checks")
    for result in results:
        verdict = "[green]pass[/green]" if result.passed else (
            "[red]FAIL[/red]" if result.on_fail == "error" else "[yellow]warn[/yellow]")
        score = "n/a" if result.score is None else f"{result.score:.4f}"
        table.add_row(result.name, result.kind, score, result.gate, verdict, result.summary)
    console.print(table)


def main() -> None:
    try:
        app()
    except SynthForgeError as error:
        _console(stderr=True).print(f"[bold red]error:[/bold red] {error}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
