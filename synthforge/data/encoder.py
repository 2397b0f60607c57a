"""The reversible tabular encoder shared by every generator.

A table becomes a float32 matrix whose columns are grouped into :class:`Span` s: a
numeric span of width 1 (a normal score, a min-max value or a mode-relative value)
or a discrete span (one-hot of width k, or one index column). ``decode(encode(t))``
gives ``t`` back: exactly for integers, dates, booleans and categories, to float
precision for continuous values. Two things are deliberately not reversible: a
category seen in fewer than ``min_category_count`` rows, or beyond the
``max_categories`` most frequent, becomes :data:`RARE` (rare real values are
protected, and a 100k-category column cannot blow up memory).

With ``derive_functions``, a discrete column that is a function of another (Adult's
``education-num`` of ``education``) gets no span at all: decoding derives it from
its source through the mapping seen in training, so a model cannot break the
dependency however it samples.

Every fitted transformer serialises to JSON (no pickle): :meth:`TableEncoder.state`
and :meth:`TableEncoder.from_state`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from scipy.special import ndtr, ndtri

from synthforge.data.schema import ColumnKind, ColumnSpec, Schema, as_number, from_number
from synthforge.errors import ConditionError

if TYPE_CHECKING:
    from synthforge.privacy.marginals import PrivateColumn

RARE = "_RARE_"
NumericMethod = Literal["quantile", "mode_specific", "minmax"]
CategoricalMethod = Literal["onehot", "index"]
_EPS = 1e-7


@dataclass(frozen=True)
class Span:
    """A group of encoded columns that belongs to one source column.

    ``kind`` is ``"numeric"`` (width 1), ``"onehot"`` (width = ``n_categories``) or
    ``"index"`` (width 1, holding the category's index as a float).
    ``role`` says what the span encodes: the column's ``"value"``, its ``"null"``
    indicator, or the ``"mode"`` of a mode-specific numeric column.
    """

    column: str
    role: str
    kind: str
    start: int
    width: int
    n_categories: int = 0

    @property
    def stop(self) -> int:
        return self.start + self.width

    @property
    def discrete(self) -> bool:
        return self.kind != "numeric"


@dataclass
class EncoderConfig:
    """How a generator wants its data encoded; a class attribute of each generator."""

    numeric: NumericMethod = "quantile"
    categorical: CategoricalMethod = "onehot"
    max_categories: int = 1000
    min_category_count: int = 5
    max_quantile_knots: int = 50_000
    max_modes: int = 10
    # Integer columns with at most this many distinct values (education-num's 16 grades, a 1–5 rating) are
    # encoded as categories of their values, so a model learns them as exactly as a categorical column;
    # values rarer than min_category_count go to the nearest common one. 0 keeps every number numeric.
    discrete_integer_max: int = 0
    # Discrete columns that are exact functions of another discrete column are derived, not learned.
    derive_functions: bool = False


class TableEncoder:
    """Encodes the learned columns of a schema into a matrix, and back."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = config or EncoderConfig()
        self.transformers_: list[_ColumnTransformer] = []
        self.spans_: list[Span] = []
        # derived column -> {"source": column, "pairs": [[source value, derived value], ...]}
        self.derived_: dict[str, dict[str, Any]] = {}
        self._derived_dtypes: dict[str, pl.DataType] = {}

    # --- fitting and the two directions ------------------------------------------

    def fit(self, table: pl.DataFrame, schema: Schema, *, seed: int = 0,
            released: dict[str, PrivateColumn] | None = None) -> TableEncoder:
        """Learn each column's transformer from ``table``; with ``released`` (a privacy budget's
        :func:`~synthforge.privacy.marginals.release_marginals`), from those released figures instead, so the
        encoder holds no category, bound or knot the budget did not pay for (and derives no column: the
        mapping would be read from the rows)."""
        rng = np.random.default_rng(seed)
        derive = self.config.derive_functions and released is None
        self.derived_ = _functional_dependencies(table, schema, self.config) if derive else {}
        self.transformers_ = [
            _make_transformer(column, self.config).fit(table.get_column(column.name), rng) if released is None
            else _make_transformer(column, self.config).fit_released(released[column.name], rng)
            for column in schema.learned if column.name not in self.derived_
        ]
        self._derived_dtypes = {name: _output_dtype(schema[name], self.config) for name in self.derived_}
        self._layout()
        return self

    @property
    def width(self) -> int:
        return self.spans_[-1].stop if self.spans_ else 0

    @property
    def columns(self) -> list[str]:
        """The columns a model learns (derived columns are not among them)."""
        return [t.spec.name for t in self.transformers_]

    def encode(self, table: pl.DataFrame) -> np.ndarray:
        blocks = [t.transform(table.get_column(t.spec.name)) for t in self.transformers_]
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((table.height, 0), np.float32)

    def decode(self, matrix: np.ndarray) -> pl.DataFrame:
        matrix = np.asarray(matrix, dtype=np.float64)
        series = []
        offset = 0
        for transformer in self.transformers_:
            width = transformer.width
            series.append(transformer.inverse(matrix[:, offset : offset + width]))
            offset += width
        frame = pl.DataFrame(series)
        return frame.with_columns(self.derive(frame, name) for name in self.derived_) if self.derived_ else frame

    def derive(self, frame: pl.DataFrame, column: str) -> pl.Series:
        """The derived ``column`` of ``frame``, from its source column through the training mapping."""
        dependency = self.derived_[column]
        sources, values = zip(*dependency["pairs"], strict=True)
        return frame.get_column(dependency["source"]).replace_strict(
            list(sources), list(values), default=None, return_dtype=self._derived_dtypes[column]).alias(column)

    # --- helpers that generators use ----------------------------------------------

    def spans_of(self, column: str) -> list[Span]:
        return [span for span in self.spans_ if span.column == column]

    def transformer(self, column: str) -> _ColumnTransformer:
        for transformer in self.transformers_:
            if transformer.spec.name == column:
                return transformer
        raise KeyError(column)

    def encode_value(self, column: str, value: Any) -> dict[Span, np.ndarray]:
        """The encoded values that pin ``column`` to ``value``, span by span (for conditions)."""
        if column in self.derived_:
            source = self.derived_[column]["source"]
            sources = [a for a, b in self.derived_[column]["pairs"] if b == value]
            if len(sources) != 1:
                seen = "it was never seen in training" if not sources else f"{len(sources)} {source!r} values give it"
                raise ConditionError(
                    f"cannot condition {column!r} on {value!r}: the column is derived from {source!r} and {seen}; "
                    f"condition on {source!r} instead.")
            return self.encode_value(source, sources[0])
        transformer = self.transformer(column)
        encoded = transformer.transform(pl.Series(column, [value], dtype=transformer.source_dtype))[0]
        offset = transformer.offset
        return {span: encoded[span.start - offset : span.stop - offset] for span in self.spans_of(column)}

    # --- (de)serialisation: JSON only ---------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "columns": [t.state() for t in self.transformers_],
                "derived": self.derived_}

    @classmethod
    def from_state(cls, state: dict[str, Any], schema: Schema) -> TableEncoder:
        encoder = cls(EncoderConfig(**state["config"]))
        encoder.transformers_ = [
            _make_transformer(schema[column["name"]], encoder.config).load(column) for column in state["columns"]
        ]
        encoder.derived_ = state.get("derived", {})
        encoder._derived_dtypes = {name: _output_dtype(schema[name], encoder.config) for name in encoder.derived_}
        encoder._layout()
        return encoder

    def _layout(self) -> None:
        spans: list[Span] = []
        offset = 0
        for transformer in self.transformers_:
            transformer.offset = offset
            for span in transformer.spans():
                spans.append(Span(span.column, span.role, span.kind, offset + span.start, span.width,
                                  span.n_categories))
            offset += transformer.width
        self.spans_ = spans


def _output_dtype(spec: ColumnSpec, config: EncoderConfig) -> pl.DataType:
    return pl.Boolean if spec.kind == ColumnKind.boolean else _make_transformer(spec, config).source_dtype


def _functional_dependencies(table: pl.DataFrame, schema: Schema, config: EncoderConfig) -> dict[str, dict[str, Any]]:
    """Discrete learned columns that are an exact function of another discrete learned column.

    Candidates are categorical, boolean, and integer columns with at most ``max_categories``
    values; a source must have every value (null included) in at least ``min_category_count``
    rows, so that neither a rare value nor an identifier-like column can become a lookup
    table. Of a one-to-one pair the earlier column stays learned.
    """
    distinct = {c.name: table.get_column(c.name).n_unique() for c in schema.learned
                if c.kind in (ColumnKind.categorical, ColumnKind.boolean, ColumnKind.integer)}
    discrete = [name for name, count in distinct.items() if 2 <= count <= config.max_categories]
    sources = [name for name in discrete
               if table.get_column(name).alias("value").value_counts(name="count").get_column("count").min()
               >= config.min_category_count]
    order = {name: index for index, name in enumerate(discrete)}
    # A source determines a target when the pair has no more distinct values than the source alone; a source
    # with fewer values than the target cannot. Every candidate pair is counted in one parallel polars query.
    pairs = [(source, target) for source in sources for target in discrete
             if source != target and distinct[source] >= distinct[target]]
    counts = table.select(pl.struct(source, target).n_unique().alias(str(index))
                          for index, (source, target) in enumerate(pairs)).row(0) if pairs else ()
    functional = {pair for pair, count in zip(pairs, counts, strict=True) if count == distinct[pair[0]]}

    def determines(source: str, target: str) -> bool:
        return (source, target) in functional

    derived: dict[str, str] = {}
    for target in discrete:
        for source in sources:
            if source in derived or not determines(source, target):
                continue
            if order[source] > order[target] and target in sources and determines(target, source):
                continue  # one-to-one: the earlier column of the pair is the one learned
            derived[target] = source
            break
    for target in list(derived):  # a source that was itself derived later: go back to a learned column
        while derived[target] in derived:
            derived[target] = derived[derived[target]]
    return {target: {"source": source, "pairs": table.select(source, target).unique(maintain_order=True)
                     .sort(source, nulls_last=True).rows()}
            for target, source in derived.items()}


# --- one transformer per source column ---------------------------------------------


class _ColumnTransformer:
    def __init__(self, spec: ColumnSpec, config: EncoderConfig) -> None:
        self.spec = spec
        self.config = config
        self.offset = 0

    @property
    def source_dtype(self) -> pl.DataType:
        return self.spec.polars_dtype

    @property
    def width(self) -> int:
        return sum(span.width for span in self.spans())

    def fit(self, series: pl.Series, rng: np.random.Generator) -> _ColumnTransformer:
        raise NotImplementedError

    def fit_released(self, released: PrivateColumn, rng: np.random.Generator) -> _ColumnTransformer:
        raise NotImplementedError

    def spans(self) -> list[Span]:
        raise NotImplementedError

    def transform(self, series: pl.Series) -> np.ndarray:
        raise NotImplementedError

    def inverse(self, block: np.ndarray) -> pl.Series:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, state: dict[str, Any]) -> _ColumnTransformer:
        raise NotImplementedError


def _make_transformer(spec: ColumnSpec, config: EncoderConfig) -> _ColumnTransformer:
    if spec.kind in (ColumnKind.categorical, ColumnKind.boolean):
        return _CategoricalTransformer(spec, config)
    if spec.kind.numeric:
        return _NumericTransformer(spec, config)
    raise ValueError(f"column {spec.name!r} of kind {spec.kind.value} is not learned")


def _discrete_encode(indices: np.ndarray, n_categories: int, method: str) -> np.ndarray:
    if method == "index":
        return indices.astype(np.float64)[:, None]
    onehot = np.zeros((len(indices), n_categories))
    onehot[np.arange(len(indices)), indices] = 1.0
    return onehot


def _discrete_decode(block: np.ndarray, n_categories: int, method: str) -> np.ndarray:
    if method == "index":
        return np.clip(np.rint(block[:, 0]), 0, n_categories - 1).astype(np.int64)
    return np.argmax(block, axis=1)


class _CategoricalTransformer(_ColumnTransformer):
    """Categories by frequency (most frequent first), with nulls and rare values as their own categories."""

    categories_: list[Any]
    counts_: list[int]

    def fit(self, series: pl.Series, rng: np.random.Generator) -> _CategoricalTransformer:
        counts = series.alias("value").value_counts(sort=True, name="count")
        values, frequencies = counts.get_column("value").to_list(), counts.get_column("count").to_list()
        kept, kept_counts, rare = [], [], 0
        for value, frequency in zip(values, frequencies, strict=True):
            too_rare = value is not None and frequency < self.config.min_category_count
            beyond_cap = value is not None and len(kept) >= self.config.max_categories
            if too_rare or beyond_cap:
                rare += frequency
            else:
                kept.append(value)
                kept_counts.append(frequency)
        if rare:
            kept.append(RARE if self.spec.kind == ColumnKind.categorical else None)
            kept_counts.append(rare)
        self.categories_, self.counts_ = kept, kept_counts
        return self

    def fit_released(self, released: PrivateColumn, rng: np.random.Generator) -> _CategoricalTransformer:
        """The released categories; the rows of every other value (n less their noisy counts) pool as rare."""
        kept = [(v, c) for v, c in zip(released.categories, released.counts, strict=True)
                if v is None or c >= self.config.min_category_count][: self.config.max_categories]
        self.categories_ = [v for v, _ in kept]
        self.counts_ = [max(round(c), 1) for _, c in kept]
        pooled = released.rows - sum(c for _, c in kept)
        if self.spec.kind == ColumnKind.categorical and (pooled >= self.config.min_category_count or not kept):
            self.categories_.append(RARE)
            self.counts_.append(max(round(pooled), 1))
        return self

    @property
    def method(self) -> str:
        return self.config.categorical

    def spans(self) -> list[Span]:
        n = len(self.categories_)
        return [Span(self.spec.name, "value", self.method, 0, n if self.method == "onehot" else 1, n)]

    def indices(self, series: pl.Series) -> np.ndarray:
        lookup = {value: index for index, value in enumerate(self.categories_)}
        fallback = lookup.get(RARE, lookup.get(None, 0))
        return np.fromiter((lookup.get(v, fallback) for v in series.to_list()), dtype=np.int64, count=series.len())

    def transform(self, series: pl.Series) -> np.ndarray:
        return _discrete_encode(self.indices(series), len(self.categories_), self.method)

    def inverse(self, block: np.ndarray) -> pl.Series:
        indices = _discrete_decode(block, len(self.categories_), self.method)
        return self.from_indices(indices)

    def from_indices(self, indices: np.ndarray) -> pl.Series:
        values = np.array(self.categories_, dtype=object)[indices]
        dtype = pl.Boolean if self.spec.kind == ColumnKind.boolean else self.source_dtype
        return pl.Series(self.spec.name, values.tolist(), dtype=dtype)

    def state(self) -> dict[str, Any]:
        return {"name": self.spec.name, "categories": self.categories_, "counts": self.counts_}

    def load(self, state: dict[str, Any]) -> _CategoricalTransformer:
        self.categories_, self.counts_ = state["categories"], state["counts"]
        return self


class _NumericTransformer(_ColumnTransformer):
    """Continuous, integer and datetime columns; nulls get an indicator span of their own."""

    has_nulls_: bool
    fill_: float
    # quantile
    knots_: np.ndarray
    positions_: np.ndarray
    inverse_x_: np.ndarray
    inverse_y_: np.ndarray
    # mode_specific
    means_: np.ndarray
    stds_: np.ndarray
    # minmax
    low_: float
    high_: float
    # discrete: the common distinct values of a low-cardinality integer column, each one category
    values_: np.ndarray | None = None
    # released (privacy): each point mass's interval of ranks, for a model that bins ranks (fit only, not saved)
    point_ranks_: list[tuple[float, float]] = []  # noqa: RUF012
    # released (privacy): the bounds values are clipped to before encoding
    clip_: tuple[float, float] | None = None

    @property
    def method(self) -> str:
        return "discrete" if self.values_ is not None else self.config.numeric

    def _to_float(self, series: pl.Series) -> np.ndarray:
        return as_number(series).cast(pl.Float64).to_numpy()

    def _from_float(self, values: np.ndarray, nulls: np.ndarray) -> pl.Series:
        name = self.spec.name
        temporal = self.spec.kind in (ColumnKind.datetime, ColumnKind.duration)
        if temporal and self.spec.step and self.spec.step > 1:  # a source kept to the second gets no microseconds
            values = np.rint(values / self.spec.step) * self.spec.step
        if self.spec.kind == ColumnKind.integer or temporal:
            values = np.rint(values)
        series = pl.Series(name, values).set(pl.Series(nulls), None) if nulls.any() else pl.Series(name, values)
        if temporal:
            return from_number(series, self.source_dtype)
        if self.spec.kind == ColumnKind.integer:
            return series.cast(self.source_dtype)
        return series

    def fit(self, series: pl.Series, rng: np.random.Generator) -> _NumericTransformer:
        values = self._to_float(series)
        present = values[~np.isnan(values)]
        self.has_nulls_ = bool(series.null_count())
        self.fill_ = float(np.median(present))
        unique, counts = np.unique(present, return_counts=True)
        if self.spec.kind == ColumnKind.integer and 0 < len(unique) <= self.config.discrete_integer_max:
            common = unique[counts >= self.config.min_category_count]
            self.values_ = common if len(common) else unique[[np.argmax(counts)]]
        elif self.method == "quantile":
            self._fit_quantiles(present)
        elif self.method == "mode_specific":
            self.means_, self.stds_ = _fit_modes(present, self.config.max_modes, rng)
        else:
            self.low_, self.high_ = float(present.min()), float(present.max())
        return self

    def fit_released(self, released: PrivateColumn, rng: np.random.Generator) -> _NumericTransformer:
        """The released distribution: its quantile table, bounds, point masses or integer values."""
        self.has_nulls_ = released.null_count > 0
        self.fill_ = released.median()
        self.point_ranks_ = []
        # values beyond the released bounds are encoded at them: the encoding never depends on an unreleased value
        self.clip_ = (released.low, released.high)
        if released.values is not None:
            self.values_ = np.asarray(released.values, dtype=np.float64)
            self.counts_ = [float(c) for c in released.value_counts]  # noisy, for a model's start (not saved)
        elif self.method == "quantile":
            self.knots_, self.positions_, self.inverse_x_, self.inverse_y_, self.point_ranks_ = \
                released.quantile_table()
        elif self.method == "mode_specific":
            # modes of a sample drawn from the released distribution: post-processing, no further cost
            _, _, ranks, values, _ = released.quantile_table()
            sample = np.interp(rng.random(20_000), ranks, values)
            self.means_, self.stds_ = _fit_modes(sample, self.config.max_modes, rng)
            # a released distribution can be nearly one point (an amount whose tail the noise hid): a real value
            # elsewhere in the bounds would then sit millions of spreads from every mode and overflow a model's
            # loss; no spread is below a hundredth of the released range
            self.stds_ = np.maximum(self.stds_, (released.high - released.low) / 100)
        else:
            self.low_, self.high_ = released.low, released.high
        return self

    def _fit_quantiles(self, present: np.ndarray) -> None:
        """Knots at the distinct values, each at the middle of its probability mass.

        The inverse is flat across a value's whole mass when that value is common
        (so a zero-inflated column keeps its exact zeros) and interpolates between
        rare values (so continuous columns come out smooth, not as copies).
        """
        unique, counts = np.unique(present, return_counts=True)
        upper = np.cumsum(counts) / len(present)
        lower = upper - counts / len(present)
        middle = (lower + upper) / 2
        if len(unique) > self.config.max_quantile_knots:
            keep = np.unique(np.linspace(0, len(unique) - 1, self.config.max_quantile_knots).round().astype(int))
            unique, counts, lower, middle, upper = unique[keep], counts[keep], lower[keep], middle[keep], upper[keep]
        self.knots_, self.positions_ = unique, np.clip(middle, _EPS, 1 - _EPS)
        common = counts >= max(2, int(np.ceil(0.001 * len(present))))
        margin = (upper - lower) * 1e-6
        x = np.where(common[:, None], np.stack([lower + margin, upper - margin], 1), middle[:, None])
        y = np.repeat(unique[:, None], 2, axis=1)
        keep_both = np.where(common[:, None], [[True, True]], [[True, False]])
        self.inverse_x_ = np.clip(x[keep_both], _EPS, 1 - _EPS)
        self.inverse_y_ = y[keep_both]

    def spans(self) -> list[Span]:
        if self.values_ is not None:
            n, method = len(self.values_), self.config.categorical
            spans = [Span(self.spec.name, "value", method, 0, n if method == "onehot" else 1, n)]
        else:
            spans = [Span(self.spec.name, "value", "numeric", 0, 1)]
        if self.method == "mode_specific":
            n_modes = len(self.means_)
            spans.append(Span(self.spec.name, "mode", "onehot", 1, n_modes, n_modes))
        if self.has_nulls_:
            method = self.config.categorical
            spans.append(Span(self.spec.name, "null", method, sum(s.width for s in spans),
                              2 if method == "onehot" else 1, 2))
        return spans

    def transform(self, series: pl.Series) -> np.ndarray:
        values = self._to_float(series)
        nulls = np.isnan(values)
        values = np.where(nulls, self.fill_, values)
        if self.clip_ is not None:
            values = np.clip(values, *self.clip_)
        if self.values_ is not None:
            blocks = [_discrete_encode(self._nearest_value(values), len(self.values_), self.config.categorical)]
        elif self.method == "quantile":
            blocks = [ndtri(np.interp(values, self.knots_, self.positions_))[:, None]]
        elif self.method == "mode_specific":
            distance = np.abs(values[:, None] - self.means_[None, :]) / self.stds_[None, :]
            modes = np.argmin(distance, axis=1)
            alpha = (values - self.means_[modes]) / (4 * self.stds_[modes])
            blocks = [alpha[:, None], _discrete_encode(modes, len(self.means_), "onehot")]
        else:
            span = (self.high_ - self.low_) or 1.0
            blocks = [(2 * (values - self.low_) / span - 1)[:, None]]
        if self.has_nulls_:
            blocks.append(_discrete_encode(nulls.astype(np.int64), 2, self.config.categorical))
        return np.concatenate(blocks, axis=1)

    def _nearest_value(self, values: np.ndarray) -> np.ndarray:
        assert self.values_ is not None
        if len(self.values_) == 1:
            return np.zeros(len(values), dtype=np.int64)
        right = np.clip(np.searchsorted(self.values_, values), 1, len(self.values_) - 1)
        left = right - 1
        closer_left = np.abs(values - self.values_[left]) <= np.abs(self.values_[right] - values)
        return np.where(closer_left, left, right).astype(np.int64)

    def inverse(self, block: np.ndarray) -> pl.Series:
        if self.values_ is not None:
            n = len(self.values_)
            used = n if self.config.categorical == "onehot" else 1
            values = self.values_[_discrete_decode(block[:, :used], n, self.config.categorical)]
        elif self.method == "quantile":
            values = np.interp(ndtr(block[:, 0]), self.inverse_x_, self.inverse_y_)
            used = 1
        elif self.method == "mode_specific":
            n_modes = len(self.means_)
            modes = np.argmax(block[:, 1 : 1 + n_modes], axis=1)
            values = block[:, 0] * 4 * self.stds_[modes] + self.means_[modes]
            used = 1 + n_modes
        else:
            values = (np.clip(block[:, 0], -1, 1) + 1) / 2 * ((self.high_ - self.low_) or 1.0) + self.low_
            used = 1
        nulls = np.zeros(len(block), dtype=bool)
        if self.has_nulls_:
            nulls = _discrete_decode(block[:, used:], 2, self.config.categorical) == 1
        if self.spec.minimum is not None:
            values = np.clip(values, self.spec.minimum, self.spec.maximum)
        return self._from_float(values, nulls)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.spec.name, "has_nulls": self.has_nulls_, "fill": self.fill_}
        if self.clip_ is not None:
            state["clip"] = list(self.clip_)
        if self.values_ is not None:
            state["values"] = self.values_.tolist()
        elif self.method == "quantile":
            state |= {"knots": self.knots_.tolist(), "positions": self.positions_.tolist(),
                      "inverse_x": self.inverse_x_.tolist(), "inverse_y": self.inverse_y_.tolist()}
        elif self.method == "mode_specific":
            state |= {"means": self.means_.tolist(), "stds": self.stds_.tolist()}
        else:
            state |= {"low": self.low_, "high": self.high_}
        return state

    def load(self, state: dict[str, Any]) -> _NumericTransformer:
        self.has_nulls_, self.fill_ = state["has_nulls"], state["fill"]
        self.clip_ = tuple(state["clip"]) if "clip" in state else None  # type: ignore[assignment]
        if "values" in state:
            self.values_ = np.asarray(state["values"], dtype=np.float64)
        elif self.method == "quantile":
            self.knots_, self.positions_ = np.asarray(state["knots"]), np.asarray(state["positions"])
            self.inverse_x_, self.inverse_y_ = np.asarray(state["inverse_x"]), np.asarray(state["inverse_y"])
        elif self.method == "mode_specific":
            self.means_, self.stds_ = np.asarray(state["means"]), np.asarray(state["stds"])
        else:
            self.low_, self.high_ = state["low"], state["high"]
        return self


def _fit_modes(values: np.ndarray, max_modes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CTGAN's mode-specific normalisation: a variational Gaussian mixture, keeping modes that matter."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    sample = values if len(values) <= 20_000 else rng.choice(values, 20_000, replace=False)
    unique = np.unique(sample)
    if len(unique) <= max_modes:
        # A few distinct values (e.g. a zero-inflated column): each is its own mode.
        spread = max(np.std(values) * 1e-3, 1e-6)
        return unique.astype(np.float64), np.full(len(unique), spread)
    mixture = BayesianGaussianMixture(
        n_components=max_modes,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001,
        max_iter=100,
        random_state=int(rng.integers(2**31)),
    )
    with warnings.catch_warnings():
        # An unconverged mixture still places its modes well enough to normalise by.
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(sample[:, None])
    keep = mixture.weights_ > 0.005
    means = mixture.means_[keep, 0]
    stds = np.sqrt(mixture.covariances_[keep].reshape(-1))
    return means.astype(np.float64), np.maximum(stds, 1e-6)
