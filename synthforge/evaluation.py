"""Score any pair of tables, whoever generated the synthetic one (``synthforge evaluate``)."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from synthforge.checks.base import CheckResult
from synthforge.data.io import read_table, staged_folder
from synthforge.data.ownership import check_destination
from synthforge.data.schema import Schema, infer_schema, to_internal
from synthforge.errors import DataError
from synthforge.plugins import SynthForgePluginManager, get_plugin_manager


def align(table: pl.DataFrame, reference: pl.DataFrame, what: str) -> pl.DataFrame:
    """``table`` with ``reference``'s columns, in its order and types."""
    missing = [c for c in reference.columns if c not in table.columns]
    if missing:
        raise DataError(f"the {what} table lacks column(s) {', '.join(map(repr, missing))} of the real table.")
    try:
        return table.select(reference.columns).cast(reference.schema, strict=False)
    except pl.exceptions.PolarsError as error:
        raise DataError(f"the {what} table's columns do not match the real table's types: {error}") from None


def _everything_null(schema: Schema) -> dict[str, str]:
    """A synthetic table's unreadable dates count as missing (and so score lower), not as an error."""
    return {column.name: "null" for column in schema.columns if column.format}


def evaluate_frames(real: pl.DataFrame, synthetic: pl.DataFrame, *, holdout: pl.DataFrame | None = None,
                    target: str | None = None, schema: Schema | None = None, out: Path | None = None,
                    pm: SynthForgePluginManager | None = None, checks: list[str] | None = None,
                    protected: Sequence[tuple[str, Path]] = (), progress: bool = False) -> list[CheckResult]:
    from synthforge.provenance import package_versions
    from synthforge.recipe import CheckSpec

    pm = pm or get_plugin_manager()
    schema = schema or infer_schema(real)
    # Dates held as text are compared as dates: every table is parsed the way the real one's schema says.
    real = to_internal(real, schema)
    synthetic = align(to_internal(synthetic, schema, invalid=_everything_null(schema)), real, "synthetic")
    holdout = align(to_internal(holdout, schema), real, "holdout") if holdout is not None else None
    if target is not None and target not in real.columns:
        raise DataError(f"--target {target!r} is not a column; columns: {', '.join(real.columns)}.")
    from synthforge.engine import CheckProgress, run_checks

    specs = [CheckSpec(name=name) for name in checks] if checks is not None else None
    with CheckProgress(pm, None, lambda message: None, progress) as on_check:
        results = run_checks(specs, pm, real, holdout, synthetic, schema, target=target, on_check=on_check)
    if out is not None:
        from synthforge.report import write_reports

        info: dict[str, Any] = {"recipe": "evaluation", "target": target, "rows": {"real": real.height,
                                "synthetic": synthetic.height}, "versions": package_versions(),
                                "machine": f"{platform.system()} {platform.machine()}"}
        _write_reports_folder(out, protected, lambda folder: write_reports(
            folder, info=info, train=real, holdout=holdout, synthetic=synthetic, schema=schema, checks=results))
    return results


def _write_reports_folder(out: Path, protected: Sequence[tuple[str, Path]],
                          write: Callable[[Path], None]) -> None:
    """The reports built in a staging folder and renamed to ``out``, which may only be new, empty or a folder of
    reports SynthForge wrote: an evaluation never replaces the user's files."""
    check_destination(out, protected, what="--out")
    with staged_folder(out, protected=protected, kind="evaluation reports") as staging:
        write(staging)


def evaluate_tables(real: Path, synthetic: Path, *, holdout: Path | None = None, target: str | None = None,
                    out: Path | None = None, pm: SynthForgePluginManager | None = None,
                    columns: dict[str, str] | None = None, max_categories: int | None = None,
                    progress: bool = False) -> list[CheckResult]:
    """:func:`evaluate_frames` on files; ``columns`` maps a column to its kind, as a recipe's ``source.columns``."""
    from synthforge.data.schema import DEFAULT_MAX_CATEGORIES, column_overrides

    pm = pm or get_plugin_manager()
    protected = [("the real table", real), ("the synthetic table", synthetic)] + (
        [("the holdout", holdout)] if holdout is not None else [])
    if out is not None:  # refused before minutes of checks, not after
        check_destination(out, protected, what="--out")
    real_table = read_table(real, pm=pm)
    overrides = column_overrides(columns or {})
    unknown = [name for name in overrides if name not in real_table.columns]
    if unknown:
        raise DataError(f"--column names {', '.join(map(repr, unknown))}, not a column of {real}; its columns: "
                        f"{', '.join(real_table.columns)}.")
    try:
        schema = infer_schema(real_table, overrides, max_categories=max_categories or DEFAULT_MAX_CATEGORIES)
    except ValueError as error:
        raise DataError(f"--column: {error}") from None
    return evaluate_frames(
        real_table,
        read_table(synthetic, pm=pm),
        holdout=read_table(holdout, pm=pm) if holdout is not None else None,
        target=target,
        schema=schema,
        out=out,
        pm=pm,
        protected=protected,
        progress=progress,
    )
