"""The pipeline for a recipe of related tables (``source.tables``), step for step as a flat run's.

load every table → infer each schema (keys as identifiers) → check the keys → hold out a fraction of
the entity roots with all their children → fit the tables in their structure
(:class:`synthforge.relational.DatabaseGenerator`) → sample a database (``output.batch_size`` main rows at a time, each
batch with all its children; the checks look at the first, a whole sub-database) → check every table and the
relationships → write one file per table, the reports, the model and the manifest into one hidden
folder, renamed into place only when every gate passed.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from synthforge.checks.base import CheckResult, Gate
from synthforge.checks.relational import Database
from synthforge.constraints import check_constraints
from synthforge.data.io import open_writer, read_table
from synthforge.data.schema import ColumnKind, ColumnOverride, Schema, infer_schema, prepare_source, to_internal
from synthforge.engine import (
    FORMAT_EXTENSIONS,
    RunInfo,
    RunResult,
    _log_checks,
    _now,
    _Timer,
    commit_output,
    fit_context,
    open_staging,
    privacy_turned_off,
    run_checks,
)
from synthforge.errors import DataError
from synthforge.generator import FitContext
from synthforge.plugins import SynthForgePluginManager
from synthforge.provenance import file_sha256, machine, package_versions
from synthforge.recipe import CheckSpec, Recipe, TableSpec, recipe_locator
from synthforge.relational import DatabaseGenerator, Relations, align_key_types, check_keys, split_holdout
from synthforge.seeds import RandomStreams, derive_seed


def expand_source(recipe: Recipe, log: Callable[[str], None] | None = None) \
        -> tuple[Recipe, dict[str, pl.DataFrame] | None]:
    """A ``source.database`` recipe with its ``source.tables`` read from the catalog, and the rows it read;
    a recipe of files as it is (its tables are read by :func:`load_tables`)."""
    if recipe.source.database is None:
        return recipe, None
    from synthforge.data.database import database_tables

    return database_tables(recipe, log)


def load_tables(recipe: Recipe, pm: SynthForgePluginManager, read: dict[str, pl.DataFrame] | None = None) \
        -> tuple[Relations, dict[str, pl.DataFrame], dict[str, Schema]]:
    """Every table read (or taken from ``read``, a database's rows), its schema inferred (its keys as
    identifiers) and its dates parsed; keys checked."""
    relations = Relations.from_recipe(recipe)
    where = recipe_locator(recipe)
    frames, schemas = {}, {}

    def raw(name: str, spec: TableSpec) -> pl.DataFrame:
        if read is not None:
            return read[name]
        assert spec.path is not None
        return read_table(recipe.resolve(spec.path), spec.format, pm=pm, ragged_rows=spec.ragged_rows)

    tables = align_key_types(relations, {
        name: prepare_source(raw(name, spec), drop=spec.drop, nan_as_null=spec.nan_as_null)
        for name, spec in recipe.source.tables.items()}, lambda table: where(("source", "tables", table)))
    for name, spec in recipe.source.tables.items():
        table = tables[name]
        overrides = dict(spec.columns)
        for key in relations.keys(name):
            if key in table.columns:
                overrides.setdefault(key, ColumnOverride(kind=ColumnKind.identifier))
        try:
            schema = infer_schema(table, overrides, max_categories=spec.max_categories, nothing_learned=True,
                                  locale=spec.locale)
        except DataError as error:
            raise DataError(f"{where(('source', 'tables', name))}table {name!r}: {error}") from None
        frames[name] = to_internal(table, schema, invalid=spec.invalid_policy)
        schemas[name] = schema
    check_keys(relations, frames, lambda table: where(("source", "tables", table)))
    return relations, frames, schemas


def _with_constraints(spec: TableSpec, schema: Schema, train: pl.DataFrame, below: int, where: str) -> Schema:
    if not spec.constraints:
        return schema
    check_constraints(spec.constraints, [c.name for c in schema.learned], where=where)
    return schema.model_copy(update={"constraints": [rule.fit(train, max(below, 1)) for rule in spec.constraints]})


def validate_tables(recipe: Recipe, pm: SynthForgePluginManager) -> list[str]:
    """``synthforge validate`` for related tables: read, infer and check every key without training."""
    recipe, read = expand_source(recipe)
    relations, frames, schemas = load_tables(recipe, pm, read)
    notes = [f"table {name!r}: {frame.height:,} rows × {frame.width} columns" for name, frame in frames.items()]
    notes += [f"{relation.describe()}" + (f", a sequence ordered by {relation.sequence_by!r}"
                                          if relation.sequence_by else "")
              + ("" if relation.primary else " (a reference)") for relation in relations.relations]
    notes += [f"table {name!r} column {c.name!r}: {c.kind.value}, {c.note}" for name, schema in schemas.items()
              for c in schema.columns if c.note]
    return notes


def run_tables(recipe: Recipe, pm: SynthForgePluginManager, info: RunInfo, result: RunResult, timer: _Timer,
               log: Callable[[str], None], progress: bool) -> None:
    result.privacy_off = privacy_turned_off(recipe, pm)
    for line in result.privacy_off:
        log(f"PRIVACY OFF: {line}")
    where = recipe_locator(recipe)
    if recipe.output.database is not None and "format" not in recipe.output.model_fields_set:
        # the files the database is loaded from keep every type (a CSV would hold times with zones as text)
        recipe = recipe.model_copy(update={"output": recipe.output.model_copy(update={"format": "parquet"})})
    if recipe.output.database is not None:
        from synthforge.data.database import target_url

        target_url(recipe)  # a target that is the source is refused before anything is read
    with timer("load"):
        recipe, read = expand_source(recipe, log)
        relations, frames, schemas = load_tables(recipe, pm, read)
    if recipe.output.database is not None:  # a filled target, before anything is fitted
        from synthforge.data.database import check_target

        check_target(target_url(recipe), recipe.output.database_schema, relations.tables, recipe.output.if_exists,
                     where=where(("output", "database")))
        log("loaded " + ", ".join(f"{name} ({frame.height:,} rows)" for name, frame in frames.items())
            + f"; {result.threads} CPU thread{'s' if result.threads != 1 else ''}")
    with timer("split"):
        train, holdout = split_holdout(relations, frames, recipe.holdout.fraction,
                                       RandomStreams(recipe.seed).rng("split"))
        schemas = {name: _with_constraints(recipe.source.tables[name], schema, train[name],
                                           recipe.copy_protection_below,
                                           f"{where(('source', 'tables', name, 'constraints'))}source.tables.{name}."
                                           f"constraints") for name, schema in schemas.items()}
        held = ", ".join(f"{n} {t.height:,}" for n, t in (holdout or {}).items())
        log(f"holding out {held or 'nothing'}")
    def make_generator(table: str) -> Any:
        spec = recipe.source.tables[table].generator or recipe.generator
        return pm.get_generator(spec.name)(spec.params)

    def context_for(table: str) -> FitContext:
        spec = recipe.source.tables[table].generator or recipe.generator
        return fit_context(recipe, pm, info, derive_seed(recipe.seed, "table", table), spec, log, progress,
                           stage=f"fit:{table}")

    database = DatabaseGenerator(relations, make_generator)
    with timer("fit"):
        database.fit(train, schemas, context_for, log)
    output = recipe.output
    temporary = open_staging(info.output_path, log)
    target = contextlib.ExitStack()
    try:
        with timer("sample"):
            seed = output.sample_seed if output.sample_seed is not None else derive_seed(recipe.seed, "sample")
            extension = FORMAT_EXTENSIONS.get(output.format, output.format)
            # The first batch, a whole sub-database, is what the checks look at.
            written, synthetic = database.write_batches(
                temporary, extension, lambda path: open_writer(path, output.format, pm=pm), output.rows,
                output.batch_size, seed)
        result.rows = {f"{name}.training": frame.height for name, frame in train.items()}
        result.rows |= {f"{name}.synthetic": rows for name, rows in written.items()}
        result.rows["copies_redrawn"] = sum(g.copies_redrawn_ for g in database.generators_.values())
        result.rows["sequences_redrawn"] = database.sequences_redrawn_
        log("sampled " + ", ".join(f"{n} {r:,}" for n, r in written.items()) + " rows; "
            f"{result.rows['copies_redrawn']:,} copies of rare rows and {result.rows['sequences_redrawn']:,} copied "
            f"sequences drawn again")
        internal = {name: to_internal(frame, schemas[name]) for name, frame in synthetic.items()}
        checked = Database(relations, schemas, train, holdout, internal)
        with timer("checks"):
            result.checks = run_database_checks(recipe.checks, pm, checked, recipe)
        if not progress:  # a terminal's command prints them once, as a table
            _log_checks(result.checks, log)
        from synthforge.report import write_database_reports

        any_generator = next(iter(database.generators_.values()), None)
        versions = package_versions(any_generator)
        with timer("report"):
            write_database_reports(temporary, info=_describe(info, recipe, result, versions), database=checked,
                                   checks=result.checks)
        with target:  # the target database's transaction commits once the output folder is in place
            write_database = None if output.database is None else (
                lambda: _write_database(recipe, relations, synthetic, temporary, extension, pm, target, result,
                                        timer, log))
            commit_output(temporary, info.output_path, result, timer,
                          database.save if output.save_model else None,
                          lambda: _manifest(info, recipe, result, versions), recipe.inputs(), write_database)
        result.output_path = info.output_path
        result.dataset_path = info.output_path
        log(f"wrote {len(synthetic)} tables to {info.output_path}")
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _write_database(recipe: Recipe, relations: Relations, synthetic: dict[str, pl.DataFrame], folder: Path,
                    extension: str, pm: SynthForgePluginManager, stack: contextlib.ExitStack, result: RunResult,
                    timer: _Timer, log: Callable[[str], None]) -> None:
    """Load the sampled tables, parents first, into ``output.database`` inside a transaction ``stack`` closes."""
    from synthforge.data.database import masked, open_target, source_url, target_metadata, target_url

    output = recipe.output
    where = recipe_locator(recipe)(("output", "database"))
    url = target_url(recipe)
    source = recipe.source
    with timer("database"):
        metadata = target_metadata(None if source.database is None else source_url(recipe), source.database_schema,
                                   relations, synthetic,
                                   output.database_schema, url.get_backend_name())
        loader = stack.enter_context(open_target(url, metadata, output.if_exists, where=where, log=log))
        for name in relations.order():
            table = read_table(folder / f"{name}.{extension}", output.format, pm=pm)
            loader.load(name, (table.slice(offset, output.batch_size)
                               for offset in range(0, table.height, output.batch_size)))
    result.rows |= {f"{name}.database": rows for name, rows in loader.rows.items()}
    log(f"loaded {', '.join(f'{n} {r:,}' for n, r in loader.rows.items())} rows into {masked(url)}"
        f"{f' schema {output.database_schema!r}' if output.database_schema else ''}; committed with the output "
        f"folder")


def run_database_checks(checks: list[CheckSpec] | None, pm: SynthForgePluginManager, database: Database,
                        recipe: Recipe | None = None) -> list[CheckResult]:
    """Every table's checks (named ``<check>[<table>]``) and the relational checks over the whole dataset."""
    results: list[CheckResult] = []
    for table, schema in database.schemas.items():
        specs = None if checks is None else [s for s in checks if s.table in (None, table)]
        keys = set(database.relations.keys(table))
        if not any(c.name not in keys for c in schema.learned):  # a lookup table of keys and names: leaks only
            specs = [CheckSpec(name="identifier_leak")] + [s for s in specs or [] if s.name == "identifier_leak"]
        target = recipe.source.tables[table].target if recipe is not None else None
        holdout = database.holdout.get(table) if database.holdout else None
        for check in run_checks(specs, pm, database.train[table], holdout, database.synthetic[table], schema,
                                target=target):
            check.name = f"{check.name}[{table}]"
            results.append(check)
    relational = {name: cls for name, cls in pm.checks().items() if cls.relational}
    if checks is None:
        chosen = [(cls, {}, Gate()) for cls in relational.values() if cls.default]
    else:
        named = {spec.name for spec in checks}
        chosen = [(relational[s.name], s.params, Gate(min=s.min, max=s.max, on_fail=s.on_fail))
                  for s in checks if s.enabled and s.name in relational]
        chosen += [(cls, {}, Gate()) for name, cls in relational.items() if cls.mandatory and name not in named]
    for cls, params, gate in chosen:
        if cls.applies_to(database):
            results.append(cls(params).run_database(database, gate))
    return results


def _describe(info: RunInfo, recipe: Recipe, result: RunResult, versions: dict[str, str]) -> dict[str, Any]:
    return {"run_id": info.id, "recipe": recipe.name or Path(recipe.file).stem, "recipe_file": recipe.file,
            "mode": recipe.output.mode, "generator": recipe.generator.name, "params": recipe.generator.params,
            "seed": recipe.seed, "source": _sources(recipe, hashed=False),
            "rows": result.rows, "timings": result.timings, "privacy_turned_off": result.privacy_off,
            "started_at": info.started_at, "versions": versions, "machine": machine(), "threads": result.threads}


def _manifest(info: RunInfo, recipe: Recipe, result: RunResult, versions: dict[str, str]) -> dict[str, Any]:
    extension = FORMAT_EXTENSIONS.get(recipe.output.format, recipe.output.format)
    return {
        "run_id": info.id, "recipe_file": recipe.file, "recipe_sha256": recipe.canonical_hash(),
        "recipe": _masked_recipe(recipe), "holdout": {"fraction": recipe.holdout.fraction},
        "sources": _sources(recipe, hashed=True),
        "tables": {name: f"{name}.{extension}" for name in recipe.source.tables},
        "seed": recipe.seed, "generator": recipe.generator.name, "rows": result.rows,
        "timings_seconds": {k: round(v, 4) for k, v in result.timings.items()},
        "checks": [{"name": c.name, "score": c.score, "passed": c.passed} for c in result.checks],
        "privacy_turned_off": result.privacy_off, "threads": result.threads, "versions": versions,
        "started_at": info.started_at, "finished_at": _now(),
    }


def _sources(recipe: Recipe, *, hashed: bool) -> dict[str, Any]:
    """Each table's file (and its digest), or the database it was read from, its password masked."""
    if recipe.source.database is not None:
        from synthforge.data.database import masked

        return {name: {"database": masked(recipe.source.database), "schema": recipe.source.database_schema}
                for name in recipe.source.tables}
    return {name: {"path": str(recipe.resolve(spec.path)), "sha256": file_sha256(recipe.resolve(spec.path))}
            if hashed else str(recipe.resolve(spec.path))
            for name, spec in recipe.source.tables.items() if spec.path is not None}


def _masked_recipe(recipe: Recipe) -> dict[str, Any]:
    """The recipe as data, with any password written in a database URL masked."""
    data = recipe.model_dump(mode="json")
    if recipe.source.database is not None or recipe.output.database is not None:
        from synthforge.data.database import masked

        for part in ("source", "output"):
            if data[part].get("database"):
                data[part]["database"] = masked(data[part]["database"])
    return data
