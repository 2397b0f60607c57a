"""What each column is: inferred from the data, overridable by the recipe, enforced on output.

The schema is the contract between a source table and everything sampled from it:
generators learn the *learned* columns, identifier and free-text columns are never
learned (their real values must never reach the output), and :func:`enforce`
casts sampled frames back to the source's types, bounds and categories.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthforge.constraints import Constraint
from synthforge.data.fake import DEFAULT_LOCALE, PERSONAL_KINDS, check_locale
from synthforge.data.personal import Finding, describe, find_by_name_and_values, find_personal, name_looks_personal
from synthforge.data.temporal import (
    TextFormat,
    detect_format,
    parse_text_column,
    text_format_of,
    write_text_column,
)
from synthforge.errors import DataError

# The share of their combinations that records unique on their quasi-identifiers must fill for those columns to
# be a grid's coordinates (Schema.quasi_identifier_grid). Panels fill most of theirs (Texas housing's city ×
# year × month 0.97, Grunfeld's firm × year 1.0); records of people unique by sparsity fill a tiny share (UCI
# Adult's 3.7e-11, the 11 to 100-row statsmodels tables at most 0.046); a quarter leaves room for a column that
# another determines (a region of each city) or for missing cells.
GRID_FILL = 0.25


class ColumnKind(str, Enum):
    continuous = "continuous"
    integer = "integer"
    categorical = "categorical"
    boolean = "boolean"
    datetime = "datetime"
    duration = "duration"
    identifier = "identifier"
    free_text = "free_text"
    #: the same value (or null) in every row: nothing to learn, written back as it is
    constant = "constant"

    @property
    def learned(self) -> bool:
        return self not in (ColumnKind.identifier, ColumnKind.free_text, ColumnKind.constant)

    @property
    def numeric(self) -> bool:
        return self in (ColumnKind.continuous, ColumnKind.integer, ColumnKind.datetime, ColumnKind.duration)


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
    #: how the source writes a date/time held as text (strftime); outputs are written back the same way
    format: str | None = None
    #: a date/time column's resolution on the :func:`as_number` scale (1_000_000: whole seconds)
    step: float | None = None
    #: a constant column's one value (None: null in every row)
    value: Any = None
    #: holds (or is named like) people's names, contact details or addresses: identifier_leak looks for
    #: its real values in every output column, whatever kind it was learned as
    pii: bool = False
    #: what personal data the column holds (person_name, email, phone, …: synthforge.data.fake.PERSONAL_KINDS); a
    #: regenerated column of a personal kind is written by Faker in ``locale``
    personal: str | None = None
    #: the Faker locale its values are written in (en_US, de_DE, …)
    locale: str | None = None
    #: why inference chose this kind, when a person would ask (shown by ``profile`` and the report)
    note: str | None = None

    @property
    def nullable(self) -> bool:
        return self.null_rate > 0

    @property
    def polars_dtype(self) -> pl.DataType:
        """The column's polars type, from its stored string form."""
        return _polars_dtype(self.dtype)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec]
    #: the recipe's business rules, kept in every output row (synthforge.constraints)
    constraints: list[Constraint] = []
    #: the training rows of the whole table, where the checks see a sample of them (a streamed source); what
    #: depends on the table's size rather than on the rows at hand (quasi_identifier_grid) reads it
    training_rows: int | None = None

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
    def quasi_identifiers(self) -> list[str]:
        """Learned columns an attacker could know about a person: categories and numbers with ≤ 100 values."""
        return [c.name for c in self.learned if not c.kind.numeric or c.n_unique <= 100]

    def quasi_identifier_grid(self, rows: int, unique_records: int, columns: list[str] | None = None,
                              table_rows: int | None = None) -> float | None:
        """How densely a table's records fill the combinations of its quasi-identifiers when those are the
        coordinates of a grid — a panel such as city × year × month: at least two of them, every combination in
        one record only (``unique_records == rows``), and at least ``GRID_FILL`` of the combinations present
        (their count: the product of each column's distinct values); otherwise None.

        There a record is unique on its quasi-identifiers by the table's design, not because it is rare: a
        fresh real row never shares a training row's cell, and a model that remembers no row names a training
        cell as often as the training rows fill the grid. Singling out by those columns then means nothing
        (copies of whole rows still do). Among people, a key this dense is all but impossible by chance:
        ``n`` records drawn from ``N`` combinations share one about ``n² / 2N`` times.

        ``rows`` are those at hand; where they are a sample of a table of ``table_rows`` (the checks of a streamed
        source), the fill is the table's: a sample of a grid is a sparser grid, but still one, and copy
        protection, which counts every row, decides on the whole table.
        """
        columns = self.quasi_identifiers if columns is None else columns
        if len(columns) < 2 or rows == 0 or unique_records < rows:
            return None
        fill = max(rows, table_rows or 0) / math.prod(max(self[name].n_unique, 1) for name in columns)
        return fill if fill >= GRID_FILL else None

    @property
    def output_names(self) -> list[str]:
        """Columns in an output table: identifiers set to ``drop`` are left out."""
        return [c.name for c in self.columns if c.kind.learned or c.handling == "regenerate"]


class ColumnOverride(BaseModel):
    """What a recipe may say about one column under ``source.columns``."""

    model_config = ConfigDict(extra="forbid")

    kind: ColumnKind | None = None
    handling: IdentifierHandling | None = None
    format: str | None = Field(None, description="strftime format of a text date/time column, e.g. '%d/%m/%Y'; "
                                                 "several joined by | read a column that mixes them, and "
                                                 "outputs are written in the first.")
    invalid: Literal["error", "null"] = Field(
        "error", description="Text a date/time format cannot read: an error (default) or read as missing.")
    pii: Literal[PERSONAL_KINDS] | None = Field(  # type: ignore[valid-type]
        None, description="The personal data this text column holds, whatever its values look like: "
                          + ", ".join(PERSONAL_KINDS) + ". As an identifier it is written by Faker; learned (a "
                          "`kind` such as categorical), identifier_leak still looks for its real values.")
    locale: str | None = Field(None, description="The Faker locale of its fake values (en_US, de_DE, fr_FR, …); "
                                                 "default: the table's, else the one its values suggest.")

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        return None if value is None else check_locale(value)


def column_overrides(kinds: dict[str, str], option: str = "--column") -> dict[str, ColumnOverride]:
    """``name=kind`` pairs of a command line as ``source.columns`` overrides; an unknown kind names the known."""
    known = [kind.value for kind in ColumnKind]
    wrong = {name: kind for name, kind in kinds.items() if kind not in known}
    if wrong:
        raise DataError(f"{option} {', '.join(f'{n}={k}' for n, k in wrong.items())}: a kind is one of "
                        f"{', '.join(known)}.")
    return {name: ColumnOverride(kind=ColumnKind(kind)) for name, kind in kinds.items()}


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
    nothing_learned: bool = False,
    locale: str | None = None,
) -> Schema:
    """Infer each column's kind and statistics; raise :class:`DataError` on data that cannot be learned.

    Every column is looked at before anything is raised: the error lists each problem with its
    fix, so a messy table takes one run to put right, not one per column. Text that holds dates
    or times is recognised (:mod:`synthforge.data.temporal`) and described as the parsed column,
    with its text ``format``; :func:`to_internal` parses a table the same way. Columns that look
    like people's names, e-mails, phone numbers, addresses or IBANs by their content
    (:mod:`synthforge.data.personal`; a header only raises a suspicion) are identifiers, written by
    Faker, unless the recipe names their kind.

    :param overrides: per-column kind/handling/format chosen by the user; they win over inference.
    :param max_categories: a text column with more distinct values that is not an
        identifier is an error unless the recipe names its kind.
    :param nothing_learned: allow a table of identifiers only (a lookup table of related tables).
    :param locale: the Faker locale of the table's personal columns (``source.locale``); default: the one most
        of their values suggest.
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
    columns, problems = [], []
    for name in table.columns:
        try:
            columns.append(_infer_column(table.get_column(name), overrides.get(name, ColumnOverride()),
                                         *stats[name], max_categories))
        except DataError as problem:
            problems.append(str(problem))
    if problems:
        if len(problems) == 1:
            raise DataError(problems[0])
        raise DataError(f"{len(problems)} columns cannot be learned as they are; each with its fix:\n"
                        + "\n".join(f"  - {problem}" for problem in problems))
    columns = _one_locale(columns, overrides, locale)
    if not nothing_learned and not any(column.kind.learned for column in columns):
        raise DataError(
            "every column is an identifier, free text or constant, so there is nothing to learn. "
            "Set `kind:` for the columns that carry information under source.columns."
        )
    return Schema(columns=columns)


def _infer_column(series: pl.Series, override: ColumnOverride, null_count: int, n_unique: int,
                  max_categories: int) -> ColumnSpec:
    name = series.name
    handling = override.handling or "regenerate"
    if (n_unique == 0 or (n_unique == 1 and null_count == 0)) and override.kind in (None, ColumnKind.constant):
        return _constant(series, null_count)
    text_format = _text_format(series, override)
    if text_format is not None:
        series = parse_text_column(series, text_format, invalid=override.invalid)
        null_count = series.null_count()
        if null_count == series.len():
            return _constant(series, null_count)
    note = None
    finding = _personal_finding(series, override)  # what personal data the values hold, if any
    kind = override.kind
    if kind is None:
        kind, note = _infer_kind(series, n_unique, null_count, max_categories, finding)
    _reject_unlearnable(series, kind)
    spec = _describe_column(series, kind, null_count, n_unique, handling)
    updates: dict[str, Any] = {"note": note}
    if text_format is not None:
        updates |= {"format": text_format.format, "note": f"dates/times written {text_format.format!r}"}
    if finding is not None and kind != ColumnKind.free_text:
        updates |= {"personal": finding.kind, "locale": override.locale or finding.locale}
        # A city or a postcode names no one: learned as what it is, and looked for by no check.
        updates["pii"] = finding.identifying or finding.kind in ("first_name", "last_name")
        if override.kind is not None or kind != ColumnKind.identifier:
            updates["note"] = note or f"holds {describe(finding.kind)} ({finding.reason})"
    elif name_looks_personal(name) and kind == ColumnKind.identifier:
        updates["pii"] = True
    return spec.model_copy(update=updates)


def _personal_finding(series: pl.Series, override: ColumnOverride) -> Finding | None:
    if override.pii is not None:
        if series.dtype not in (pl.String, pl.Categorical) and not isinstance(series.dtype, pl.Enum):
            raise DataError(f"column {series.name!r} has `pii: {override.pii}` but holds {series.dtype} values, not "
                            f"text; remove `pii` or convert the column to text in the source.")
        found = find_personal(series)  # the locale its values suggest, where they agree with the recipe
        suggested = found.locale if found is not None and found.kind == override.pii else None
        return Finding(override.pii, override.locale or suggested, "the recipe says so")
    if override.kind in (ColumnKind.datetime, ColumnKind.duration, ColumnKind.free_text):
        return None
    return find_personal(series) or find_by_name_and_values(series)


def _one_locale(columns: list[ColumnSpec], overrides: dict[str, ColumnOverride],
                locale: str | None) -> list[ColumnSpec]:
    """One locale for the table's personal columns (one person and one address per row): the recipe's, else the
    one most of them suggest (en_US where none suggests one); a column's own ``locale`` in the recipe wins, and an
    IBAN keeps the country its values show (a bank's, not the person's)."""
    personal = [c for c in columns if c.personal is not None and not (c.name in overrides and overrides[c.name].locale)
                and not (c.personal == "iban" and c.locale)]
    if not personal:
        return columns
    if locale is None:
        counts: dict[str, int] = {}
        for column in personal:
            if column.locale:
                counts[column.locale] = counts.get(column.locale, 0) + 1
        locale = max(counts, key=counts.__getitem__) if counts else DEFAULT_LOCALE
    chosen = {column.name for column in personal}
    return [c.model_copy(update={"locale": locale}) if c.name in chosen else c for c in columns]


def _constant(series: pl.Series, null_count: int) -> ColumnSpec:
    present = series.drop_nulls()
    value = present.item(0) if present.len() else None
    if value is not None and not isinstance(value, bool | int | float | str):
        value = str(value)  # a date or time: its ISO text casts back to the column's type
    what = "null in every row" if value is None else (
        f"{value!r} in every row" + (f" (null in {null_count:,})" if null_count else ""))
    return ColumnSpec(name=series.name, kind=ColumnKind.constant, dtype=str(series.dtype),
                      null_rate=null_count / series.len(), n_unique=present.n_unique(), value=value,
                      note=f"{what}: nothing to learn, written back as it is (drop it with source.drop)")


def _text_format(series: pl.Series, override: ColumnOverride) -> TextFormat | None:
    """How a text column writes dates/times, if it does (or the recipe says it does)."""
    if series.dtype not in (pl.String, pl.Categorical) and not isinstance(series.dtype, pl.Enum):
        if override.format:
            raise DataError(f"column {series.name!r} has `format: {override.format}` but holds {series.dtype} "
                            f"values, not text; remove the format.")
        return None
    wants_time = override.kind in (ColumnKind.datetime, ColumnKind.duration)
    if override.format:
        return text_format_of(override.format)
    if override.kind is not None and not wants_time:
        return None
    found = detect_format(series)
    if found is None and wants_time:
        examples = series.drop_nulls().unique(maintain_order=True).head(3).to_list()
        raise DataError(
            f"column {series.name!r} is set to `kind: datetime`, but none of the date/time formats SynthForge "
            f"knows reads its values ({', '.join(map(repr, examples))}); name it with `format:` (strftime, "
            f"e.g. '%d %b %Y %H.%M') under source.columns.")
    return found


def _column_stats(table: pl.DataFrame) -> dict[str, tuple[int, int]]:
    row = table.select(
        *(pl.col(c).null_count().alias(f"nulls:{c}") for c in table.columns),
        *(pl.col(c).drop_nulls().n_unique().alias(f"unique:{c}") for c in table.columns),
    ).row(0, named=True)
    return {c: (row[f"nulls:{c}"], row[f"unique:{c}"]) for c in table.columns}


def _infer_kind(series: pl.Series, n_unique: int, null_count: int, max_categories: int,
                finding: Finding | None) -> tuple[ColumnKind, str | None]:
    dtype = series.dtype
    non_null = series.len() - null_count
    looks_unique = non_null >= 20 and n_unique >= 0.95 * non_null
    named_like_identifier = bool(_IDENTIFIER_NAME.search(series.name))
    if dtype == pl.Boolean:
        return ColumnKind.boolean, None
    if dtype == pl.Duration:
        return ColumnKind.duration, None
    if dtype.is_temporal():
        return ColumnKind.datetime, None
    if dtype.is_integer():
        if named_like_identifier and n_unique >= 0.5 * max(non_null, 1):
            return ColumnKind.identifier, "its name says it identifies records, and most values are distinct"
        return ColumnKind.integer, None
    if dtype.is_float():
        return ColumnKind.continuous, None
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = series.cast(pl.String).drop_nulls()
        if finding is not None and finding.kind not in ("city", "postcode", "state"):
            return ColumnKind.identifier, (f"its values look like {describe(finding.kind)} ({finding.reason}): "
                                           f"written by Faker unless the recipe sets its kind")
        suspected = name_looks_personal(series.name)
        if looks_unique or (named_like_identifier and n_unique >= 0.5 * max(non_null, 1)):
            kind = _identifier_or_text(text)
            why = "almost every value is distinct" if looks_unique else "its name says it identifies records"
            if finding is not None:  # a city or postcode column of distinct values: written by Faker
                why += f"; its values look like {describe(finding.kind)} ({finding.reason})"
            elif suspected:
                why += "; its name suggests personal data, so identifier_leak looks for its values everywhere"
            return kind, why
        rare = _rare_share(text)
        if non_null >= 20 and rare >= MOSTLY_RARE:
            return _identifier_or_text(text), (
                f"{rare:.0%} of its rows hold a value that fewer than {MIN_CATEGORY_ROWS} rows share: learned as "
                f"categories those would all be pooled as rare, so it is regenerated like an identifier (set "
                f"`kind: categorical` to learn its common values)")
        if suspected or finding is not None:
            # The name (or a city's or postcode's shape) raised a suspicion; repeated values decide: a category.
            what = describe(finding.kind) if finding is not None else "personal data"
            return ColumnKind.categorical, (f"its name suggests {what}, but its {n_unique:,} distinct values repeat "
                                            f"(each in {non_null / max(n_unique, 1):,.0f} rows on average): "
                                            f"learned as a category")
        if n_unique > max_categories:
            raise DataError(
                f"column {series.name!r} has {n_unique:,} distinct values, more than the "
                f"{max_categories:,} a categorical column may have by default. If it identifies records, set "
                f"`kind: identifier` under source.columns; if it is prose, `kind: free_text`; to learn it "
                f"anyway, set `kind: categorical` (its rarest values are then pooled) or raise "
                f"source.max_categories."
            )
        return ColumnKind.categorical, None
    raise DataError(
        f"column {series.name!r} has type {dtype}, which SynthForge cannot learn. Drop it with "
        f"source.drop or convert it to a number, text, boolean or date."
    )


# A category held by fewer rows than this is pooled as rare (the encoder's min_category_count); a text column
# most of whose rows hold such values has little to learn as categories.
MIN_CATEGORY_ROWS = 5
MOSTLY_RARE = 0.5


def _rare_share(text: pl.Series) -> float:
    counts = text.alias("value").value_counts(name="count").get_column("count")
    return float(counts.filter(counts < MIN_CATEGORY_ROWS).sum() / max(text.len(), 1))


def _identifier_or_text(text: pl.Series) -> ColumnKind:
    if text.len() == 0:
        return ColumnKind.identifier
    mean_length = text.str.len_chars().mean() or 0
    words = text.str.count_matches(r"\s+").mean() or 0
    return ColumnKind.free_text if mean_length > 40 or words >= 3 else ColumnKind.identifier


def _reject_unlearnable(series: pl.Series, kind: ColumnKind) -> None:
    name = series.name
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
        if kind in (ColumnKind.datetime, ColumnKind.duration):
            spec["step"] = _temporal_step(values)
    return ColumnSpec(**spec)


# Units a date/time column may be counted in, on the as_number scale of datetimes (microseconds).
_STEPS = (86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000, 1_000, 1)


def _temporal_step(values: pl.Series) -> float:
    """The coarsest unit (day, hour, minute, second, millisecond) that every value is a whole number of.

    Dates count in days already (step 1). Sampled timestamps are rounded to it, so a source kept to
    the second never gets microseconds back.
    """
    if values.dtype in (pl.Int32, pl.Date):
        return 1.0
    sample = values.head(20_000).cast(pl.Int64)
    for step in _STEPS:
        if (sample % step == 0).all():
            return float(step)
    return 1.0


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
    if series.dtype == pl.Time:
        return series.cast(pl.Int64) // 1000
    if series.dtype == pl.Duration:
        return series.dt.cast_time_unit("us").cast(pl.Int64)
    if series.dtype.is_temporal():
        return series.dt.epoch("us")
    return series


def from_number(values: pl.Series, dtype: pl.DataType) -> pl.Series:
    """The inverse of :func:`as_number`: whole numbers on its scale back to ``dtype``."""
    if dtype == pl.Date:
        return values.cast(pl.Int32).cast(pl.Date)
    if dtype == pl.Time:
        return (values.cast(pl.Int64) * 1000).cast(pl.Time)
    if dtype == pl.Duration:
        return values.cast(pl.Int64).cast(pl.Duration("us")).cast(dtype)
    return values.cast(pl.Int64).cast(pl.Datetime("us")).cast(dtype)


def to_internal(table: pl.DataFrame, schema: Schema, *, invalid: dict[str, str] | None = None) -> pl.DataFrame:
    """``table`` with its text dates/times parsed as the schema's ``format`` says (other columns unchanged).

    Columns already of a temporal type, or absent, are left as they are, so it is safe to call twice.
    """
    invalid = invalid or {}
    parsed = [parse_text_column(table.get_column(c.name), text_format_of(c.format, c.dtype),
                                invalid=invalid.get(c.name, "error"))
              for c in schema.columns if c.format and c.name in table.columns
              and table.schema[c.name] in (pl.String, pl.Categorical, pl.Null)]
    return table.with_columns(parsed) if parsed else table


def to_source(table: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """``table`` with its dates/times written back as text in the source's ``format``, where it had one."""
    written = [write_text_column(pl.col(c.name), c.format) for c in schema.columns
               if c.format and c.name in table.columns and table.schema[c.name].is_temporal()]
    return table.with_columns(written) if written else table


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
        expressions.append(expression.cast(column.polars_dtype).alias(column.name))
    return table.select(expressions)


def _polars_dtype(name: str) -> pl.DataType:
    """Turn a dtype's string form back into a polars dtype (the schema is stored as JSON)."""
    simple = {
        "Int8": pl.Int8, "Int16": pl.Int16, "Int32": pl.Int32, "Int64": pl.Int64,
        "UInt8": pl.UInt8, "UInt16": pl.UInt16, "UInt32": pl.UInt32, "UInt64": pl.UInt64,
        "Float32": pl.Float32, "Float64": pl.Float64, "String": pl.String, "Boolean": pl.Boolean,
        "Date": pl.Date, "Categorical": pl.String, "Time": pl.Time,
    }
    if name in simple:
        return simple[name]()
    match = re.fullmatch(r"Datetime\(time_unit='(\w+)', time_zone=(?:'([^']*)'|None)\)", name)
    if match:
        return pl.Datetime(match.group(1), match.group(2))  # type: ignore[arg-type]
    match = re.fullmatch(r"Duration\(time_unit='(\w+)'\)", name)
    if match:
        return pl.Duration(match.group(1))  # type: ignore[arg-type]
    if name.startswith("Enum") or name.startswith("Categorical"):
        return pl.String()
    return pl.String()
