"""What each column is: inferred from the data, overridable by the recipe, enforced on output.

The schema is the contract between a source table and everything sampled from it:
generators learn the *learned* columns, identifier and free-text columns are never
learned (their real values must never reach the output), and :func:`enforce`
casts sampled frames back to the source's types, bounds and categories.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from synthforge.errors import DataError


class ColumnKind(str, Enum):
    continuous = "continuous"
    integer = "integer"
    categorical = "categorical"
    boolean = "boolean"
    datetime = "datetime"
    identifier = "identifier"
    free_text = "free_text"

    @property
    def learned(self) -> bool:
        return self not in (ColumnKind.identifier, ColumnKind.free_text)

    @property
    def numeric(self) -> bool:
        return self in (ColumnKind.continuous, ColumnKind.integer, ColumnKind.datetime)


IdentifierHandling = Literal["regenerate", "drop"]


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ColumnKind
    dtype: str
    null_rate: float = 0.0
    n_unique: int = 0
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = None
    handling: IdentifierHandling = "regenerate"

    @property
    def nullable(self) -> bool:
        return self.null_rate > 0


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec]

    def __getitem__(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise DataError(f"column {name!r} is not in the table; its columns are: {', '.join(self.names)}.")

    def __contains__(self, name: object) -> bool:
        return any(column.name == name for column in self.columns)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def learned(self) -> list[ColumnSpec]:
        """Columns a generator models: everything but identifiers and free text."""
        return [column for column in self.columns if column.kind.learned]

    @property
    def output_names(self) -> list[str]:
        """Columns in an output table: identifiers set to ``drop`` are left out."""
        return [c.name for c in self.columns if c.kind.learned or c.handling == "regenerate"]


class ColumnOverride(BaseModel):
    """What a recipe may say about one column under ``source.columns``."""

    model_config = ConfigDict(extra="forbid")

    kind: ColumnKind | None = None
    handling: IdentifierHandling | None = None


# Names that say "this identifies a person or a record" whatever the values look like.
_IDENTIFIER_NAME = re.compile(
    r"(^|[_\-\s.])(id|uuid|guid|ssn|nin|passport|email|e-mail|phone|mobile|name|surname|"
    r"first[_\-\s]?name|last[_\-\s]?name|full[_\-\s]?name|address|case[_\-\s]?(no|number|id)|"
    r"account|iban|record[_\-\s]?(no|number|id)|patient|customer[_\-\s]?id)($|[_\-\s.])",
    re.IGNORECASE,
)

DEFAULT_MAX_CATEGORIES = 1000


def infer_schema(
    table: pl.DataFrame,
    overrides: dict[str, ColumnOverride] | None = None,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> Schema:
    """Infer each column's kind and statistics; raise :class:`DataError` on data that cannot be learned.

    :param overrides: per-column kind/handling chosen by the user; they win over inference.
    :param max_categories: a text column with more distinct values that is not an
        identifier is an error unless the recipe names its kind.
    """
    overrides = overrides or {}
    if table.width == 0:
        raise DataError("the table has no columns.")
    if table.height == 0:
        raise DataError("the table has no rows: there is nothing to learn from. Check the source file and any filter.")
    unknown = [name for name in overrides if name not in table.columns]
    if unknown:
        raise DataError(
            f"source.columns names {', '.join(map(repr, unknown))}, not in the table; "
            f"its columns are: {', '.join(table.columns)}."
        )

    stats = _column_stats(table)
    columns = []
    for name in table.columns:
        series = table.get_column(name)
        override = overrides.get(name, ColumnOverride())
        null_count, n_unique = stats[name]
        if null_count == series.len():
            raise DataError(
                f"column {name!r} is null in every row, so there is nothing to learn from it. "
                f"Remove it with `source.drop: [{name}]`, or fill it in the source."
            )
        kind = override.kind or _infer_kind(series, n_unique, null_count, max_categories)
        _reject_unlearnable(series, kind, null_count, n_unique, explicit=override.kind is not None)
        columns.append(_describe_column(series, kind, null_count, n_unique, override.handling or "regenerate"))
    if not any(column.kind.learned for column in columns):
        raise DataError(
            "every column is an identifier or free text, so there is nothing to learn. "
            "Set `kind:` for the columns that carry information under source.columns."
        )
    return Schema(columns=columns)


def _column_stats(table: pl.DataFrame) -> dict[str, tuple[int, int]]:
    row = table.select(
        *(pl.col(c).null_count().alias(f"nulls:{c}") for c in table.columns),
        *(pl.col(c).drop_nulls().n_unique().alias(f"unique:{c}") for c in table.columns),
    ).row(0, named=True)
    return {c: (row[f"nulls:{c}"], row[f"unique:{c}"]) for c in table.columns}


def _infer_kind(series: pl.Series, n_unique: int, null_count: int, max_categories: int) -> ColumnKind:
    dtype = series.dtype
    non_null = series.len() - null_count
    looks_unique = non_null >= 20 and n_unique >= 0.95 * non_null
    named_like_identifier = bool(_IDENTIFIER_NAME.search(series.name))
    if dtype == pl.Boolean:
        return ColumnKind.boolean
    if dtype.is_temporal():
        return ColumnKind.datetime
    if dtype.is_integer():
        if named_like_identifier and n_unique >= 0.5 * max(non_null, 1):
            return ColumnKind.identifier
        return ColumnKind.integer
    if dtype.is_float():
        return ColumnKind.continuous
    if dtype in (pl.String, pl.Categorical, pl.Enum):
        text = series.cast(pl.String).drop_nulls()
        if looks_unique or (named_like_identifier and n_unique >= 0.5 * max(non_null, 1)):
            return _identifier_or_text(text)
        if n_unique > max_categories:
            raise DataError(
                f"column {series.name!r} has {n_unique:,} distinct values, more than the "
                f"{max_categories:,} a categorical column may have by default. If it identifies records, set "
                f"`kind: identifier` under source.columns; if it is prose, `kind: free_text`; to learn it "
                f"anyway, set `kind: categorical` (its rarest values are then pooled) or raise "
                f"source.max_categories."
            )
        return ColumnKind.categorical
    raise DataError(
        f"column {series.name!r} has type {dtype}, which SynthForge cannot learn. Drop it with "
        f"source.drop or convert it to a number, text, boolean or date."
    )


def _identifier_or_text(text: pl.Series) -> ColumnKind:
    if text.len() == 0:
        return ColumnKind.identifier
    mean_length = text.str.len_chars().mean() or 0
    words = text.str.count_matches(r"\s+").mean() or 0
    return ColumnKind.free_text if mean_length > 40 or words >= 3 else ColumnKind.identifier


def _reject_unlearnable(series: pl.Series, kind: ColumnKind, null_count: int, n_unique: int, *, explicit: bool) -> None:
    name = series.name
    if kind.learned and n_unique == 1 and null_count == 0:
        value = series.drop_nulls().item(0)
        raise DataError(
            f"column {name!r} holds the same value ({value!r}) in every row, so it carries no information "
            f"to learn. Remove it with `source.drop: [{name}]` and add it back after synthesis if you need it."
        )
    if series.dtype.is_float():
        bad = series.is_nan().sum() + series.is_infinite().sum()
        if bad:
            first = (series.is_nan() | series.is_infinite()).arg_true().item(0)
            raise DataError(
                f"column {name!r} has {bad:,} NaN or infinite value(s) (the first in row {first + 1:,}). "
                f"Clean them in the source, or set `source.nan_as_null: true` to treat them as missing."
            )
    if kind.numeric and not (series.dtype.is_numeric() or series.dtype.is_temporal()):
        raise DataError(
            f"column {name!r} is set to kind {kind.value!r} but holds {series.dtype} values. "
            f"Convert it in the source or choose `kind: categorical`."
        )
    del explicit


def _describe_column(
    series: pl.Series, kind: ColumnKind, null_count: int, n_unique: int, handling: IdentifierHandling
) -> ColumnSpec:
    spec: dict[str, Any] = {
        "name": series.name,
        "kind": kind,
        "dtype": str(series.dtype),
        "null_rate": null_count / series.len(),
        "n_unique": n_unique,
        "handling": handling,
    }
    if kind.numeric:
        values = as_number(series.drop_nulls())
        spec["minimum"] = float(values.min())  # type: ignore[arg-type]
        spec["maximum"] = float(values.max())  # type: ignore[arg-type]
        if kind == ColumnKind.continuous:
            spec["decimals"] = _decimals(values)
    return ColumnSpec(**spec)


def _decimals(values: pl.Series, most: int = 6) -> int | None:
    """The fewest decimals that write every value exactly, or None if more than ``most``."""
    sample = values.head(5000)
    for decimals in range(most + 1):
        if (sample.round(decimals) - sample).abs().max() < 1e-9:  # type: ignore[operator]
            return decimals
    return None


def as_number(series: pl.Series) -> pl.Series:
    """Dates as days and datetimes as microseconds since 1970; other series unchanged.

    The one place a temporal column becomes a number: the encoder, the checks and the
    report all compare dates on this scale.
    """
    if series.dtype == pl.Date:
        return series.cast(pl.Int32)
    if series.dtype.is_temporal():
        return series.dt.epoch("us")
    return series


def present_values(series: pl.Series) -> np.ndarray:
    """The non-null values of a numeric or temporal column as float64 (temporal via :func:`as_number`)."""
    return as_number(series.drop_nulls()).cast(pl.Float64).to_numpy()


def prepare_source(
    table: pl.DataFrame, *, drop: list[str] | None = None, nan_as_null: bool = False
) -> pl.DataFrame:
    """Apply the recipe's source options: drop columns, optionally turn NaN/inf into nulls."""
    drop = drop or []
    missing = [name for name in drop if name not in table.columns]
    if missing:
        raise DataError(
            f"source.drop names {', '.join(map(repr, missing))}, not in the table; "
            f"its columns are: {', '.join(table.columns)}."
        )
    table = table.drop(drop)
    if nan_as_null:
        table = table.with_columns(
            pl.when(pl.col(c).is_nan() | pl.col(c).is_infinite()).then(None).otherwise(pl.col(c)).alias(c)
            for c, dtype in table.schema.items()
            if dtype.is_float()
        )
    return table


def check_columns(table: pl.DataFrame, schema: Schema, *, what: str = "the table") -> None:
    """Raise if ``table`` lacks columns the schema needs (extra columns are allowed)."""
    missing = [c.name for c in schema.learned if c.name not in table.columns]
    if missing:
        raise DataError(
            f"{what} lacks column(s) {', '.join(map(repr, missing))} that the model was trained on; "
            f"its columns are: {', '.join(table.columns)}."
        )


def enforce(table: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Cast a decoded frame to the schema's dtypes, bounds and precision, in schema order.

    Identifier and free-text columns pass through: they hold regenerated values.
    """
    expressions = []
    for column in schema.columns:
        if column.name not in table.columns:
            continue
        expression = pl.col(column.name)
        if not column.kind.learned:
            expressions.append(expression)
            continue
        if column.kind in (ColumnKind.continuous, ColumnKind.integer) and column.minimum is not None:
            expression = expression.clip(column.minimum, column.maximum)
        if column.kind == ColumnKind.continuous and column.decimals is not None:
            expression = expression.round(column.decimals)
        if column.kind == ColumnKind.integer:
            expression = expression.round(0)
        expressions.append(expression.cast(_polars_dtype(column.dtype)).alias(column.name))
    return table.select(expressions)


def _polars_dtype(name: str) -> pl.DataType:
    """Turn a dtype's string form back into a polars dtype (the schema is stored as JSON)."""
    simple = {
        "Int8": pl.Int8, "Int16": pl.Int16, "Int32": pl.Int32, "Int64": pl.Int64,
        "UInt8": pl.UInt8, "UInt16": pl.UInt16, "UInt32": pl.UInt32, "UInt64": pl.UInt64,
        "Float32": pl.Float32, "Float64": pl.Float64, "String": pl.String, "Boolean": pl.Boolean,
        "Date": pl.Date, "Categorical": pl.String,
    }
    if name in simple:
        return simple[name]()
    match = re.fullmatch(r"Datetime\(time_unit='(\w+)', time_zone=(?:'([^']*)'|None)\)", name)
    if match:
        return pl.Datetime(match.group(1), match.group(2))  # type: ignore[arg-type]
    if name.startswith("Enum") or name.startswith("Categorical"):
        return pl.String()
    return pl.String()
