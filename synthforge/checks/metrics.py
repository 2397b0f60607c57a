"""Vectorised metrics behind the checks (and the benchmarks): numpy, polars, scikit-learn.

Definitions follow SDMetrics where one exists, so that our scores can be compared
with published ones: column pair trends are SDMetrics' CorrelationSimilarity
(Pearson) for two numeric columns and ContingencySimilarity for any pair with a
category (numeric columns cut into 10 equal-width bins of their own range).

Distances are computed on rows encoded for distance: numbers min-max scaled by
the training range, categories one-hot scaled so that a mismatch costs 1, a null
its own category. Nearest neighbours are exact (blocked matrix products), on
seeded subsamples capped at ``MAX_DISTANCE_ROWS`` rows per table: a 1M-row table
costs what a 20k-row one does, and the cap is stated in each check's details.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

from synthforge.data.schema import ColumnKind, Schema, as_number
from synthforge.seeds import RandomStreams

MAX_DISTANCE_ROWS = 10_000
_BLOCK = 2048


# --- column pair trends -------------------------------------------------------------------


def _binned(series: pl.Series, bins: int = 10) -> np.ndarray:
    """SDMetrics' per-table discretisation: 10 equal-width bins of the table's own range; null its own bin."""
    values = as_number(series).cast(pl.Float64).to_numpy()
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return np.full(len(values), -1)
    edges = np.histogram_bin_edges(present, bins=bins)
    return np.digitize(values, edges)


def _pearson(frame: pl.DataFrame, a: str, b: str) -> float | None:
    pair = frame.select(as_number(frame[a]).cast(pl.Float64).alias("a"),
                        as_number(frame[b]).cast(pl.Float64).alias("b")).drop_nulls()
    if pair.height < 2 or not pair["a"].std() or not pair["b"].std():
        return None
    return float(np.corrcoef(pair["a"].to_numpy(), pair["b"].to_numpy())[0, 1])


def _correlations(frame: pl.DataFrame, names: list[str]) -> np.ndarray:
    """Pearson correlations of null-free numeric columns; NaN where a column is constant (no trend)."""
    if len(names) < 2 or frame.height < 2:
        return np.full((len(names), len(names)), np.nan)
    values = np.column_stack([as_number(frame[name]).cast(pl.Float64).to_numpy() for name in names])
    values = values - values.mean(axis=0)
    norms = np.sqrt((values**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = (values.T @ values) / np.outer(norms, norms)
    matrix[:, norms == 0] = np.nan
    matrix[norms == 0, :] = np.nan
    return np.clip(matrix, -1.0, 1.0)


def contingency_similarity(real_a: np.ndarray, real_b: np.ndarray, syn_a: np.ndarray, syn_b: np.ndarray) -> float:
    real = pl.DataFrame({"a": real_a, "b": real_b}).group_by("a", "b").len()
    synthetic = pl.DataFrame({"a": syn_a, "b": syn_b}).group_by("a", "b").len()
    joined = real.join(synthetic, on=["a", "b"], how="full", coalesce=True, nulls_equal=True).fill_null(0)
    p = joined["len"].to_numpy() / len(real_a)
    q = joined["len_right"].to_numpy() / len(syn_a)
    return float(1 - np.abs(p - q).sum() / 2)


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V from the observed cells only, so two 100k-category columns need no 100k × 100k table.

    With row and column totals r_i and c_j of n rows, χ² = n · Σ_observed O_ij² / (r_i c_j) − n.
    """
    _, a_codes = np.unique(a, return_inverse=True)
    _, b_codes = np.unique(b, return_inverse=True)
    rows_a, rows_b = a_codes.max() + 1, b_codes.max() + 1
    if min(rows_a, rows_b) < 2:
        return 0.0
    cells, observed = np.unique(a_codes.astype(np.int64) * rows_b + b_codes, return_counts=True)
    r = np.bincount(a_codes, minlength=rows_a)[cells // rows_b]
    c = np.bincount(b_codes, minlength=rows_b)[cells % rows_b]
    n = len(a_codes)
    chi2 = max(float(n * np.sum(observed.astype(np.float64) ** 2 / (r * c)) - n), 0.0)
    return float(np.sqrt(chi2 / (n * (min(rows_a, rows_b) - 1))))


def _discrete_codes(series: pl.Series, numeric: bool) -> np.ndarray:
    if numeric:
        return _binned(series)
    return series.cast(pl.String).fill_null("\x00null").to_numpy()


def pair_trend_scores(real: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema, *,
                      correlation_threshold: float = 0.5,
                      association_threshold: float = 0.3) -> dict[str, dict[str, Any]]:
    """Every pair's similarity, and whether the pair counts towards the mean.

    As in SDMetrics' QualityReport (0.32), a pair counts only where the real data
    has a trend to reproduce: |Pearson| above ``correlation_threshold`` for two
    numeric columns, Cramér's V above ``association_threshold`` otherwise.
    """
    columns = [c for c in schema.learned if c.name in synthetic.columns]
    numeric = {c.name: c.kind.numeric for c in columns}
    codes_real = {c.name: _discrete_codes(real[c.name], numeric[c.name]) for c in columns}
    codes_syn = {c.name: _discrete_codes(synthetic[c.name], numeric[c.name]) for c in columns}
    pairs: dict[str, dict[str, Any]] = {}
    # Numbers without nulls get one correlation matrix (500 columns: 124,750 pairs at once); the rest, pair by pair.
    dense = [c.name for c in columns if numeric[c.name] and not real[c.name].null_count()
             and not synthetic[c.name].null_count()]
    matrices = {side: _correlations(frame, dense) for side, frame in (("real", real), ("synthetic", synthetic))}
    position = {name: index for index, name in enumerate(dense)}
    for a, b in combinations([c.name for c in columns], 2):
        if numeric[a] and numeric[b]:
            if a in position and b in position:
                real_r = matrices["real"][position[a], position[b]]
                real_r = None if np.isnan(real_r) else float(real_r)
                synthetic_r = float(np.nan_to_num(matrices["synthetic"][position[a], position[b]]))
            else:
                real_r = _pearson(real, a, b)
                synthetic_r = (_pearson(synthetic, a, b) or 0.0) if real_r is not None else 0.0
            if real_r is None:
                continue
            pairs[f"{a} × {b}"] = {"score": 1 - abs(real_r - synthetic_r) / 2, "real_trend": real_r,
                                   "counts": abs(real_r) > correlation_threshold}
        else:
            association = cramers_v(codes_real[a], codes_real[b])
            score = contingency_similarity(codes_real[a], codes_real[b], codes_syn[a], codes_syn[b])
            pairs[f"{a} × {b}"] = {"score": score, "real_trend": association,
                                   "counts": association > association_threshold}
    return pairs


# --- holdout-referenced accuracy (mostlyai-qa's) -----------------------------------------------------------------

# As mostlyai-qa bins: a number (or date) into the deciles of its training values, a category into its ten most
# frequent training values and one bin for the rest; a null is a bin of its own. The holdout and the synthetic
# rows are compared with the training rows on the same number of rows, so that the sampling noise both carry is
# the same, and the holdout's score is the ceiling a generator that learned the population reaches.
ACCURACY_BINS = 10
MAX_ACCURACY_ROWS = 50_000
MAX_ACCURACY_PAIRS = 2_000


def accuracy_codes(train: pl.DataFrame, schema: Schema, tables: list[pl.DataFrame]) -> list[dict[str, np.ndarray]]:
    """Each table's learned columns as bin codes 0 … ACCURACY_BINS + 1 (the last: null), bins fitted on ``train``."""
    coded: list[dict[str, np.ndarray]] = [{} for _ in tables]
    null = ACCURACY_BINS + 1
    for column in schema.learned:
        if column.kind.numeric:
            values = as_number(train[column.name]).cast(pl.Float64).drop_nulls().to_numpy()
            values = values[~np.isnan(values)]
            edges = np.unique(np.quantile(values, np.linspace(0, 1, ACCURACY_BINS + 1)[1:-1])) if len(values) else []
            for index, table in enumerate(tables):
                numbers = as_number(table[column.name]).cast(pl.Float64).to_numpy()
                codes = np.searchsorted(edges, numbers, side="right")
                coded[index][column.name] = np.where(np.isnan(numbers), null, codes)
        else:
            top = train[column.name].cast(pl.String).drop_nulls().alias("value") \
                .value_counts(sort=True, name="count").get_column("value").head(ACCURACY_BINS).to_list()
            lookup = {value: code for code, value in enumerate(top)}
            for index, table in enumerate(tables):
                text = table[column.name].cast(pl.String)
                codes = text.replace_strict(lookup, default=ACCURACY_BINS, return_dtype=pl.Int64).to_numpy().copy()
                codes[text.is_null().to_numpy()] = null
                coded[index][column.name] = codes
    return coded


def _tv_accuracy(real: np.ndarray, other: np.ndarray, cells: int) -> float:
    p = np.bincount(real, minlength=cells) / max(len(real), 1)
    q = np.bincount(other, minlength=cells) / max(len(other), 1)
    return float(1 - np.abs(p - q).sum() / 2)


def accuracy(train: pl.DataFrame, holdout: pl.DataFrame | None, synthetic: pl.DataFrame, schema: Schema, *,
             seed: int = 0) -> dict[str, Any]:
    """1- and 2-column accuracy of the synthetic rows against the training rows on binned values (1 − total
    variation distance), and the same for the holdout beside each: the ceiling."""
    names = [c.name for c in schema.learned if c.name in synthetic.columns]
    streams = RandomStreams(seed, "accuracy")
    n = min(synthetic.height, holdout.height if holdout is not None else synthetic.height, MAX_ACCURACY_ROWS)
    tables = {"synthetic": subsample(synthetic, n, streams.seed_for("synthetic"))}
    if holdout is not None:
        tables["holdout"] = subsample(holdout, n, streams.seed_for("holdout"))
    reference = subsample(train, MAX_ACCURACY_ROWS, streams.seed_for("train"))
    codes = dict(zip(["train", *tables], accuracy_codes(train, schema, [reference, *tables.values()]), strict=True))
    cells = ACCURACY_BINS + 2
    univariate = {name: {side: _tv_accuracy(codes["train"][name], codes[side][name], cells) for side in tables}
                  for name in names}
    pairs = list(combinations(names, 2))
    if len(pairs) > MAX_ACCURACY_PAIRS:  # a wide table: a seeded sample of its pairs
        chosen = np.random.default_rng(streams.seed_for("pairs")).choice(len(pairs), MAX_ACCURACY_PAIRS, replace=False)
        pairs = [pairs[i] for i in sorted(chosen)]
    bivariate = {f"{a} × {b}": {side: _tv_accuracy(codes["train"][a] * cells + codes["train"][b],
                                                   codes[side][a] * cells + codes[side][b], cells * cells)
                                for side in tables}
                 for a, b in pairs}
    result: dict[str, Any] = {"rows": n, "univariate": univariate, "bivariate": bivariate, "pairs_sampled":
                              len(pairs) < len(names) * (len(names) - 1) // 2}
    for side in tables:
        one = float(np.mean([v[side] for v in univariate.values()])) if univariate else None
        two = float(np.mean([v[side] for v in bivariate.values()])) if bivariate else None
        parts = [x for x in (one, two) if x is not None]
        result[side] = {"univariate": one, "bivariate": two, "overall": float(np.mean(parts)) if parts else None}
    return result


# --- rows encoded for distance ------------------------------------------------------------


# A categorical column's most frequent values each get a one-hot column for distances; a 100k-category column's
# other values share HASHED_CATEGORIES columns by hash (unequal values stay apart but for rare collisions).
MAX_DISTANCE_CATEGORIES = 1000
HASHED_CATEGORIES = 64


class DistanceEncoder:
    """Fitted on the training table; encodes any table with the same columns into float32 rows."""

    def __init__(self, train: pl.DataFrame, schema: Schema) -> None:
        self.numeric: dict[str, tuple[float, float]] = {}
        self.categories: dict[str, list[Any]] = {}
        for column in schema.learned:
            if column.kind.numeric:
                values = as_number(train[column.name]).cast(pl.Float64)
                low, high = values.min(), values.max()
                self.numeric[column.name] = (float(low or 0.0), float((high or 0.0) - (low or 0.0)) or 1.0)
            else:
                counts = train[column.name].alias("value").value_counts(sort=True, name="count")
                self.categories[column.name] = counts.get_column("value").head(MAX_DISTANCE_CATEGORIES).to_list()

    def encode(self, table: pl.DataFrame) -> np.ndarray:
        blocks = []
        for name, (low, span) in self.numeric.items():
            values = (as_number(table[name]).cast(pl.Float64).to_numpy() - low) / span
            nulls = np.isnan(values)
            blocks += [np.where(nulls, 0.0, values)[:, None], nulls[:, None].astype(np.float64)]
        scale = 1 / np.sqrt(2)
        for name, categories in self.categories.items():
            lookup = {value: index for index, value in enumerate(categories)}
            index = np.fromiter((lookup.get(v, -1) for v in table[name].to_list()), np.int64, table.height)
            width = len(categories)
            if width == MAX_DISTANCE_CATEGORIES:  # the rest of a huge column: hashed, so unequal values stay apart
                hashed = table[name].cast(pl.String).hash(seed=0).to_numpy() % HASHED_CATEGORIES
                index = np.where(index >= 0, index, width + hashed.astype(np.int64))
                width += HASHED_CATEGORIES
            onehot = np.zeros((table.height, width))
            known = index >= 0
            onehot[np.flatnonzero(known), index[known]] = scale
            blocks.append(onehot)
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((table.height, 0), np.float32)


def nearest_distances(queries: np.ndarray, reference: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each query row to its ``k`` nearest reference rows (ascending), and from each
    reference row to its nearest query row: one pass over the distance matrix serves both directions."""
    k = min(k, len(reference))
    reference_norms = np.einsum("ij,ij->i", reference, reference)
    rows = np.empty((len(queries), k), dtype=np.float64)
    columns = np.full(len(reference), np.inf)
    for start in range(0, len(queries), _BLOCK):
        block = queries[start : start + _BLOCK]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + reference_norms[None, :] - 2 * block @ reference.T
        nearest = np.partition(squared, k - 1, axis=1)[:, :k] if k < len(reference) else squared
        rows[start : start + _BLOCK] = np.sort(nearest, axis=1)[:, :k]
        np.minimum(columns, squared.min(axis=0), out=columns)
    return np.sqrt(np.maximum(rows, 0.0)), np.sqrt(np.maximum(columns, 0.0))


def subsample(table: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    return table.sample(rows, seed=seed) if table.height > rows else table


class DistanceContext:
    """Encoded, capped train/holdout/synthetic rows and their nearest distances, computed once per run."""

    def __init__(self, train: pl.DataFrame, holdout: pl.DataFrame | None, synthetic: pl.DataFrame, schema: Schema,
                 cap: int = MAX_DISTANCE_ROWS, seed: int = 0) -> None:
        self.cap = cap
        encoder = DistanceEncoder(train, schema)
        reference_rows = min(train.height, holdout.height, cap) if holdout is not None else min(train.height, cap)
        streams = RandomStreams(seed, "distances")
        self.train = encoder.encode(subsample(train, reference_rows, streams.seed_for("train")))
        self.holdout = (encoder.encode(subsample(holdout, reference_rows, streams.seed_for("holdout")))
                        if holdout is not None else None)
        self.synthetic = encoder.encode(subsample(synthetic, cap, streams.seed_for("synthetic")))
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def distances(self, query: str, reference: str) -> np.ndarray:
        """Nearest distances from each ``query`` row to the ``reference`` rows: (rows, 2), ascending.

        The pairs (synthetic, train), (synthetic, holdout) and (holdout, train) are computed once each;
        the opposite direction of a pair (e.g. train → synthetic, for membership inference) comes from
        the same matrix and has one column.
        """
        for first, second in (("synthetic", "train"), ("synthetic", "holdout"), ("holdout", "train")):
            if {query, reference} == {first, second}:
                if (first, second) not in self._cache:
                    self._cache[(first, second)] = nearest_distances(getattr(self, first), getattr(self, second))
                rows, columns = self._cache[(first, second)]
                return rows if query == first else columns[:, None]
        raise ValueError(f"no distances between {query!r} and {reference!r}")


_contexts: OrderedDict[tuple, DistanceContext] = OrderedDict()


def _fingerprint(table: pl.DataFrame | None) -> tuple | None:
    """What identifies a table's content, rows in order: its shape, columns and a digest of its row hashes.

    Not ``id()``: a frame freed and another allocated at the same address would share the cached distances.
    """
    if table is None:
        return None
    digest = hashlib.sha256(table.hash_rows(seed=0).to_numpy().tobytes()).hexdigest()
    return table.height, tuple(table.columns), digest


def distance_context(train: pl.DataFrame, holdout: pl.DataFrame | None, synthetic: pl.DataFrame,
                     schema: Schema) -> DistanceContext:
    """The shared distances of one (train, holdout, synthetic) triple; the privacy checks reuse them."""
    key = (*(_fingerprint(t) for t in (train, holdout, synthetic)), tuple(schema.names))
    if key not in _contexts:
        _contexts[key] = DistanceContext(train, holdout, synthetic, schema)
        while len(_contexts) > 2:
            _contexts.popitem(last=False)
    return _contexts[key]


# --- machine-learning efficacy -------------------------------------------------------------


def _features(frame: pl.DataFrame, schema: Schema, target: str, categories: dict[str, list[Any]]) -> np.ndarray:
    blocks = []
    for column in schema.learned:
        if column.name == target:
            continue
        series = frame[column.name]
        if column.kind.numeric:
            blocks.append(as_number(series).cast(pl.Float64).to_numpy())
        else:
            lookup = {value: index for index, value in enumerate(categories[column.name])}
            blocks.append(np.array([lookup.get(v, np.nan) for v in series.to_list()], dtype=np.float64))
    return np.column_stack(blocks)


MAX_MODEL_CATEGORIES = 254


def ml_efficacy(train: pl.DataFrame, holdout: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema, target: str,
                seed: int = 0) -> dict[str, Any]:
    """Train on synthetic and on real, test both on the real holdout (ROC AUC or R²)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import r2_score, roc_auc_score

    spec = schema[target]
    categorical = [c for c in schema.learned if c.name != target and not c.kind.numeric]
    # HistGradientBoosting takes at most 255 categories a feature: the 254 most frequent, the rest as missing.
    categories = {c.name: train[c.name].alias("value").drop_nulls().value_counts(sort=True, name="count")
                  .head(MAX_MODEL_CATEGORIES).get_column("value").sort().to_list() for c in categorical}
    mask = [not c.kind.numeric for c in schema.learned if c.name != target]
    x_train, x_synthetic, x_holdout = (_features(t, schema, target, categories) for t in (train, synthetic, holdout))
    result: dict[str, Any] = {"target": target}
    two_values = train[target].drop_nulls().n_unique() == 2  # a 0/1 (or two-valued) number is a class, not R²
    if spec.kind.numeric and not two_values:
        def score(x: np.ndarray, y: np.ndarray) -> float:
            model = HistGradientBoostingRegressor(categorical_features=mask, random_state=seed).fit(x, y)
            return float(r2_score(y_holdout, model.predict(x_holdout)))

        y_train, y_synthetic, y_holdout = (as_number(t[target]).cast(pl.Float64).to_numpy()
                                           for t in (train, synthetic, holdout))
        keep = ~np.isnan(y_holdout)
        x_holdout, y_holdout = x_holdout[keep], y_holdout[keep]
        result["metric"] = "r2"
    else:
        classes = train[target].alias("value").value_counts(sort=True, name="count")["value"].to_list()
        positive = classes[-1]  # the minority class is the one worth finding

        def score(x: np.ndarray, y: np.ndarray) -> float:
            if len(np.unique(y)) < 2:
                return 0.5
            model = HistGradientBoostingClassifier(categorical_features=mask, random_state=seed).fit(x, y)
            column = list(model.classes_).index(1)
            return float(roc_auc_score(y_holdout, model.predict_proba(x_holdout)[:, column]))

        y_train, y_synthetic, y_holdout = ((t[target] == positive).fill_null(False).to_numpy().astype(int)
                                           for t in (train, synthetic, holdout))
        result |= {"metric": "roc_auc", "positive_class": positive}
        if len(np.unique(y_holdout)) < 2:
            return result | {"synthetic": None, "real": None}
    keep_synthetic = ~np.isnan(y_synthetic.astype(float))
    keep_train = ~np.isnan(y_train.astype(float))
    with single_openmp_thread():
        result["synthetic"] = score(x_synthetic[keep_synthetic], y_synthetic[keep_synthetic])
        result["real"] = score(x_train[keep_train], y_train[keep_train])
    return result


def single_openmp_thread() -> Any:
    """Gradient boosting's OpenMP threads spin at every barrier: when another process holds a core
    (a training job, a second test worker), a 5-second fit was measured taking 290 s on 2 cores.
    One thread costs at most a factor of the core count and never collapses."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


# The classifier two-sample test's protocol (the literature's C2ST on Adult: TabDiff, TabularARGN): up to 10,000
# rows of each table, 5-fold cross-validation. Gradient boosting on one OpenMP thread fits Adult's 20,000 rows
# five times in about 3 s on a loaded 2-core machine. A wide table gets fewer rows, so that a fit reads at most
# DETECTION_CELLS cells of each table (500 columns: 2,000 rows): its time grows with rows × columns.
DETECTION_ROWS = 10_000
DETECTION_FOLDS = 5
DETECTION_CELLS = 300_000
MIN_DETECTION_ROWS = 2_000
# Held-out rows of each fold a column is shuffled in to measure its importance: a prediction of 4,000 rows costs
# what a tenth of a fit does, and Adult's 15 columns × 5 folds of them cost 5 s; 1,000 rows measure a drop to
# about ±0.005. A wide table shuffles its columns in fewer folds (one from 100 columns), so that the shuffled
# predictions stay about IMPORTANCE_PREDICTIONS.
IMPORTANCE_ROWS = 1_000
IMPORTANCE_PREDICTIONS = 100


def detection_rows(columns: int, rows: int = DETECTION_ROWS) -> int:
    """Rows of each table the detection classifier reads: ``rows``, fewer for a wide table."""
    return min(rows, max(MIN_DETECTION_ROWS, DETECTION_CELLS // max(columns, 1)))


def _detection_features(both: pl.DataFrame, columns: list[Any]) -> tuple[np.ndarray, list[bool]]:
    """One feature a column for gradient boosting: numbers (dates as numbers) as they are, a category as its rank
    among the two tables' 254 most frequent values, every other value one more code (not missing: a value only
    one table has is a tell, and a null is its own)."""
    blocks, mask = [], []
    for column in columns:
        series = both[column.name]
        if column.kind.numeric:
            blocks.append(as_number(series).cast(pl.Float64).to_numpy())
            mask.append(False)
            continue
        text = series.cast(pl.String)
        top = text.drop_nulls().alias("value").value_counts(sort=True, name="count").get_column("value")
        lookup = {value: index for index, value in enumerate(top.head(MAX_MODEL_CATEGORIES).to_list())}
        codes = text.replace_strict(lookup, default=MAX_MODEL_CATEGORIES, return_dtype=pl.Float64).to_numpy().copy()
        codes[text.is_null().to_numpy()] = np.nan
        blocks.append(codes)
        mask.append(True)
    return np.column_stack(blocks), mask


def detection(real: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema, *, model: str = "gradient_boosting",
              rows: int = DETECTION_ROWS, folds: int = DETECTION_FOLDS, seed: int = 0) -> dict[str, Any]:
    """A classifier two-sample test: the cross-validated ROC AUC of a classifier telling real rows from synthetic
    ones (0.5: indistinguishable; a real holdout scores about 0.5), and which columns give the synthetic rows away.

    ``gradient_boosting`` (scikit-learn's ``HistGradientBoostingClassifier``, native categories) finds tells a
    linear model cannot: on Adult's Gaussian-copula output it scores 0.98 where ``logistic`` (SDMetrics'
    LogisticDetection, on the distance encoding) scores 0.51. A column's ``importance`` is how much the
    held-out folds' AUC falls when that column is shuffled among their rows (permutation importance): a tell
    that lies between two columns (``education`` against ``education-num``) shows on both.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    columns = [c for c in schema.learned if c.name in synthetic.columns and c.name in real.columns]
    n = min(real.height, synthetic.height, detection_rows(len(columns), rows))
    result: dict[str, Any] = {"model": model, "rows": n, "folds": folds, "columns": {}}
    if n < folds or not columns:
        return result | {"auc": None}
    streams = RandomStreams(seed, "detection")
    names = [c.name for c in columns]
    both = pl.concat([subsample(real, n, streams.seed_for("real")).select(names),
                      subsample(synthetic, n, streams.seed_for("synthetic")).select(names)], how="vertical_relaxed")
    y = np.r_[np.zeros(n), np.ones(n)]
    if model == "logistic":
        from sklearn.linear_model import LogisticRegression

        x = DistanceEncoder(both, schema).encode(both)

        def classifier() -> Any:
            return LogisticRegression(max_iter=500)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        x, mask = _detection_features(both, columns)

        def classifier() -> Any:
            return HistGradientBoostingClassifier(categorical_features=mask, random_state=seed)
    predicted = np.empty(len(y))
    drops = np.zeros(len(columns))
    shuffle = np.random.default_rng(streams.seed_for("permutation"))
    split = StratifiedKFold(folds, shuffle=True, random_state=streams.seed_for("folds") % 2**32)
    shuffled_folds = max(1, min(folds, IMPORTANCE_PREDICTIONS // len(columns)))
    with single_openmp_thread():
        for fold, (fit_rows, test_rows) in enumerate(split.split(x, y)):
            fitted = classifier().fit(x[fit_rows], y[fit_rows])
            predicted[test_rows] = fitted.predict_proba(x[test_rows])[:, 1]
            if model == "logistic" or fold >= shuffled_folds:  # logistic: one-hot blocks, not a feature a column
                continue
            judged = shuffle.permutation(test_rows)[:IMPORTANCE_ROWS]
            fold_auc = roc_auc_score(y[judged], predicted[judged])
            for index in range(len(columns)):
                shuffled = x[judged].copy()
                shuffled[:, index] = shuffle.permutation(shuffled[:, index])
                drops[index] += fold_auc - roc_auc_score(y[judged], fitted.predict_proba(shuffled)[:, 1])
    auc = float(roc_auc_score(y, predicted))
    if model != "logistic":
        result["columns"] = {name: float(drop / shuffled_folds) for name, drop in zip(names, drops, strict=True)}
        result["shuffled_folds"] = shuffled_folds
    # Not folded to max(auc, 1 − auc): far below 0.5 is no tell but rows shared by both tables (copies), which a
    # fold that learns "this row is synthetic" from the copy it saw then gets wrong on the other side.
    return result | {"auc": auc}


__all__ = ["ColumnKind", "DistanceContext", "DistanceEncoder", "accuracy", "contingency_similarity", "cramers_v",
           "detection", "distance_context", "ml_efficacy", "nearest_distances", "pair_trend_scores"]
