"""What the encoder learns about each column, released with differential privacy (numpy only).

Without privacy the encoder reads a column's exact values: every category, the
minimum and maximum, a knot at each distinct number. Each of those is a leak — a
category held by one person names that person. Under a privacy budget the encoder
reads instead what this module releases, every release a Gaussian mechanism with
sensitivity 1 (one row adds one to one bin of each histogram) charged to the run's
:class:`~synthforge.privacy.accountant.Accountant`:

- **categories** (and the shapes of identifiers): noisy counts of the values seen,
  kept only above ``1 + σ·Φ⁻¹(1 − δ_v)``, so a value in one row appears with
  probability at most δ_v (the thresholding charged to δ); the rest pool into ``_RARE_``;
- **numbers**: bounds from a noisy histogram over fixed signed powers of two (a
  domain known before the data), then the distribution inside them from two noisy
  histograms (the second zoomed to where the first put 99% of the mass), and point
  masses — values many rows share exactly, such as the zero of an amount — from
  thresholded noisy counts; an integer column whose bounds span at most
  ``discrete_integer_max`` values gets one noisy count per value instead;
- **nulls**: a bin of each histogram.

The number of rows and the schema (column names and kinds) are public, as in
every DP synthesiser; declare the kinds in the recipe to make that explicit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from synthforge.data.identifiers import masked_shapes
from synthforge.data.schema import ColumnKind, ColumnSpec, Schema, as_number
from synthforge.errors import DataError
from synthforge.privacy.accountant import Accountant, gaussian_rdp

STAGE = "preprocessing"
CDF_BINS = 64
#: How much of the stage's noise each release gets, relative to a vocabulary (weight 1): bounds need little.
WEIGHTS = {"vocabulary": 1.0, "bounds": 1.0, "coarse": 0.5, "fine": 1.0, "points": 1.0, "values": 1.0}
_EXPONENTS = np.arange(-20, 64)  # |v| in [2^e, 2^(e+1)); below 2^-20 counts as zero
_FLOOR = 1e-3  # the least mass a bin keeps (in rows), so the released distribution is strictly increasing


@dataclass
class PrivateColumn:
    """What was released about one column."""

    name: str
    rows: int
    null_count: float = 0.0
    #: categorical: the selected values, most frequent first, and their noisy counts
    categories: list[Any] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    #: numeric: bin edges and noisy masses between them, and point masses (value, noisy count)
    edges: np.ndarray | None = None
    masses: np.ndarray | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    #: an integer column learned as categories of its values: the values selected, and their counts
    values: np.ndarray | None = None
    value_counts: np.ndarray | None = None

    @property
    def present(self) -> float:
        return max(self.rows - self.null_count, 1.0)

    @property
    def null_rate(self) -> float:
        return float(np.clip(self.null_count / max(self.rows, 1), 0.0, 1.0))

    @property
    def low(self) -> float:
        assert self.edges is not None
        return float(self.edges[0])

    @property
    def high(self) -> float:
        assert self.edges is not None
        return float(self.edges[-1])

    def quantile_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[float, float]]]:
        """The released distribution as the quantile encoder holds it: forward knots (value → rank), inverse
        knots (rank → value), and each point mass's rank interval. A point mass is sampled exactly: the
        inverse is flat across its interval."""
        assert self.edges is not None and self.masses is not None
        segments: list[tuple[float, float, float]] = []  # (from value, to value, mass); from == to: a point
        points = sorted(self.points)
        masses = self.masses.astype(np.float64).copy()
        inside: dict[int, list[tuple[float, float]]] = {}
        for value, count in points:
            index = int(np.clip(np.searchsorted(self.edges, value, side="right") - 1, 0, len(masses) - 1))
            inside.setdefault(index, []).append((value, count))
            masses[index] = max(masses[index] - count, _FLOOR)
        for index, (a, b) in enumerate(zip(self.edges[:-1], self.edges[1:], strict=True)):
            cuts = [a, *(value for value, _ in inside.get(index, [])), b]
            width = max(b - a, 1e-300)
            for left, right in itertools.pairwise(cuts):
                if right > left:
                    segments.append((left, right, masses[index] * (right - left) / width))
            for value, count in inside.get(index, []):
                segments.append((value, value, count))
        segments.sort(key=lambda s: (s[0], s[1] != s[0]))
        total = sum(mass for _, _, mass in segments)
        forward_x, forward_p, inverse_p, inverse_x, point_ranks = [], [], [], [], []
        position = 0.0
        for start, stop, mass in segments:
            share = mass / total
            if start == stop:
                forward_x.append(start)
                forward_p.append(position + share / 2)
                margin = share * 1e-6
                inverse_p += [position + margin, position + share - margin]
                inverse_x += [start, start]
                point_ranks.append((position, position + share))
            else:
                if not forward_x or forward_x[-1] < start:
                    forward_x.append(start)
                    forward_p.append(position)
                forward_x.append(stop)
                forward_p.append(position + share)
                inverse_p += [position, position + share]
                inverse_x += [start, stop]
            position += share
        eps = 1e-7
        order = np.argsort(np.asarray(inverse_p), kind="stable")
        inverse_p_array = np.clip(np.asarray(inverse_p)[order], eps, 1 - eps)
        inverse_x_array = np.asarray(inverse_x)[order]
        keep = np.concatenate([[True], np.diff(inverse_p_array) > 0])
        forward_x_array, first = np.unique(np.asarray(forward_x), return_index=True)
        forward_p_array = np.clip(np.asarray(forward_p)[first], eps, 1 - eps)
        return forward_x_array, forward_p_array, inverse_p_array[keep], inverse_x_array[keep], point_ranks

    def median(self) -> float:
        _, _, ranks, values, _ = self.quantile_table()
        return float(np.interp(0.5, ranks, values))


def noisy(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(counts, dtype=np.float64) + rng.normal(0.0, sigma, size=np.shape(counts))


def selection_threshold(sigma: float, delta: float) -> float:
    """The noisy count above which a value is released: one held by a single row passes with probability δ."""
    return 1.0 + sigma * float(ndtri(1.0 - delta))


class _Releases:
    """The stage's releases with one base noise σ (each release's own σ is σ / √weight), charged as they go."""

    def __init__(self, accountant: Accountant, weights: float, selections: int, rng: np.random.Generator) -> None:
        self.accountant, self.rng = accountant, rng
        self.sigma = accountant.gaussian_noise_for(weights, STAGE)
        self.selection_delta = accountant.selection_delta(selections)

    def histogram(self, what: str, column: str, counts: np.ndarray, *,
                  select: bool = False) -> tuple[np.ndarray, float]:
        sigma = self.sigma / np.sqrt(WEIGHTS[what])
        delta = self.selection_delta if select else 0.0
        self.accountant.spend(f"{what} of {column}", STAGE, gaussian_rdp(sigma), delta=delta, noise=round(sigma, 3),
                              bins=int(np.size(counts)) if not select else "as seen")
        return noisy(counts, sigma, self.rng), sigma

    def select(self, what: str, column: str, values: list[Any], counts: np.ndarray, at_least: float,
               known: list[Any] | None = None) -> tuple[list[Any], list[float]]:
        """The values whose noisy counts pass the selection threshold (and ``at_least``), most frequent first;
        ``known`` values (in the domain whatever the data) need only pass ``at_least``."""
        released, sigma = self.histogram(what, column, counts, select=True)
        threshold = max(selection_threshold(sigma, self.selection_delta), at_least)
        known = known or []
        kept = [(value, count) for value, count in zip(values, released, strict=True)
                if count >= (max(at_least, 4 * sigma) if value in known else threshold)]
        kept.sort(key=lambda pair: -pair[1])
        return [value for value, _ in kept], [float(count) for _, count in kept]


def release_marginals(frame: pl.DataFrame, schema: Schema, accountant: Accountant, rng: np.random.Generator, *,
                      identifiers: list[ColumnSpec] | None = None, min_category_count: int = 5,
                      discrete_integer_max: int = 0, max_categories: int = 1000) -> dict[str, PrivateColumn]:
    """Every learned column's released summary (and, for the ``identifiers`` regenerated, what regeneration
    needs: the shapes of text identifiers, the bounds of integer ones)."""
    identifiers = identifiers or []
    learned = [c for c in schema.learned if c.name in frame.columns]
    numeric = [c for c in learned if c.kind.numeric]
    discrete = [c for c in learned if not c.kind.numeric]
    integer_ids = [c for c in identifiers if frame.schema[c.name].is_integer()]
    text_ids = [c for c in identifiers if c not in integer_ids]
    worst = WEIGHTS["coarse"] + WEIGHTS["fine"] + WEIGHTS["points"]
    weights = (len(discrete) + len(text_ids)) * WEIGHTS["vocabulary"] + (len(numeric) + len(integer_ids)) * (
        WEIGHTS["bounds"] + worst)
    selections = len(discrete) + len(text_ids) + len(numeric)
    if not weights:
        return {}
    releases = _Releases(accountant, weights, selections, rng)
    out: dict[str, PrivateColumn] = {}
    for column in discrete:
        out[column.name] = _release_categories(frame.get_column(column.name), column, releases,
                                               min_category_count, max_categories)
    for column in text_ids:
        out[column.name] = _release_categories(masked_shapes(frame.get_column(column.name)), column, releases, 1,
                                               max_categories)
    bounds = {c.name: _release_bounds(as_number(frame.get_column(c.name)), c.name, releases)
              for c in numeric + integer_ids}
    # The bounds are out; what is left of the stage's share now goes to the releases each column needs.
    needed = sum(WEIGHTS["values"] if _few_integers(c, bounds[c.name], discrete_integer_max) else worst
                 for c in numeric)
    if needed:
        releases.sigma = accountant.gaussian_noise_for(needed, STAGE)
    for column in numeric:
        values = as_number(frame.get_column(column.name)).cast(pl.Float64)
        if _few_integers(column, bounds[column.name], discrete_integer_max):
            out[column.name] = _release_integers(values, column, bounds[column.name], releases, min_category_count)
        else:
            out[column.name] = _release_distribution(values, column, bounds[column.name], releases)
    for column in integer_ids:
        low, high, nulls = bounds[column.name]
        out[column.name] = PrivateColumn(column.name, frame.height, nulls, edges=np.array([low, high]),
                                         masses=np.array([float(frame.height)]))
    return out


def _nulls(count: float, sigma: float) -> float:
    """A released null count, 0 unless it clears 4σ (noise alone would give most columns some nulls)."""
    return float(count) if count >= 4 * sigma else 0.0


def _masses(released: np.ndarray, sigma: float) -> np.ndarray:
    """Noisy bin counts as masses. Noise alone would put mass in every empty bin, and zeroing each bin below a
    threshold would drop real bins as thin as the noise; so the support is where a 5-bin running sum clears
    3σ√5 (noise averages out over the window), the noisy counts (at least 0) inside it, a trace outside, so
    the distribution stays strictly increasing."""
    window = min(5, len(released))
    smooth = np.convolve(released, np.ones(window), mode="same")
    inside = smooth > 3 * sigma * np.sqrt(window)
    masses = np.full(len(released), _FLOOR)
    if inside.any():
        first, last = int(np.argmax(inside)), len(inside) - 1 - int(np.argmax(inside[::-1]))
        masses[first : last + 1] = np.maximum(released[first : last + 1], _FLOOR)
    else:
        masses = np.maximum(released, _FLOOR)
    return masses


def _few_integers(column: ColumnSpec, bounds: tuple[float, float, float], most: int) -> bool:
    low, high, _ = bounds
    return column.kind == ColumnKind.integer and 0 < high - low + 1 <= most


def _release_categories(series: pl.Series, column: ColumnSpec, releases: _Releases, at_least: int,
                        most: int) -> PrivateColumn:
    counts = series.alias("value").value_counts(name="count")
    values = counts.get_column("value").to_list()
    frequencies = counts.get_column("count").to_numpy().astype(np.float64)
    if column.kind == ColumnKind.boolean:  # the domain is known before the data: nothing to select
        domain = [True, False, None]
        known = dict(zip(values, frequencies, strict=True))
        released, _ = releases.histogram("vocabulary", column.name, np.array([known.get(v, 0.0) for v in domain]))
        sigma = releases.sigma / np.sqrt(WEIGHTS["vocabulary"])
        kept = [(v, c) for v, c in zip(domain, released, strict=True) if c >= max(at_least, 4 * sigma)]
        kept.sort(key=lambda pair: -pair[1])
        result = PrivateColumn(column.name, series.len(), categories=[v for v, _ in kept],
                               counts=[float(c) for _, c in kept])
    else:
        # nulls are a value known before the data: released, never selected; the values seen are selected
        null_count = float(series.null_count())
        # in a fixed order, so that seeded noise lands on the same values run after run
        seen = sorted(((v, c) for v, c in zip(values, frequencies, strict=True) if v is not None),
                      key=lambda pair: str(pair[0]))
        selected, noisy_counts = releases.select("vocabulary", column.name, [None] + [v for v, _ in seen],
                                                 np.array([null_count] + [c for _, c in seen]), at_least,
                                                 known=[None])
        result = PrivateColumn(column.name, series.len(), categories=selected[:most], counts=noisy_counts[:most])
    result.null_count = next((c for v, c in zip(result.categories, result.counts, strict=True) if v is None), 0.0)
    return result


def _release_bounds(values: pl.Series, name: str, releases: _Releases) -> tuple[float, float, float]:
    """(low, high, noisy null count): the outermost signed power-of-two buckets whose noisy count clears 3σ."""
    present = values.drop_nulls().cast(pl.Float64).to_numpy()
    magnitude = np.abs(present)
    exponent = np.where(magnitude < 2.0 ** _EXPONENTS[0], _EXPONENTS[0] - 1,
                        np.floor(np.log2(np.maximum(magnitude, 1e-300))))
    exponent = np.clip(exponent, _EXPONENTS[0] - 1, _EXPONENTS[-1]).astype(np.int64)
    # buckets: negative powers (largest magnitude first), zero, positive powers, then null
    n = len(_EXPONENTS)
    index = np.where(magnitude < 2.0 ** _EXPONENTS[0], n,
                     np.where(present < 0, n - 1 - (exponent - _EXPONENTS[0]), n + 1 + (exponent - _EXPONENTS[0])))
    counts = np.bincount(index.astype(np.int64), minlength=2 * n + 1).astype(np.float64)
    counts = np.append(counts, float(values.null_count()))
    released, sigma = releases.histogram("bounds", name, counts)
    buckets = released[:-1]
    edges = np.concatenate([-(2.0 ** (_EXPONENTS[::-1] + 1)), [-(2.0 ** _EXPONENTS[0]), 2.0 ** _EXPONENTS[0]],
                            2.0 ** (_EXPONENTS + 1)])
    # the outermost buckets whose noisy count clears 4.5σ: with 168 buckets of noise alone, one passes in 1,700
    # runs (at 3σ it was one in 5, and a bound a million times too wide)
    occupied = np.flatnonzero(buckets > 4.5 * sigma)
    width = 1
    while not len(occupied) and width < 16:
        # no single bucket stands out of the noise (a small table, a spread column): sums of `width` neighbours
        width *= 2
        sums = np.convolve(buckets, np.ones(width), mode="same")
        occupied = np.flatnonzero(sums > 4.5 * sigma * np.sqrt(width))
        if len(occupied):
            occupied = np.clip(np.array([occupied[0] - width // 2, occupied[-1] + width // 2]), 0, len(buckets) - 1)
    if not len(occupied):
        raise DataError(f"column {name!r}: at this privacy budget no range of its values stands out of the noise "
                        f"({len(values):,} rows); raise privacy.epsilon or privacy.shares.preprocessing, or drop it.")
    first, last = int(occupied[0]), int(occupied[-1])
    # a thinner tail next to the edge still counts (2.5σ): noise alone passes there once in 160, beside the
    # edge only, where a wider bound costs little
    while first > 0 and buckets[first - 1] > 2.5 * sigma:
        first -= 1
    while last < len(buckets) - 1 and buckets[last + 1] > 2.5 * sigma:
        last += 1
    return float(edges[first]), float(edges[last + 1]), _nulls(released[-1], sigma)

def _release_integers(values: pl.Series, column: ColumnSpec, bounds: tuple[float, float, float],
                      releases: _Releases, at_least: int) -> PrivateColumn:
    """One noisy count per integer between the bounds (and nulls): the domain is known, nothing to select."""
    low, high, _ = bounds
    domain = np.arange(np.ceil(low), np.floor(high) + 1)
    present = np.clip(values.drop_nulls().to_numpy(), domain[0], domain[-1])
    counts = np.bincount((present - domain[0]).astype(np.int64), minlength=len(domain)).astype(np.float64)
    released, sigma = releases.histogram("values", column.name, np.append(counts, float(values.null_count())))
    null_count, released = _nulls(released[-1], sigma), released[:-1]
    keep = released >= max(at_least, 4 * sigma)
    masses = _masses(released, sigma)
    result = PrivateColumn(column.name, values.len(), null_count, edges=np.append(domain - 0.5, domain[-1] + 0.5),
                           masses=masses)
    if keep.any() and released[keep].sum() >= 0.9 * np.maximum(released, 0).sum():
        result.values, result.value_counts = domain[keep], released[keep]
    # else too spread for categories: a distribution over bins one integer wide, each value exact once rounded
    return result


def _release_distribution(values: pl.Series, column: ColumnSpec, bounds: tuple[float, float, float],
                          releases: _Releases) -> PrivateColumn:
    low, high, _ = bounds
    present = np.clip(values.drop_nulls().to_numpy(), low, high)
    nulls = float(values.null_count())
    coarse_edges = np.linspace(low, high, CDF_BINS + 1)
    coarse, sigma = releases.histogram("coarse", column.name,
                                       np.append(np.histogram(present, coarse_edges)[0], nulls))
    null_count, coarse = _nulls(coarse[-1], sigma), _masses(coarse[:-1], sigma)
    # zoom to where the first histogram holds 99% of the mass: a column with a long tail gets its detail
    cumulative = np.concatenate([[0.0], np.cumsum(coarse)]) / coarse.sum()
    first = int(np.clip(np.searchsorted(cumulative, 0.005, side="right") - 1, 0, CDF_BINS - 1))
    last = int(np.clip(np.searchsorted(cumulative, 0.995, side="left"), first + 1, CDF_BINS))
    fine_edges = np.linspace(coarse_edges[first], coarse_edges[last], CDF_BINS + 1)
    fine, fine_sigma = releases.histogram("fine", column.name, np.histogram(present, fine_edges)[0])
    edges = np.concatenate([coarse_edges[:first], fine_edges, coarse_edges[last + 1:]])
    masses = np.concatenate([coarse[:first], _masses(fine, fine_sigma), coarse[last:]])
    result = PrivateColumn(column.name, values.len(), null_count, edges=edges, masses=masses)
    # values many rows hold exactly (an amount's zero): point masses, selected like categories
    inside = present[(present > low) & (present < high)]
    unique, counts = np.unique(inside, return_counts=True)
    common = max(0.005 * len(present), 1.0)
    selected, noisy_counts = releases.select("points", column.name, unique.tolist(), counts.astype(np.float64), common)
    result.points = [(float(v), float(c)) for v, c in zip(selected, noisy_counts, strict=True)]
    return result


def private_schema(schema: Schema, released: dict[str, PrivateColumn]) -> Schema:
    """The schema with what it held about the real data (bounds, null rates, distinct counts) replaced by the
    released figures, so that a saved model holds nothing the budget did not pay for."""
    columns = []
    for column in schema.columns:
        summary = released.get(column.name)
        changes: dict[str, Any] = {"n_unique": 0}
        if summary is not None:
            changes["null_rate"] = summary.null_rate
            if summary.categories:
                changes["n_unique"] = len([c for c in summary.categories if c is not None])
            elif summary.values is not None:
                changes["n_unique"] = len(summary.values)
            if summary.edges is not None and column.kind.numeric:
                changes["minimum"], changes["maximum"] = summary.low, summary.high
        elif column.kind.numeric:
            changes["minimum"] = changes["maximum"] = None
        columns.append(column.model_copy(update=changes))
    return schema.model_copy(update={"columns": columns})


__all__ = ["CDF_BINS", "PrivateColumn", "private_schema", "release_marginals", "selection_threshold"]
