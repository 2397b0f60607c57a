"""The pipeline, top to bottom: load → infer → split → fit → sample → check → write.

``run(recipe)`` is the whole of a SynthForge run. Everything is written into a
temporary folder beside the output path and renamed into place only when every
gate has passed, so an interrupted or failed run never leaves a dataset that looks
finished. A failed gate leaves its reports, and nothing else, in ``<path>.failed/``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthforge.autopick import AUTO, candidates, choose_generator
from synthforge.checks.base import CheckResult, Gate
from synthforge.constraints import check_constraints, constraint_problems
from synthforge.data.fake import pseudonyms, run_secret
from synthforge.data.identifiers import regenerate
from synthforge.data.io import open_writer, read_table, remove_abandoned_staging, replace_atomically, staging_path
from synthforge.data.ownership import check_destination
from synthforge.data.schema import ColumnKind, Schema, infer_schema, prepare_source, to_internal, to_source
from synthforge.engine_streamed import TrainingChunks, streamed_samples, streamed_source
from synthforge.errors import GateFailed, Memorised, RecipeError, SynthForgeError
from synthforge.generator import FitContext, Generator, as_polars
from synthforge.plugins import SynthForgePluginManager, get_plugin_manager
from synthforge.provenance import file_sha256, machine, package_versions
from synthforge.recipe import CheckSpec, GeneratorSpec, Recipe, load_recipe, validate_plugins
from synthforge.seeds import RandomStreams, derive_seed
from synthforge.threads import limited_threads, per_job_threads, thread_share

FORMAT_EXTENSIONS = {"csv": "csv", "parquet": "parquet", "ndjson": "ndjson", "ipc": "arrow"}
MAX_CHECK_ROWS = 200_000


@dataclass
class RunInfo:
    id: str
    recipe: Recipe
    seed: int
    output_path: Path
    started_at: str


@dataclass
class RunResult:
    status: str
    output_path: Path | None
    dataset_path: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    generator: Generator | None = field(default=None, repr=False)
    #: the refits a privacy gate asked for: what refused the output and what each refit changed
    retries: list[dict[str, Any]] = field(default_factory=list)
    #: ``generator: auto``: what was tried and what was chosen (synthforge.autopick)
    choice: dict[str, Any] | None = None
    #: the default privacy protections this run's recipe turned off or weakened, in words
    privacy_off: list[str] = field(default_factory=list)
    #: CPU threads the run used (synthforge.threads)
    threads: int = 0
    #: under a privacy budget: the accountant's summary (requested and spent (ε, δ), stages, mechanisms)
    privacy: dict[str, Any] | None = None

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


def run(
    recipe: Recipe | str | Path | dict[str, Any],
    *,
    pm: SynthForgePluginManager | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> RunResult:
    """Run a recipe; raise :class:`SynthForgeError` on bad input or a failed gate."""
    pm = pm or get_plugin_manager()
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, pm=pm)
    validate_plugins(recipe, pm)
    log = log or (lambda message: None)
    output_path = recipe.resolve(recipe.output.path)
    check_output_paths(output_path, recipe.inputs())
    info = RunInfo(uuid.uuid4().hex[:12], recipe, recipe.seed, output_path, _now())
    result = RunResult("failed", None)
    timer = _Timer(result.timings, lambda stage: pm.hook.synthforge_progress(run=info, stage=stage, done=0,
                                                                             total=None))
    pm.hook.synthforge_run_started(run=info)
    try:
        with limited_threads(thread_share(recipe.generator.threads)) as threads:
            result.threads = threads
            _run(recipe, pm, info, result, timer, log, progress)
        result.status = "succeeded"
        return result
    except SynthForgeError as error:
        result.error = str(error)
        raise
    finally:
        pm.hook.synthforge_run_finished(run=info, result=result)


def _run(recipe: Recipe, pm: SynthForgePluginManager, info: RunInfo, result: RunResult, timer: _Timer,
         log: Callable[[str], None], progress: bool) -> None:
    if recipe.source.relational:
        from synthforge.engine_tables import run_tables

        return run_tables(recipe, pm, info, result, timer, log, progress)
    if recipe.source.images is not None:
        from synthforge.engine_images import run_images

        return run_images(recipe, pm, info, result, timer, log, progress)
    assert recipe.source.path is not None
    source_path = recipe.resolve(recipe.source.path)
    result.privacy_off = privacy_turned_off(recipe, pm)
    for line in result.privacy_off:
        log(f"PRIVACY OFF: {line}")
    auto = recipe.generator.name == AUTO  # synthforge.autopick chooses once the training rows are split
    generator_class = None if auto else pm.get_generator(recipe.generator.name)
    streamable = any(pm.get_generator(n).supports_streaming for n in candidates(recipe, pm)) if auto \
        else generator_class.supports_streaming
    streamed = streamed_source(recipe, source_path, pm, streamable, log)
    with timer("load"):
        if streamed is None:
            table = _load(recipe, source_path, pm)
            log(f"loaded {source_path.name}: {table.height:,} rows × {table.width} columns; "
                f"{result.threads} CPU thread{'s' if result.threads != 1 else ''}")
        else:
            train, holdout, schema = streamed_samples(recipe, streamed, lambda sample: _infer(recipe, sample))
    if streamed is None:
        with timer("infer"):
            table, schema = _infer(recipe, table)
    for column in schema.columns:
        if column.note and (column.format or not column.kind.learned):
            log(f"column {column.name!r}: {column.kind.value}, {column.note}")
    with timer("split"):
        if streamed is None:
            train, holdout = _split(recipe, table, pm, schema)
        schema = _with_constraints(recipe, schema, train)
        training_rows = train.height if streamed is None else streamed.training_rows
        holdout_rows = (holdout.height if holdout is not None else 0) if streamed is None else streamed.holdout_rows
        log(f"training on {training_rows:,} rows, holding out {holdout_rows:,}"
            + (f" (checked on samples of {train.height:,} and {holdout.height if holdout is not None else 0:,})"
               if streamed is not None else ""))

    if auto:
        recipe, result.choice = choose_generator(
            recipe, pm, train, schema, streamed is not None,
            lambda seed: fit_context(recipe, pm, info, seed, recipe.generator, log, progress), log)
        generator_class = pm.get_generator(recipe.generator.name)
    context = fit_context(recipe, pm, info, recipe.seed, recipe.generator, log, progress)
    if recipe.privacy is not None:
        context = _with_privacy(context, recipe, train.height, log)
    output = recipe.output
    temporary = open_staging(info.output_path, log)
    params = dict(recipe.generator.params)
    fitting_seconds = 0.0
    try:
        for attempt in itertools.count():
            generator = generator_class(params)
            memorised: Memorised | None = None
            with timer("fit"):
                log(f"fitting {generator!r}")
                try:  # a calibration on emitted rows (autoregressive) meets a memorised row while fitting
                    if streamed is None:
                        generator.fit(train, schema, context)
                    else:  # the encoded rows and the hash buckets go in the staging folder, on the output's disk
                        generator.fit_streamed(TrainingChunks(streamed, train), schema,
                                               replace(context, scratch=temporary))
                except Memorised as error:
                    memorised = error
            fitting_seconds += result.timings["fit"]
            result.generator = generator
            if context.privacy is not None:
                result.privacy = context.privacy.summary()
                spent = result.privacy["spent"]
                log(f"privacy: spent ε = {spent['epsilon']:.4g}, δ = {spent['delta']:.3g} of the budget "
                    f"ε = {recipe.privacy.epsilon:g}, δ = {context.privacy.delta:.3g}")

            dataset = temporary / f"data.{FORMAT_EXTENSIONS.get(output.format, output.format)}"
            with timer("sample"):
                # By default as many rows as the source holds, not its training share (1,169 of a 1,461-day table).
                source_rows = streamed.rows if streamed is not None else (
                    table.height if recipe.holdout.path is None else train.height)
                try:
                    if memorised is None:
                        synthetic_for_checks, rows = _write_dataset(recipe, generator, train, schema, dataset, pm,
                                                                    log, source_rows)
                except Memorised as error:
                    memorised = error
            if memorised is None:
                result.rows = {"training": training_rows, "holdout": holdout_rows, **rows}
                if streamed is not None:
                    result.rows |= {"checked_training": train.height,
                                    "checked_holdout": holdout.height if holdout is not None else 0}
                    schema = schema.model_copy(update={"training_rows": training_rows})  # the checks see a sample
                with timer("checks"):
                    output_rows = None
                    if output.real_rows_included and output.mode != "impute":
                        learned = [c.name for c in schema.learned]
                        output_rows = pl.concat([train.select(learned), synthetic_for_checks.select(learned)],
                                                how="vertical_relaxed")
                    with CheckProgress(pm, info, log, progress) as on_check:
                        result.checks = run_checks(recipe.checks, pm, train, holdout, synthetic_for_checks, schema,
                                                   target=recipe.target, impute=output.mode == "impute",
                                                   output_rows=output_rows,
                                                   shifted=output.mode in ("rebalance", "conditions"),
                                                   on_check=on_check)
            refused = [str(memorised).split(". ")[0]] if memorised is not None else [
                f"{c.name} {c.score:.4g} (gate {c.gate})" for c in result.checks
                if not c.passed and c.on_fail == "error" and c.kind == "privacy"]
            change = _more_private(generator, attempt, refused, fitting_seconds, context, streamed is not None)
            if change is None:
                if memorised is not None:
                    raise _with_retries(memorised, result.retries)
                break
            params |= change
            result.retries.append({"refused": refused, "changed": change,
                                   "fit_seconds": round(result.timings["fit"], 2)})
            log(f"privacy: {'; '.join(refused)}: refitting with {', '.join(f'{k} {v}' for k, v in change.items())} "
                f"(retry {attempt + 1} of at most {MAX_PRIVATE_RETRIES})")
        result.timings["fit"] = fitting_seconds
        from synthforge.report import write_reports

        with timer("report"):
            versions = package_versions(generator)
            write_reports(temporary, info=_describe_run(info, recipe, source_path, generator, result, versions),
                          train=train, holdout=holdout, synthetic=synthetic_for_checks, schema=schema,
                          checks=result.checks)
        commit_output(temporary, info.output_path, result, timer, generator.save if output.save_model else None,
                      lambda: _manifest(info, recipe, source_path, generator, result, versions), recipe.inputs())
        result.output_path = info.output_path
        result.dataset_path = info.output_path / dataset.name
        log(f"wrote {result.dataset_path}")
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


#: refits a run tries, each one step more private (Generator.more_private), before a privacy gate stops it: ggplot2's
#: mpg (234 rows) with the autoregressive backend passes at the fourth (smoothing 0.3 and a trunk of 64, then 50, 25
#: and 12 epochs: membership AUC 0.70 at 25, 0.63 at 12)
MAX_PRIVATE_RETRIES = 4


def _more_private(generator: Generator, attempt: int, refused: list[str], fitting_seconds: float,
                  context: FitContext, streamed: bool) -> dict[str, Any] | None:
    """The params to refit with when a privacy gate refused this fit's output (or it kept copying rare rows), or
    None: nothing refused, nothing left to try, no time left (``max_training_time`` bounds every fit together,
    the next one assumed as long as the last), or a fit that cannot be repeated (a privacy budget is spent once;
    a streamed fit rereads the whole file)."""
    if not refused or attempt >= MAX_PRIVATE_RETRIES or context.privacy is not None or streamed:
        return None
    budget = getattr(generator.params, "max_training_time", None)
    if budget is not None and fitting_seconds * (attempt + 2) / (attempt + 1) > budget:
        return None
    return generator.more_private(attempt + 1)


def _with_retries(error: SynthForgeError, retries: list[dict[str, Any]]) -> SynthForgeError:
    """``error`` naming the refits tried before it (what each changed), if any."""
    if not retries:
        return error
    tried = "; ".join(", ".join(f"{k} {v}" for k, v in r["changed"].items()) for r in retries)
    return type(error)(f"{error}\nTried {len(retries)} more private refit(s) first: {tried}.")


def fit_context(recipe: Recipe, pm: SynthForgePluginManager, info: RunInfo, seed: int, spec: GeneratorSpec,
                log: Callable[[str], None], progress: bool, stage: str = "fit") -> FitContext:
    """What a run tells a generator about fitting: its seed, device and workers (from ``spec``), copy protection,
    progress and epoch hooks."""
    return FitContext(
        seed=seed, device=spec.device, progress=progress, protect_rows_below=recipe.copy_protection_below,
        log=None if progress else log,
        workers=spec.workers, train_storage=_storage(recipe, spec.checkpoint_path), max_failures=spec.max_failures,
        ray_address=spec.ray_address, threads_per_worker=spec.threads or per_job_threads(spec.workers),
        on_epoch_end=lambda epoch, metrics: pm.hook.synthforge_epoch_end(run=info, epoch=epoch, metrics=metrics),
        on_progress=lambda done, total: pm.hook.synthforge_progress(run=info, stage=stage, done=done, total=total))


def _storage(recipe: Recipe, path: str | None) -> str | None:
    """A checkpoint path as Ray Train takes it: a URI (``s3://…``) as it is, a folder relative to the recipe."""
    return path if path is None or "://" in path else str(recipe.resolve(Path(path)))


def _with_privacy(context: FitContext, recipe: Recipe, rows: int, log: Callable[[str], None]) -> FitContext:
    """The fit context with the run's one privacy accountant (synthforge.privacy.accountant)."""
    from synthforge.privacy.accountant import Accountant, default_delta

    spec = recipe.privacy
    assert spec is not None
    accountant = Accountant(spec.epsilon, spec.delta or default_delta(rows), dict(spec.shares))
    log(f"privacy: training with differential privacy, ε = {accountant.epsilon:g}, δ = {accountant.delta:.3g} "
        f"({', '.join(f'{k} {v:.0%}' for k, v in accountant.shares.items())}); noise "
        f"{'from the seed (reproducible; keep the seed secret)' if spec.seeded_noise else 'from OS entropy'}")
    return replace(context, privacy=accountant, seeded_noise=spec.seeded_noise, max_grad_norm=spec.max_grad_norm)


def open_staging(output_path: Path, log: Callable[[str], None]) -> Path:
    """The hidden folder a run builds its output in, beside ``output_path``, once leftovers of killed runs are gone."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in remove_abandoned_staging(output_path):
        log(f"removed {leftover.name}, left by a run that was killed")
    temporary = staging_path(output_path)
    temporary.mkdir()
    return temporary


def check_output_paths(output_path: Path, inputs: Sequence[tuple[str, Path]]) -> None:
    """Refuse, before anything is read or trained, an output path (or its ``.failed`` sibling for the reports of a
    failed gate) that holds the run's inputs or anything SynthForge did not write: a run replaces it whole."""
    check_destination(output_path, inputs, what="output.path")
    check_destination(failed_reports_path(output_path), inputs, what="the failed run's report folder")


def commit_output(temporary: Path, output_path: Path, result: RunResult, timer: _Timer,
                  save: Callable[[Path], Any] | None, manifest: Callable[[], dict[str, Any]],
                  inputs: Sequence[tuple[str, Path]] = (), gates_passed: Callable[[], None] | None = None) -> None:
    """The end of every run: on a failed ``error`` gate keep only the reports (``<path>.failed/``) and raise;
    else call ``gates_passed`` (a run writing into a database loads it then), save the model, write the
    manifest and rename the folder into place (refused, leaving everything as it was, if the output path came
    to hold anything else meanwhile)."""
    failures = [c for c in result.failed_checks if c.on_fail == "error"]
    if failures:
        _keep_failed_reports(temporary, output_path, inputs)
        raise GateFailed(_gate_message(failures, output_path, result.retries), failures)
    if gates_passed is not None:
        gates_passed()
    if save is not None:
        with timer("save"):
            save(temporary / "model")
    (temporary / "manifest.json").write_text(json.dumps(manifest(), indent=2))
    replace_atomically(temporary, output_path, protected=inputs)


def header_problems(recipe: Recipe) -> list[str]:
    """The columns a recipe names that its flat source's header lacks: the part of :func:`recipe_problems` read
    from a file's header alone, cheap enough to ask as a recipe is typed (the web editor). Empty where the
    source is related tables, missing, or in a format polars cannot scan."""
    if recipe.source.relational or recipe.source.path is None:
        return []
    path = recipe.resolve(recipe.source.path)
    scans = {".csv": pl.scan_csv, ".parquet": pl.scan_parquet, ".ndjson": pl.scan_ndjson, ".jsonl": pl.scan_ndjson,
             ".arrow": pl.scan_ipc, ".ipc": pl.scan_ipc, ".feather": pl.scan_ipc}
    scan = scans.get(path.suffix.lower())
    if scan is None or not path.is_file():
        return []
    try:
        columns = [c for c in scan(path).collect_schema().names() if c not in (recipe.source.drop or [])]
    except (pl.exceptions.PolarsError, OSError):
        return []  # the run's own reader says what is wrong with the file
    output = recipe.output
    named = {"output.column": [output.column] if output.column else [],
             "output.conditions": list(output.conditions), "target": [recipe.target] if recipe.target else []}
    problems = [f"{key} names column {column!r}, not in the source; its columns are: {', '.join(columns)}."
                for key, names in named.items() for column in names if column not in columns]
    return problems + constraint_problems(recipe.constraints, columns, where="constraints")


def validate_recipe(recipe: Recipe, pm: SynthForgePluginManager | None = None) -> list[str]:
    """Read a recipe's source and check it as a run would, without training.

    Every column's problem is reported at once (:func:`infer_schema`), then, in one error, every way the
    recipe's columns, rules and rebalance shares do not fit the source (:func:`recipe_problems`). Returns notes:
    the columns written back as they are, the text dates, and each rule's share in the real rows.
    """
    pm = pm or get_plugin_manager()
    validate_plugins(recipe, pm)
    if recipe.source.relational:
        from synthforge.engine_tables import validate_tables

        return validate_tables(recipe, pm)
    if recipe.source.images is not None:
        from synthforge.engine_images import validate_images

        return validate_images(recipe)
    assert recipe.source.path is not None
    path = recipe.resolve(recipe.source.path)
    streamed = streamed_source(recipe, path, pm, any(pm.get_generator(n).supports_streaming for n in candidates(
        recipe, pm)) if recipe.generator.name == AUTO else pm.get_generator(recipe.generator.name).supports_streaming,
                               lambda message: None)
    if streamed is None:
        table, schema = _infer(recipe, _load(recipe, path, pm))
        notes = [f"{table.height:,} rows × {table.width} columns read"]
    else:  # a table larger than memory: checked on the sample the run would learn its schema from
        table, _, schema = streamed_samples(recipe, streamed, lambda sample: _infer(recipe, sample))
        notes = [f"{streamed.rows:,} rows, streamed; schema and rules checked on a sample of {table.height:,} rows "
                 f"× {table.width} columns"]
    notes += [f"column {c.name!r}: {c.kind.value}, {c.note}" for c in schema.columns if c.note]
    for rule in _with_constraints(recipe, schema, table).constraints:
        held = float(rule.holds(table).mean() or 0.0)
        notes.append(f"rule {rule.describe()!r}: {held:.2%} of real rows keep it"
                     + ("" if held == 1 else " (synthetic rows will all keep it; is the rule right?)"))
    return notes


# --- the steps --------------------------------------------------------------------------


def _load(recipe: Recipe, path: Path, pm: SynthForgePluginManager) -> pl.DataFrame:
    table = read_table(path, recipe.source.format, pm=pm, ragged_rows=recipe.source.ragged_rows)
    return prepare_source(table, drop=recipe.source.drop, nan_as_null=recipe.source.nan_as_null)


def _infer(recipe: Recipe, table: pl.DataFrame) -> tuple[pl.DataFrame, Schema]:
    """The source's schema, checked against the recipe, and the source with its text dates parsed."""
    schema = infer_schema(table, recipe.source.columns, max_categories=recipe.source.max_categories,
                          locale=recipe.source.locale)
    _check_recipe_against_schema(recipe, schema, table)
    return to_internal(table, schema, invalid=recipe.source.invalid_policy), schema


def _check_recipe_against_schema(recipe: Recipe, schema: Schema, table: pl.DataFrame | None = None) -> None:
    """Raise one :class:`RecipeError` naming every way the recipe does not fit its source (five mistakes, one
    run), before anything is trained."""
    problems = recipe_problems(recipe, schema, table)
    if len(problems) == 1:
        raise RecipeError(f"{recipe.file}: {problems[0]}")
    if problems:
        raise RecipeError(f"{recipe.file}: {len(problems)} problems with this recipe and its source:\n"
                          + "\n".join(f"  - {problem}" for problem in problems))


def recipe_problems(recipe: Recipe, schema: Schema, table: pl.DataFrame | None = None) -> list[str]:
    """Every way the recipe's columns, rules and rebalance shares do not fit the source's ``schema`` (and its
    rows, ``table``, where given), each with what to do."""
    output = recipe.output
    problems: list[str] = []
    referenced = {"output.column": [output.column] if output.column else [],
                  "output.conditions": list(output.conditions), "target": [recipe.target] if recipe.target else []}
    for key, columns in referenced.items():
        for column in columns:
            if column not in schema:
                problems.append(f"{key} names column {column!r}, not in the source; its columns are: "
                                f"{', '.join(schema.names)}.")
            elif not schema[column].kind.learned:
                problems.append(f"{key} names {column!r}, an identifier/free-text column that is never learned; "
                                f"name a learned column.")
    rebalanced = output.column if output.mode == "rebalance" and output.column in schema else None
    if rebalanced is not None and schema[rebalanced].kind not in (ColumnKind.categorical, ColumnKind.boolean):
        problems.append(f"output.column {rebalanced!r} is {schema[rebalanced].kind.value}; rebalancing needs a "
                        f"categorical or boolean column.")
    elif rebalanced is not None and isinstance(output.shares, dict) and table is not None \
            and rebalanced in table.columns:
        values = [str(v) for v in table.get_column(rebalanced).drop_nulls().unique(maintain_order=True).to_list()]
        unknown = [key for key in output.shares if key not in values]
        if unknown:
            shown = ", ".join(map(repr, sorted(values)[:30])) + (", …" if len(values) > 30 else "")
            problems.append(f"output.shares names {', '.join(map(repr, unknown))}, not a value of {rebalanced!r} "
                            f"(values are matched exactly, case included); its values: {shown}.")
    if output.label_column and output.label_column in schema:
        problems.append(f"output.label_column {output.label_column!r} already is a column of the source.")
    problems += constraint_problems(recipe.constraints, [c.name for c in schema.learned], where="constraints")
    return problems


def _with_constraints(recipe: Recipe, schema: Schema, train: pl.DataFrame) -> Schema:
    """The schema with the recipe's rules, fitted on the training rows (a fixed rule keeps their combinations)."""
    if not recipe.constraints:
        return schema
    check_constraints(recipe.constraints, [c.name for c in schema.learned], where=f"{recipe.file}: constraints")
    fitted = [rule.fit(train, max(recipe.copy_protection_below, 1)) for rule in recipe.constraints]
    return schema.model_copy(update={"constraints": fitted})


def _split(recipe: Recipe, table: pl.DataFrame, pm: SynthForgePluginManager,
           schema: Schema) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    if recipe.holdout.path is not None:
        holdout = read_table(recipe.resolve(recipe.holdout.path), None, pm=pm, ragged_rows=recipe.source.ragged_rows)
        holdout = prepare_source(holdout, drop=recipe.source.drop, nan_as_null=recipe.source.nan_as_null)
        holdout = to_internal(holdout, schema, invalid=recipe.source.invalid_policy)
        missing = [c for c in table.columns if c not in holdout.columns]
        if missing:
            raise RecipeError(f"{recipe.file}: holdout.path lacks column(s) {', '.join(missing)} of the source.")
        return table, holdout.select(table.columns).cast(table.schema, strict=False)
    if recipe.holdout.fraction == 0:
        return table, None
    order = RandomStreams(recipe.seed).rng("split").permutation(table.height)
    cut = round(table.height * recipe.holdout.fraction)
    if cut == 0 or cut == table.height:
        raise RecipeError(f"{recipe.file}: holdout.fraction {recipe.holdout.fraction} of {table.height} rows leaves "
                          f"an empty {'holdout' if cut == 0 else 'training set'}.")
    return table[np.sort(order[cut:])], table[np.sort(order[:cut])]


def sampling_plan(recipe: Recipe, generator: Generator, train: pl.DataFrame,
                  source_rows: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(rows, conditions) segments that, with the real rows when included, make the output; ``source_rows``
    (default: the training rows') is the output's size when the recipe sets no ``output.rows``."""
    output = recipe.output
    default_rows = output.rows if output.rows is not None else source_rows or train.height
    if output.mode in ("synthesize", "augment"):
        return [(default_rows, {})]
    if output.mode == "conditions":
        return [(default_rows, dict(output.conditions))]
    column = output.column
    assert column is not None
    categories = [c for c in generator.encoder_.transformer(column).categories_ if c is not None and c != "_RARE_"]
    shares = _shares(recipe, categories)
    if not output.real_rows_included:
        return [(round(share * default_rows), {column: value}) for value, share in shares.items() if share > 0]
    counts = dict(train.get_column(column).alias("value").drop_nulls().value_counts(name="n").iter_rows())
    for value, share in shares.items():
        if share == 0 and counts.get(value, 0):
            raise RecipeError(f"{recipe.file}: output.shares gives {value!r} a share of 0, but the real rows hold "
                              f"{counts[value]:,} of them; set include_real: false to output synthetic rows only.")
    needed = max(counts.get(value, 0) / share for value, share in shares.items() if share > 0)
    total = float(output.rows) if output.rows is not None else needed
    if total + 1e-9 < needed:
        raise RecipeError(f"{recipe.file}: output.rows {output.rows:,} is too few to reach the asked shares while "
                          f"keeping the real rows; at least {int(np.ceil(needed)):,} are needed.")
    return [(max(round(share * total) - counts.get(value, 0), 0), {column: value})
            for value, share in shares.items() if share > 0]


def _shares(recipe: Recipe, categories: list[Any]) -> dict[Any, float]:
    asked = recipe.output.shares
    if asked == "uniform":
        return {value: 1 / len(categories) for value in categories}
    by_text = {str(value): value for value in categories}
    unknown = [key for key in asked if key not in by_text]
    if unknown:
        raise RecipeError(f"{recipe.file}: output.shares names {', '.join(map(repr, unknown))}, not a (common enough) "
                          f"value of {recipe.output.column!r}; its values: {', '.join(map(repr, by_text))}.")
    return {by_text[key]: share for key, share in asked.items()}


def _write_dataset(recipe: Recipe, generator: Generator, train: pl.DataFrame, schema: Schema, path: Path,
                   pm: SynthForgePluginManager, log: Callable[[str], None],
                   source_rows: int | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
    """Stream real (if asked) and synthetic batches to ``path``; return the synthetic rows kept for checks.
    ``source_rows``: how many rows the source holds (the default output size)."""
    output = recipe.output
    if output.mode == "impute":
        return _write_imputed(recipe, generator, schema, path, pm, log)
    sink = open_writer(path, output.format, pm=pm)
    kept: list[pl.DataFrame] = []
    kept_rows = 0
    rows = {"real": 0, "synthetic": 0}
    rng = RandomStreams(recipe.seed).rng("identifiers")
    try:
        if output.real_rows_included:
            real = to_source(_strip_identifiers(train, schema, generator, rng), schema)
            sink.write(_label(real, output.label_column, False))
            rows["real"] = real.height
        plan = sampling_plan(recipe, generator, train, source_rows)
        base_seed = output.sample_seed if output.sample_seed is not None else derive_seed(recipe.seed, "sample")
        for segment, (count, conditions) in enumerate(plan):
            for batch_index, batch_rows in enumerate(_batches(count, output.batch_size)):
                seed = derive_seed(base_seed, segment, batch_index)
                batch = generator.sample(batch_rows, conditions or None, seed=seed, **output.sampling)
                sink.write(_label(batch, output.label_column, True))
                rows["synthetic"] += batch.height
                if kept_rows < MAX_CHECK_ROWS:
                    kept.append(batch.head(MAX_CHECK_ROWS - kept_rows))
                    kept_rows += kept[-1].height
        rows["copies_redrawn"] = generator.copies_redrawn_
        log(f"sampled {rows['synthetic']:,} synthetic rows" + (f" + {rows['real']:,} real" if rows["real"] else "")
            + f"; {rows['copies_redrawn']:,} copies of rare training rows drawn again")
    finally:
        sink.close()
    synthetic = pl.concat(kept) if kept else as_polars(generator.sample(0))
    return to_internal(synthetic, schema), rows


def _write_imputed(recipe: Recipe, generator: Generator, schema: Schema, path: Path, pm: SynthForgePluginManager,
                   log: Callable[[str], None]) -> tuple[pl.DataFrame, dict[str, int]]:
    """Fill the nulls of the table to impute, batch by batch; return the rows that had nulls, for checks."""
    output = recipe.output
    source = recipe.resolve(output.impute_path or recipe.source.path)
    table = prepare_source(read_table(source, None if output.impute_path else recipe.source.format, pm=pm,
                                      ragged_rows=recipe.source.ragged_rows),
                           drop=recipe.source.drop, nan_as_null=recipe.source.nan_as_null)
    learned = [c.name for c in schema.learned]
    absent = [c for c in learned if c not in table.columns]
    if absent:
        raise RecipeError(f"{recipe.file}: output.impute_path {source} lacks the learned column(s) "
                          f"{', '.join(map(repr, absent))} of the source.")
    rng = RandomStreams(recipe.seed).rng("identifiers")
    base_seed = output.sample_seed if output.sample_seed is not None else derive_seed(recipe.seed, "impute")
    rows = {"real": 0, "synthetic": 0, "imputed_rows": 0, "imputed_cells": 0}
    kept: list[pl.DataFrame] = []
    sink = open_writer(path, output.format, pm=pm)
    try:
        for index, start in enumerate(range(0, table.height, output.batch_size)):
            batch = table.slice(start, output.batch_size)
            nulls = batch.select(pl.col(learned).is_null())
            had_nulls = nulls.select(pl.any_horizontal(pl.all())).to_series()
            filled = generator.impute(batch, seed=derive_seed(base_seed, index), **output.sampling)
            filled = _strip_identifiers(filled, schema, generator, rng)
            sink.write(filled)
            rows["real"] += batch.height
            rows["imputed_rows"] += int(had_nulls.sum())
            rows["imputed_cells"] += int(nulls.sum_horizontal().sum())
            if sum(frame.height for frame in kept) < MAX_CHECK_ROWS:
                kept.append(filled.filter(had_nulls))
    finally:
        sink.close()
    log(f"imputed {rows['imputed_cells']:,} cells in {rows['imputed_rows']:,} of {rows['real']:,} rows")
    checked = pl.concat(kept).head(MAX_CHECK_ROWS) if rows["imputed_rows"] else table.head(MAX_CHECK_ROWS)
    return to_internal(checked, schema, invalid=recipe.source.invalid_policy), rows


def batch_plan(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """(offset, rows) of each batch of a sampling run; one empty batch for 0 rows, so a file still has columns.

    ``synthforge sample`` seeds batch ``k`` with ``derive_seed(seed, offset)``, and partitioned
    sampling cuts the same batches, so both give the same rows.
    """
    return [(offset, min(batch_size, rows - offset)) for offset in range(0, rows, batch_size)] or [(0, 0)]


def _batches(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def _strip_identifiers(table: pl.DataFrame, schema: Schema, generator: Generator,
                       rng: np.random.Generator) -> pl.DataFrame:
    """Real rows in the output never carry real identifiers either: regenerate or drop them. Their personal columns
    get pseudonyms (:func:`synthforge.data.fake.pseudonyms`): the same real person the same fake name and e-mail in
    every row, never the row's own."""
    plans = generator.identifiers_
    table = table.with_columns(regenerate(name, plan, table.height, rng, table)
                               for name, plan in plans.items() if "personal" not in plan)
    locales: dict[str, dict[str, str]] = {}
    for name, plan in plans.items():
        if "personal" in plan and name in table.columns:
            locales.setdefault(plan["locale"], {})[name] = plan["personal"]
    for locale, kinds in locales.items():
        table = table.with_columns(pseudonyms(table, kinds, locale, run_secret(generator.seed_),
                                              derive_seed(generator.seed_, "pseudonym pools")).values())
    return table.select([name for name in schema.output_names if name in table.columns])


def _label(batch: pl.DataFrame, column: str | None, synthetic: bool) -> pl.DataFrame:
    return batch.with_columns(pl.lit(synthetic).alias(column)) if column else batch


def run_checks(checks: list[CheckSpec] | None, pm: SynthForgePluginManager, train: pl.DataFrame,
               holdout: pl.DataFrame | None, synthetic: pl.DataFrame, schema: Schema, *,
               target: str | None = None, impute: bool = False,
               output_rows: pl.DataFrame | None = None, shifted: bool = False,
               on_check: OnCheck | None = None) -> list[CheckResult]:
    """Run ``checks`` (a recipe's list; ``None``: every default check) and every mandatory check not turned off.

    ``target`` reaches the checks that take one. An imputed table (``impute``) is the user's own
    rows, so only quality checks run: row-distance privacy checks would only measure that.
    ``output_rows`` (augment, rebalance: the real rows with the new ones) go to the checks that
    score what a user trains on; a ``shifted`` output (rebalance, conditions) differs from the real
    table on purpose, so whole-distribution gates only warn unless the recipe sets ``on_fail``.
    ``on_check(done, total, name, result)`` hears of each check as it starts (``result`` None) and ends.
    """
    kinds = ("quality",) if impute else ("quality", "privacy")
    table_checks = {name: cls for name, cls in pm.checks().items() if not cls.relational and not cls.images}
    if checks is None:
        specs = [(cls, {}, Gate()) for cls in table_checks.values()
                 if cls.default and cls.kind in kinds and cls.applies(schema)]
    else:
        specs = [(pm.get_check(spec.name), dict(spec.params), Gate(min=spec.min, max=spec.max, on_fail=spec.on_fail))
                 for spec in checks if spec.enabled and spec.name in table_checks]
        named = {spec.name for spec in checks}
        specs += [(cls, {}, Gate()) for name, cls in table_checks.items()
                  if cls.mandatory and cls.kind in kinds and name not in named and cls.applies(schema)
                  and not (impute and cls.kind != "privacy")]
    results: list[CheckResult] = []
    tell = on_check or (lambda done, total, name, result: None)
    for cls, params, gate in specs:
        if target is not None and "target" in cls.Params.model_fields and params.get("target") is None:
            params["target"] = target
        scored = output_rows if output_rows is not None and cls.scores_output_rows else synthetic
        if shifted and cls.warns_when_shifted and gate.on_fail is None:
            gate = gate.model_copy(update={"on_fail": "warn"})
        tell(len(results), len(specs), cls.name, None)
        results.append(cls(params).run(train, holdout, scored, schema, gate))
        tell(len(results), len(specs), cls.name, results[-1])
    return results


OnCheck = Callable[[int, int, str, "CheckResult | None"], None]


class CheckProgress:
    """Each check as it runs: the progress hook (``checks``, done of total: the service's bar and a job's
    progress), and either a transient rich bar naming the running check (``progress``: a terminal, whose
    command prints the results once, as a table, when they are all in) or each result's line in the log as
    it ends (a job's log, the API)."""

    def __init__(self, pm: SynthForgePluginManager, info: RunInfo | None, log: Callable[[str], None],
                 progress: bool) -> None:
        self.pm, self.info, self.log, self.progress = pm, info, log, progress

    def __enter__(self) -> OnCheck:
        if self.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("checks"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=None)
        return self.on_check

    def on_check(self, done: int, total: int, name: str, result: CheckResult | None) -> None:
        if result is None:
            if self.info is not None:  # a run's, not an evaluation's
                self.pm.hook.synthforge_progress(run=self.info, stage="checks", done=done, total=total)
            if self.progress:
                self.bar.update(self.task, completed=done, total=total, description=name)
        elif self.progress:
            self.bar.update(self.task, completed=done)
        else:
            _log_checks([result], self.log)

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.bar.__exit__(None, None, None)


def privacy_turned_off(recipe: Recipe, pm: SynthForgePluginManager) -> list[str]:
    """What the recipe turned off or weakened of the protections every run has by default, in words."""
    if recipe.output.mode == "impute":
        return []
    off = []
    for spec in recipe.checks or []:
        check = pm.get_check(spec.name)
        if check.kind != "privacy":
            continue
        if check.mandatory and not spec.enabled:
            off.append(f"the {spec.name} gate is turned off (checks: {spec.name} enabled: off)")
        elif check.mandatory and spec.on_fail == "warn":
            off.append(f"the {spec.name} gate only warns (checks: {spec.name} on_fail: warn)")
    if recipe.output.protect_rows_below is False:
        off.append("copies of rare training rows are not drawn again (output.protect_rows_below: off)")
    return off


def _log_checks(results: list[CheckResult], log: Callable[[str], None]) -> None:
    for check in results:
        verdict = "pass" if check.passed else ("FAIL" if check.on_fail == "error" else "warn")
        score = "n/a" if check.score is None else f"{check.score:.4f}"
        log(f"check {check.name}: {score} (gate {check.gate}) {verdict}: {check.summary}")


def _gate_message(failures: list[CheckResult], path: Path, retries: list[dict[str, Any]] | None = None) -> str:
    lines = [f"{c.kind} check {c.name!r} scored {c.score:.4g}, outside its gate {c.gate}: {c.summary}"
             for c in failures]
    lines += [f"(before: refitted with {', '.join(f'{k} {v}' for k, v in r['changed'].items())} after "
              f"{'; '.join(r['refused'])})" for r in retries or []]
    return ("the run failed its gates, so no dataset was written:\n  " + "\n  ".join(lines)
            + f"\nReports are in {path.parent / (path.name + '.failed')}. Change the generator or its params, "
              "or adjust the gate under `checks:` if the threshold is wrong for this data.")


def failed_reports_path(output_path: Path) -> Path:
    """Where the reports of a run whose gate failed go: ``<output>.failed``."""
    return output_path.parent / f"{output_path.name}.failed"


def _keep_failed_reports(temporary: Path, output_path: Path, inputs: Sequence[tuple[str, Path]]) -> None:
    staging = staging_path(output_path, "failed")
    staging.mkdir()
    try:
        for name in ("report.json", "report.html"):
            if (temporary / name).exists():
                shutil.copy2(temporary / name, staging / name)
        replace_atomically(staging, failed_reports_path(output_path), protected=inputs, kind="failed-run reports")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# --- provenance ---------------------------------------------------------------------------


def _describe_run(info: RunInfo, recipe: Recipe, source: Path, generator: Generator,
                  result: RunResult, versions: dict[str, str]) -> dict[str, Any]:
    return {
        "run_id": info.id,
        "recipe": recipe.name or Path(recipe.file).stem,
        "recipe_file": recipe.file,
        "mode": recipe.output.mode,
        "generator": generator.name,
        "params": generator.params.model_dump(mode="json"),
        "seed": recipe.seed,
        "source": str(source),
        "rows": result.rows,
        "timings": result.timings,
        "privacy_turned_off": result.privacy_off,
        "privacy_retries": result.retries,
        "generator_choice": result.choice,
        "differential_privacy": result.privacy,
        "started_at": info.started_at,
        "versions": versions,
        "machine": machine(),
        "threads": result.threads,
    }


def _manifest(info: RunInfo, recipe: Recipe, source: Path, generator: Generator, result: RunResult,
              versions: dict[str, str]) -> dict[str, Any]:
    dumped = recipe.model_dump(mode="json")
    if recipe.holdout.path is not None:  # the file was the holdout; the split fraction played no part
        dumped["holdout"].pop("fraction", None)
        holdout = {"path": str(recipe.resolve(recipe.holdout.path)), "rows": result.rows.get("holdout", 0)}
    else:
        holdout = {"fraction": recipe.holdout.fraction, "rows": result.rows.get("holdout", 0)}
    return {
        "run_id": info.id,
        "recipe_file": recipe.file,
        "recipe_sha256": recipe.canonical_hash(),
        "recipe": dumped,
        "holdout": holdout,
        "source": str(source),
        "source_sha256": file_sha256(source),
        "seed": recipe.seed,
        "generator": generator.name,
        "params": generator.params.model_dump(mode="json"),
        "rows": result.rows,
        "timings_seconds": {k: round(v, 4) for k, v in result.timings.items()},
        "checks": [{"name": c.name, "score": c.score, "passed": c.passed} for c in result.checks],
        "privacy_turned_off": result.privacy_off,
        "privacy_retries": result.retries,
        "generator_choice": result.choice,
        "differential_privacy": result.privacy,
        "threads": result.threads,
        "versions": versions,
        "started_at": info.started_at,
        "finished_at": _now(),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Timer:
    """Times each stage into ``timings``; tells ``on_start`` (the progress hook) as each one begins."""

    def __init__(self, timings: dict[str, float], on_start: Callable[[str], None] | None = None) -> None:
        self.timings, self.on_start = timings, on_start

    def __call__(self, name: str) -> _Timer:
        self.name = name
        return self

    def __enter__(self) -> None:
        if self.on_start is not None:
            self.on_start(self.name)
        self.started = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.timings[self.name] = time.perf_counter() - self.started
