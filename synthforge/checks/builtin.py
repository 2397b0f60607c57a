"""The built-in checks: column shapes (quality) and exact copies (privacy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from synthforge.checks.base import Check
from synthforge.data.schema import ColumnKind, Schema, present_values
from synthforge.hookspecs import hookimpl


def ks_complement(real: pl.Series, synthetic: pl.Series) -> float:
    """1 − the two-sample Kolmogorov–Smirnov statistic, nulls left out (SDMetrics' KSComplement)."""
    a = np.sort(present_values(real))
    b = np.sort(present_values(synthetic))
    if len(a) == 0 or len(b) == 0:
        return float(len(a) == len(b))
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(1 - np.max(np.abs(cdf_a - cdf_b)))


def tv_complement(real: pl.Series, synthetic: pl.Series) -> float:
    """1 − the total variation distance of category frequencies, null a category (SDMetrics' TVComplement)."""
    real_freq = _frequencies(real)
    synthetic_freq = _frequencies(synthetic)
    keys = set(real_freq) | set(synthetic_freq)
    return float(1 - 0.5 * sum(abs(real_freq.get(k, 0.0) - synthetic_freq.get(k, 0.0)) for k in keys))


def _frequencies(series: pl.Series) -> dict[Any, float]:
    counts = series.alias("value").value_counts(name="count")
    total = series.len() or 1
    return dict(zip(counts.get_column("value").to_list(), (counts.get_column("count") / total).to_list(),
                    strict=True))


def column_shape_scores(real: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema) -> dict[str, float]:
    scores = {}
    for column in schema.learned:
        if column.name not in synthetic.columns or column.name not in real.columns:
            continue
        metric = ks_complement if column.kind.numeric else tv_complement
        scores[column.name] = metric(real.get_column(column.name), synthetic.get_column(column.name))
    return scores


class ColumnShapes(Check):
    name = "column_shapes"
    kind = "quality"
    description = "Mean per-column similarity: KS complement for numbers and dates, TV complement for categories."
    default = True
    default_min = 0.8
    default_on_fail = "warn"

    def measure(self, train, holdout, synthetic, schema):
        scores = column_shape_scores(train, synthetic, schema)
        score = float(np.mean(list(scores.values()))) if scores else None
        worst = min(scores, key=scores.__getitem__) if scores else None
        summary = f"mean {score:.3f}; worst {worst!r} {scores[worst]:.3f}" if worst else "no learned columns"
        return score, summary, {"columns": scores}


def copy_share(rows: pl.DataFrame, reference: pl.DataFrame, columns: list[str]) -> float:
    """Share of ``rows`` identical to some row of ``reference`` on ``columns`` (nulls equal nulls)."""
    if rows.height == 0 or not columns:
        return 0.0
    matched = rows.select(columns).join(reference.select(columns).unique(), on=columns, how="semi", nulls_equal=True)
    return matched.height / rows.height


class Constraints(Check):
    name = "constraints"
    kind = "quality"
    description = ("Share of synthetic rows that keep each of the recipe's rules (the lowest is the score; 1.0 "
                   "required), beside the real table's own share.")
    default = True
    # A recipe's rules are promises about every row: they are checked whatever `checks:` lists.
    mandatory = True
    default_min = 1.0

    @classmethod
    def applies(cls, schema):
        return bool(schema.constraints)

    def measure(self, train, holdout, synthetic, schema):
        if not schema.constraints:
            return None, "skipped: the recipe declares no constraints", {"skipped": True, "rules": []}
        rules = []
        for rule in schema.constraints:
            rules.append({"rule": rule.describe(), "synthetic": float(rule.holds(synthetic).mean() or 0.0)
                          if synthetic.height else 1.0, "real": float(rule.holds(train).mean() or 0.0)})
        worst = min(rules, key=lambda r: r["synthetic"])
        summary = (f"{len(rules)} rule(s); lowest share kept: {worst['synthetic']:.2%} for {worst['rule']!r} "
                   f"(real table: {worst['real']:.2%})")
        return worst["synthetic"], summary, {"rules": rules}


class ExactCopies(Check):
    name = "exact_copies"
    kind = "privacy"
    description = ("Share of synthetic rows identical to a training row. The default gate allows no more than the "
                   "holdout's own share of rows found in the training table (plus two standard errors); far below "
                   "that share (where real rows repeat, as in a table of a few categories) is a quality warning.")
    default = True
    mandatory = True
    # A table whose real rows repeat (95% of a holdout of aircraft models found in training) and an output whose
    # rows rarely do: the output misses the table's common rows, no privacy risk.
    below_is_fidelity = True

    def measure(self, train, holdout, synthetic, schema):
        columns = [c.name for c in schema.learned if c.name in synthetic.columns]
        share = copy_share(synthetic, train, columns)
        details: dict[str, Any] = {"copies": round(share * synthetic.height), "rows": synthetic.height}
        if holdout is not None:
            details["holdout_share"] = copy_share(holdout, train, columns)
        summary = f"{details['copies']:,} of {synthetic.height:,} synthetic rows copy a training row"
        if "holdout_share" in details:
            summary += f" (holdout's own rate: {details['holdout_share']:.4%})"
        return share, summary, details

    def gate_from_data(self, details):
        baseline = details.get("holdout_share", 0.0)
        return rate_floor(baseline, details["rows"]), rate_ceiling(baseline, details["rows"], standard_errors=2)


def rate_floor(baseline: float, rows: int) -> float | None:
    """The least share of copies that fits a holdout's ``baseline`` rate of repeats: half of it, and four
    standard errors below it; None where the baseline is too small to say (under 5%)."""
    if baseline < 0.05:
        return None
    return min(baseline / 2, baseline - 4 * float(np.sqrt(baseline * (1 - baseline) / max(rows, 1))))


def rate_ceiling(baseline: float, rows: int, *, standard_errors: float, variance_floor: float = 0.0) -> float:
    """The most a rate measured on ``rows`` synthetic rows may exceed the holdout's ``baseline`` by chance."""
    variance = max(baseline * (1 - baseline), variance_floor)
    return baseline + standard_errors * float(np.sqrt(variance / max(rows, 1)))


@hookimpl
def synthforge_checks() -> list[type[Check]]:
    return [ColumnShapes, Constraints, ExactCopies]


__all__ = ["ColumnKind", "ColumnShapes", "ExactCopies"]
