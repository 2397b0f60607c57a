"""Dates, times and timestamps held as text: recognised from the data, parsed, written back the same way.

A CSV has no date type, so a date of birth arrives as ``"1969-04-18"`` or ``"4/18/1969"``. Left as
text it would be learned as thousands of categories; here a text column is tried against the common
formats (:data:`FORMATS`, or the one the recipe names) and, when one reads nearly every value, it is
parsed into a polars ``Date``/``Datetime``/``Time`` and learned as a number. The schema records the
format (``ColumnSpec.format``) so that every output is written back as text in the source's own
format, zero-padding included, and the holdout and any later table are parsed the same way.

A column that a format reads except for a few values is an error that says how many and shows them:
the recipe then names the format, or sets ``invalid: null`` to read those values as missing.

Real exports mix formats (``2024-01-05`` beside ``05/01/2024``, ``…Z`` beside ``…+02:00``): a column
that several formats read together is one format written ``"A|B"``, read by whichever alternative
reads a value and written back in the first (the one most values use). A column whose values all
carry one UTC offset (``+02:00``) keeps it: the offset becomes literal text of its format, so the
times are learned as the local times they are and written back with the same offset. Values with
several offsets (summer and winter time) are read as instants and written in the most common offset,
said after ``@`` (``"%Y-%m-%dT%H:%M:%S%:z@+01:00"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from synthforge.errors import DataError

#: (format, polars type) tried in order; the first that reads the most values wins. Day-first and
#: month-first formats read the same text when every day is ≤ 12: month-first is tried first (the
#: recipe's ``format:`` says otherwise).
FORMATS: list[tuple[str, str]] = [
    ("%Y-%m-%d", "Date"),
    ("%Y-%m-%d %H:%M:%S", "Datetime"),
    ("%Y-%m-%dT%H:%M:%S", "Datetime"),
    ("%Y-%m-%d %H:%M:%S%.f", "Datetime"),
    ("%Y-%m-%dT%H:%M:%S%.f", "Datetime"),
    ("%Y-%m-%dT%H:%M:%S%:z", "Datetime"),
    ("%Y-%m-%dT%H:%M:%S%.f%:z", "Datetime"),
    ("%Y-%m-%d %H:%M:%S%:z", "Datetime"),
    ("%Y-%m-%dT%H:%M:%SZ", "Datetime"),
    ("%Y-%m-%d %H:%M", "Datetime"),
    ("%Y/%m/%d", "Date"),
    ("%Y/%m/%d %H:%M:%S", "Datetime"),
    ("%m/%d/%Y", "Date"),
    ("%d/%m/%Y", "Date"),
    ("%m/%d/%Y %H:%M:%S", "Datetime"),
    ("%d/%m/%Y %H:%M:%S", "Datetime"),
    ("%m/%d/%Y %H:%M", "Datetime"),
    ("%d/%m/%Y %H:%M", "Datetime"),
    ("%m/%d/%Y %I:%M:%S %p", "Datetime"),
    ("%m/%d/%Y %I:%M %p", "Datetime"),
    ("%d.%m.%Y", "Date"),
    ("%d.%m.%Y %H:%M:%S", "Datetime"),
    ("%d.%m.%Y %H:%M", "Datetime"),
    ("%d-%m-%Y", "Date"),
    ("%m-%d-%Y", "Date"),
    ("%d %b %Y", "Date"),
    ("%d-%b-%Y", "Date"),
    ("%b %d, %Y", "Date"),
    ("%b %d %Y", "Date"),
    ("%d %B %Y", "Date"),
    ("%B %d, %Y", "Date"),
    ("%H:%M:%S", "Time"),
    ("%H:%M", "Time"),
]
# A format that reads at least this share of a column's values makes it a date column; the rest are
# then reported (or read as missing with ``invalid: null``), not silently dropped.
MIN_READ_SHARE = 0.9
SAMPLE_VALUES = 2000
# Alternatives of one column's format are joined with this (no strftime format holds it).
ALTERNATIVES = "|"
# A zoned column whose values carry several UTC offsets is written in its most common one: ``…%:z@+02:00``.
WRITTEN_IN = "@"
# At most this many formats make up one mixed column; each must read at least MIN_ALTERNATIVE_SHARE of it.
MAX_ALTERNATIVES = 4
MIN_ALTERNATIVE_SHARE = 0.01
# Variants that write back unpadded fields (``4/18/1969``) when the source does not pad them.
_UNPADDED = {"%m": "%-m", "%d": "%-d", "%H": "%-H", "%I": "%-I"}


@dataclass(frozen=True)
class TextFormat:
    """How one text column holds dates or times: its strftime ``format`` and the polars ``dtype`` parsed to."""

    format: str
    dtype: str

    @property
    def alternatives(self) -> list[str]:
        """The formats this column is read with, the one it is written with first."""
        return self.format.split(WRITTEN_IN)[0].split(ALTERNATIVES)

    @property
    def writing(self) -> str:
        """The strftime format outputs are written in."""
        return self.alternatives[0]

    def polars_dtype(self) -> pl.DataType:
        if self.dtype == "Date":
            return pl.Date()
        if self.dtype == "Time":
            return pl.Time()
        return pl.Datetime("us", "UTC" if any(_zoned(format_) for format_ in self.alternatives) else None)

    def parse(self, series: pl.Series) -> pl.Series:
        """``series`` parsed; a value that does not match is null (callers count them first)."""
        text, dtype = series.cast(pl.String), self.polars_dtype()
        parsed = [_parse_one(text, format_, dtype) for format_ in self.alternatives]
        return parsed[0] if len(parsed) == 1 else pl.select(pl.coalesce(parsed)).to_series().alias(series.name)


def detect_format(series: pl.Series) -> TextFormat | None:
    """The text format of a string column of dates or times, or None if it does not hold them."""
    values = series.cast(pl.String).drop_nulls().unique(maintain_order=True).head(SAMPLE_VALUES)
    values = values.filter(values.str.len_chars() > 0)
    if values.len() == 0 or (values.str.contains(r"^\s*\d|^\s*[A-Za-z]{3,9}\s+\d").mean() or 0) < MIN_READ_SHARE:
        return None
    chosen: list[TextFormat] = []
    unread = values
    while unread.len() and len(chosen) < MAX_ALTERNATIVES:
        best = _best_format(unread, exclude={c.format for c in chosen})
        if best is None or best[0] < max(1, MIN_ALTERNATIVE_SHARE * values.len()):
            break
        chosen.append(best[1])
        unread = unread.filter(best[1].parse(unread).is_null())
        if values.len() - unread.len() >= MIN_READ_SHARE * values.len() and not unread.len():
            break
    read = values.len() - unread.len()
    if not chosen or read < MIN_READ_SHARE * values.len():
        return None
    # each alternative written as the values it reads are, then joined: the first, most used, writes the output
    written = [_writing_like(values.filter(alternative.parse(values).is_not_null()), alternative)
               for alternative in chosen]
    if len(written) > 1 and {w.dtype for w in written} - {"Date", "Datetime"}:
        written = written[:1]  # times of day do not mix with dates: the column is read by its main format only
        if int(written[0].parse(values).is_not_null().sum()) < MIN_READ_SHARE * values.len():
            return None
    dtype = written[0].dtype if len({w.dtype for w in written}) == 1 else "Datetime"
    if dtype == "Datetime":  # written with a time of day (and a zone, where there is one): a date alone loses it
        zoned = any(_zoned(w.format) for w in written)
        written.sort(key=lambda w: (w.dtype != "Datetime", zoned and not _zoned(w.format)))
    return _with_fixed_offset(values, TextFormat(ALTERNATIVES.join(w.format for w in written), dtype))


def _best_format(values: pl.Series, exclude: set[str]) -> tuple[int, TextFormat] | None:
    """The known format reading the most of ``values``, with how many it reads."""
    best: tuple[int, TextFormat] | None = None
    for format_, dtype in FORMATS:
        if format_ in exclude:
            continue
        candidate = TextFormat(format_, dtype)
        read = int(candidate.parse(values).is_not_null().sum())
        if read and (best is None or read > best[0]):
            best = (read, candidate)
            if read == values.len():
                break
    return best


def _with_fixed_offset(values: pl.Series, found: TextFormat) -> TextFormat:
    """``found`` with its ``%:z`` written as the literal offset every value carries, when they all carry one; when
    they carry several (a summer and a winter offset), read as instants and written in the most common offset."""
    if len(found.alternatives) != 1 or "%:z" not in found.format:
        return found
    offsets = values.str.extract(r"([+-]\d{2}:\d{2})\s*$")
    if offsets.null_count():
        return found
    if offsets.n_unique() > 1:
        common = (offsets.alias("offset").to_frame().with_row_index()
                  .group_by("offset").agg(pl.len().alias("n"), pl.col("index").min())
                  .sort(["n", "index"], descending=[True, False]).get_column("offset").item(0))  # ties: the first
        return TextFormat(f"{found.format}{WRITTEN_IN}{common}", found.dtype)
    return TextFormat(found.format.replace("%:z", offsets.item(0)), found.dtype)


def _zoned(format_: str) -> bool:
    return "%z" in format_ or "%:z" in format_ or format_.endswith("Z")


def _parse_one(text: pl.Series, format_: str, dtype: pl.DataType) -> pl.Series:
    """``text`` read with one alternative, in the column's type: a date is midnight, a naive time is UTC where the
    column holds zoned times."""
    own = text_format_of(format_).polars_dtype() if dtype != pl.Time() else dtype
    if isinstance(dtype, pl.Datetime) and isinstance(own, pl.Datetime) and own.time_zone != dtype.time_zone:
        own = dtype if _zoned(format_) else pl.Datetime("us")
    parsed = text.str.strptime(own, _parsing(format_), strict=False)
    if parsed.dtype != dtype:
        if isinstance(dtype, pl.Datetime) and dtype.time_zone and not getattr(parsed.dtype, "time_zone", None):
            parsed = parsed.cast(pl.Datetime("us")).dt.replace_time_zone(dtype.time_zone)
        parsed = parsed.cast(dtype)
    return parsed


def _writing_like(values: pl.Series, found: TextFormat) -> TextFormat:
    """``found`` with unpadded fields where the source writes them unpadded, so output text looks the same."""
    parsed = found.parse(values)
    readable = values.filter(parsed.is_not_null())
    parsed = parsed.drop_nulls()

    def matches(format_: str) -> int:
        return int((parsed.dt.strftime(format_) == readable).sum())

    format_ = found.format
    for padded, unpadded in _UNPADDED.items():
        if padded in format_ and matches(format_.replace(padded, unpadded)) > matches(format_):
            format_ = format_.replace(padded, unpadded)
    return TextFormat(format_, found.dtype)


def parse_text_column(series: pl.Series, text_format: TextFormat, *, invalid: str = "error") -> pl.Series:
    """Parse ``series`` with ``text_format``; values it cannot read are an error, or nulls with ``invalid='null'``."""
    parsed = text_format.parse(series)
    unread = parsed.is_null() & series.is_not_null() & (series.cast(pl.String).str.len_chars() > 0)
    count = int(unread.sum())
    if count and invalid != "null":
        examples = series.filter(unread).unique(maintain_order=True).head(5).to_list()
        first = int(unread.arg_true().item(0)) + 1
        raise DataError(
            f"column {series.name!r} holds dates/times written {text_format.format!r}, but {count:,} of "
            f"{series.len() - series.null_count():,} values do not read that way (the first in row {first:,}): "
            f"{', '.join(map(repr, examples))}. Fix them in the source, set `format:` for the column under "
            f"source.columns if the format is another, or `invalid: null` to read them as missing.")
    return parsed.alias(series.name)


def write_text_column(expression: pl.Expr, format_: str) -> pl.Expr:
    """A parsed date/time column written back as text, in the first of its format's alternatives (and in the offset
    its format names after ``@``, a zoned column's most common one)."""
    format_, _, offset = format_.partition(WRITTEN_IN)
    if offset:
        expression = expression.dt.convert_time_zone(offset)
    return expression.dt.strftime(format_.split(ALTERNATIVES)[0])


def _parsing(format_: str) -> str:
    """The parsing form of a writing format: padding flags mean nothing when reading."""
    for padded, unpadded in _UNPADDED.items():
        format_ = format_.replace(unpadded, padded)
    return format_


def text_format_of(format_: str, dtype: str | None = None) -> TextFormat:
    """The :class:`TextFormat` of a recipe's ``format:`` (or a schema's, with its parsed ``dtype``)."""
    if dtype is not None:
        kind = "Date" if dtype == "Date" else "Time" if dtype == "Time" else "Datetime"
        return TextFormat(format_, kind)
    if ALTERNATIVES in format_ or WRITTEN_IN in format_:
        alternatives = format_.split(WRITTEN_IN)[0].split(ALTERNATIVES)
        kinds = {text_format_of(alternative).dtype for alternative in alternatives}
        return TextFormat(format_, kinds.pop() if len(kinds) == 1 else "Datetime")
    has_date = any(field in format_ for field in ("%Y", "%y", "%d", "%m", "%b", "%B", "%j", "%-d", "%-m"))
    has_time = any(field in format_ for field in ("%H", "%I", "%M", "%S", "%T", "%-H", "%-I"))
    return TextFormat(format_, "Datetime" if has_date and has_time else "Time" if has_time else "Date")
