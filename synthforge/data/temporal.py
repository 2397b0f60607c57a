"""Dates, times and timestamps held as text: recognised from the data, parsed, written back the same way.

A CSV has no date type, so a date of birth arrives as ``"1969-04-18"`` or ``"4/18/1969"``. Left as
text it would be learned as thousands of categories; here a text column is tried against the common
formats (:data:`FORMATS`, or the one the recipe names) and, when one reads nearly every value, it is
parsed into a polars ``Date``/``Datetime``/``Time`` and learned as a number. The schema records the
format (``ColumnSpec.format``) so that every output is written back as text in the source's own
format, zero-padding included, and the holdout and any later table are parsed the same way.

A column that a format reads except for a few values is an error that says how many and shows them:
the recipe then names the format, or sets ``invalid: null`` to read those values as missing.
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
# Variants that write back unpadded fields (``4/18/1969``) when the source does not pad them.
_UNPADDED = {"%m": "%-m", "%d": "%-d", "%H": "%-H", "%I": "%-I"}


@dataclass(frozen=True)
class TextFormat:
    """How one text column holds dates or times: its strftime ``format`` and the polars ``dtype`` parsed to."""

    format: str
    dtype: str

    def polars_dtype(self) -> pl.DataType:
        if self.dtype == "Date":
            return pl.Date()
        if self.dtype == "Time":
            return pl.Time()
        return pl.Datetime("us", "UTC" if "%z" in self.format or "%:z" in self.format or
                           self.format.endswith("Z") else None)

    def parse(self, series: pl.Series) -> pl.Series:
        """``series`` parsed; a value that does not match is null (callers count them first)."""
        return series.cast(pl.String).str.strptime(self.polars_dtype(), _parsing(self.format), strict=False)


def detect_format(series: pl.Series) -> TextFormat | None:
    """The text format of a string column of dates or times, or None if it does not hold them."""
    values = series.cast(pl.String).drop_nulls().unique().head(SAMPLE_VALUES)
    values = values.filter(values.str.len_chars() > 0)
    if values.len() == 0 or (values.str.contains(r"^\s*\d|^\s*[A-Za-z]{3,9}\s+\d").mean() or 0) < MIN_READ_SHARE:
        return None
    best: tuple[int, TextFormat] | None = None
    for format_, dtype in FORMATS:
        candidate = TextFormat(format_, dtype)
        read = int(candidate.parse(values).is_not_null().sum())
        if read and (best is None or read > best[0]):
            best = (read, candidate)
            if read == values.len():
                break
    if best is None or best[0] < MIN_READ_SHARE * values.len():
        return None
    return _writing_like(values, best[1])


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
    has_date = any(field in format_ for field in ("%Y", "%y", "%d", "%m", "%b", "%B", "%j", "%-d", "%-m"))
    has_time = any(field in format_ for field in ("%H", "%I", "%M", "%S", "%T", "%-H", "%-I"))
    return TextFormat(format_, "Datetime" if has_date and has_time else "Time" if has_time else "Date")
