"""The full built-in suite of quality and privacy checks.

Quality: pair trends, detection (a classifier two-sample test), ML efficacy
(train on synthetic, test on the real holdout, next to train on real) and
validity (null rates, ranges, categories). Privacy: distance to closest record
(DCR) share and 5th-percentile ratio, nearest-neighbour distance ratio, a
distance-based membership-inference attack, rare-record reproduction and
identifier leakage. Column shapes and exact copies live in ``builtin``.

Privacy checks compare the synthetic rows with the training rows *and* with the
holdout: a generator that generalises is as close to the training rows as fresh
real rows are, so the holdout is the yardstick.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from synthforge.checks import metrics
from synthforge.checks.base import Check
from synthforge.checks.builtin import copy_share, rate_ceiling
from synthforge.data.encoder import RARE
from synthforge.data.fake import COMPONENT_KINDS
from synthforge.data.schema import ColumnKind
from synthforge.hookspecs import hookimpl


class TargetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(None, description="Column to predict; defaults to the recipe's `target`.")


class PairTrendParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    correlation_threshold: float = Field(0.5, ge=0, lt=1, description="A numeric pair counts above this |Pearson|.")
    association_threshold: float = Field(0.3, ge=0, lt=1, description="Other pairs count above this Cramér's V.")


class PairTrends(Check):
    name = "pair_trends"
    kind = "quality"
    description = ("Mean similarity of the column pairs that have a trend in the real data: correlation "
                   "similarity for two numeric columns, contingency similarity otherwise (SDMetrics' Column "
                   "Pair Trends, with its thresholds: |Pearson| > 0.5, Cramér's V > 0.3).")
    Params = PairTrendParams
    default = True
    default_min = 0.7
    default_on_fail = "warn"

    def measure(self, train, holdout, synthetic, schema):
        pairs = metrics.pair_trend_scores(train, synthetic, schema,
                                          correlation_threshold=self.params.correlation_threshold,
                                          association_threshold=self.params.association_threshold)
        counted = {name: pair["score"] for name, pair in pairs.items() if pair["counts"]}
        if not counted:
            return None, "no column pair has a trend in the real data above the thresholds", {"pairs": pairs}
        worst = sorted(counted, key=counted.__getitem__)[:5]
        score = float(np.mean(list(counted.values())))
        every = float(np.mean([pair["score"] for pair in pairs.values()]))
        summary = (f"mean over the {len(counted)} pairs with a real trend {score:.3f} (all {len(pairs)} pairs: "
                   f"{every:.3f}); worst {worst[0]!r} {counted[worst[0]]:.3f}")
        return score, summary, {"pairs": pairs, "worst": worst, "all_pairs_mean": every}


class DetectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Literal["gradient_boosting", "logistic"] = Field(
        "gradient_boosting",
        description="gradient_boosting (scikit-learn's HistGradientBoostingClassifier) finds non-linear tells and "
                    "names the telling columns; logistic is SDMetrics' LogisticDetection, blind to most of them.",
    )
    rows: int = Field(metrics.DETECTION_ROWS, ge=100,
                      description="Rows of each table used at most (a seeded sample; fewer on a wide table, so that "
                                  f"each reads at most {metrics.DETECTION_CELLS:,} cells).")
    folds: int = Field(metrics.DETECTION_FOLDS, ge=2, le=10, description="Cross-validation folds.")


class Detection(Check):
    name = "detection"
    kind = "quality"
    description = ("ROC AUC of a gradient-boosting classifier telling real from synthetic rows (5-fold "
                   "cross-validation on up to 10,000 rows of each): 0.5 means indistinguishable, and a real "
                   "holdout scores about 0.5. The details name the columns that give the synthetic rows away "
                   "(how much the AUC falls when each is shuffled).")
    Params = DetectionParams
    default = True
    # At 0.9 the classifier ranks a synthetic row above a real one nine times in ten: output told apart this well
    # is no stand-in for the real rows. On Adult (5-fold, 10,000 rows each): a real holdout 0.50, the
    # autoregressive backend 0.52, the VAE 0.86, the Gaussian copula 0.98. A quality gate, so it warns like the
    # others (the privacy gates are the ones that stop a run): the built-in copula, a first run's default, is
    # told apart on most real tables, and the warning with its telling columns is what the user needs to see;
    # `on_fail: error` makes it stop a run.
    default_max = 0.9
    default_on_fail = "warn"
    warns_when_shifted = True

    def measure(self, train, holdout, synthetic, schema):
        found = metrics.detection(train, synthetic, schema, model=self.params.model, rows=self.params.rows,
                                  folds=self.params.folds)
        if found["auc"] is None:
            return None, "skipped: too few rows or no learned columns to classify", found | {"skipped": True}
        auc = found["auc"]
        # Under no signal the AUC's standard error (Hanley & McNeil) is about sqrt((2n + 1) / (12 n²)): within three
        # of them of 0.5 the classifier sees nothing, and no column is named for the shuffles' luck.
        n = found["rows"]
        found["chance_above"] = 0.5 + 3 * float(np.sqrt((2 * n + 1) / (12 * n * n)))
        telling = sorted(found["columns"].items(), key=lambda item: -item[1])
        found["telling"] = [name for name, drop in telling
                            if drop >= TELLING_DROP and auc > found["chance_above"]][:5]
        summary = (f"a {self.params.model.replace('_', '-')} classifier tells real from synthetic with ROC AUC "
                   f"{auc:.3f} (0.5 ideal; {found['folds']}-fold, {found['rows']:,} rows each)")
        if auc < 1 - found["chance_above"]:
            summary += ("; below 0.5 beyond chance: the synthetic rows repeat real rows they were compared with "
                        "(copies; exact_copies and the distance checks judge those)")
        if found["telling"]:
            summary += "; telling columns (AUC lost when shuffled): " + ", ".join(
                f"{name!r} {found['columns'][name]:.3f}" for name in found["telling"][:3])
        return auc, summary, found


# A column whose shuffling costs the classifier less AUC than this tells nothing worth naming: on Adult's real
# holdout (AUC 0.505) the shuffle's luck alone moved single columns by up to 0.008.
TELLING_DROP = 0.01


class Accuracy(Check):
    name = "accuracy"
    kind = "quality"
    description = ("mostlyai-qa's accuracy: 1 − total variation distance between the synthetic and the training "
                   "rows' binned values (deciles for numbers and dates, the ten most frequent categories and the "
                   "rest), for every column and every pair of columns, with the holdout's own score beside each as "
                   "the ceiling. Warns more than 0.1 below the holdout's.")
    default = True
    default_on_fail = "warn"
    warns_when_shifted = True

    def measure(self, train, holdout, synthetic, schema):
        found = metrics.accuracy(train, holdout, synthetic, schema)
        score = found["synthetic"]["overall"]
        if score is None:
            return None, "skipped: no learned columns", found | {"skipped": True}
        ours = found["synthetic"]
        summary = f"{score:.3f} (1 column {ours['univariate']:.3f}"
        summary += f", 2 columns {ours['bivariate']:.3f})" if ours["bivariate"] is not None else ")"
        if "holdout" in found:
            ceiling = found["holdout"]
            summary += f" against the holdout's {ceiling['overall']:.3f}"
        scores = found["bivariate"] or found["univariate"]
        gaps = {name: sides.get("holdout", 1.0) - sides["synthetic"] for name, sides in scores.items()}
        worst = max(gaps, key=gaps.__getitem__)
        summary += f"; furthest from it: {worst!r} {scores[worst]['synthetic']:.3f}"
        if "holdout" in scores[worst]:
            summary += f" (holdout {scores[worst]['holdout']:.3f})"
        return score, summary, found | {"worst": worst}

    def gate_from_data(self, details):
        ceiling = (details.get("holdout") or {}).get("overall")
        return (None if ceiling is None else ceiling - ACCURACY_MARGIN), None


# How far below the holdout's accuracy a run warns: on Adult the copula's output sits 0.020 below it (0.969 against
# 0.989), with its worst pair, education × education-num, at 0.249 against 0.990.
ACCURACY_MARGIN = 0.1


class MLEfficacy(Check):
    name = "ml_efficacy"
    kind = "quality"
    description = ("Train on synthetic, test on the real holdout (ROC AUC for a category, R² for a number), "
                   "next to the same model trained on real rows. Needs a holdout and a target.")
    Params = TargetParams
    default = True
    needs_holdout = True
    default_on_fail = "warn"
    # Augmented and rebalanced outputs are scored as what a user trains on: the real rows with the new ones.
    scores_output_rows = True

    def measure(self, train, holdout, synthetic, schema):
        target = self.params.target
        if target is None:
            skipped = "skipped: no target column (a recipe's `target:`, or `synthforge evaluate --target`)"
            return None, skipped, {"skipped": True}
        result = metrics.ml_efficacy(train, holdout, synthetic, schema, target)
        if result["synthetic"] is None:
            return None, "skipped: the holdout has a single class", result
        summary = (f"{result['metric']} trained on the output's {synthetic.height:,} rows {result['synthetic']:.3f} "
                   f"vs on real {result['real']:.3f} (predicting {target!r})")
        return result["synthetic"], summary, {**result, "rows_trained_on": synthetic.height}

    def gate_from_data(self, details):
        real = details.get("real")
        return (None if real is None else real - 0.1), None


class Validity(Check):
    name = "validity"
    kind = "quality"
    description = ("Share of synthetic cells that are valid (numbers inside the training range, categories "
                   "seen in training), and null rates close to the training ones.")
    default = True
    default_min = 0.99
    default_on_fail = "warn"

    def measure(self, train, holdout, synthetic, schema):
        valid = total = 0
        null_gaps = {}
        for column in schema.learned:
            values = synthetic[column.name]
            present = values.drop_nulls()
            if column.kind in (ColumnKind.continuous, ColumnKind.integer) and column.minimum is not None:
                valid += int(((present >= column.minimum) & (present <= column.maximum)).sum())
            elif column.kind in (ColumnKind.categorical, ColumnKind.boolean):
                known = set(train[column.name].drop_nulls().to_list())
                if column.kind == ColumnKind.categorical:
                    known.add(RARE)
                valid += int(present.is_in(list(known)).sum())
            else:
                valid += present.len()
            total += present.len()
            null_gaps[column.name] = abs(values.null_count() / max(values.len(), 1) - column.null_rate)
        share = valid / max(total, 1)
        worst = max(null_gaps, key=null_gaps.__getitem__) if null_gaps else None
        score = share * (1 - max(null_gaps.values(), default=0.0))
        summary = f"{share:.2%} of values valid; largest null-rate gap {null_gaps.get(worst, 0):.2%} ({worst!r})"
        return score, summary, {"valid_share": share, "null_rate_gaps": null_gaps}


class DCRShare(Check):
    name = "dcr_share"
    kind = "privacy"
    description = ("Share of synthetic rows closer to a training row than to a holdout row (the training rows "
                   "subsampled to the holdout's size): 0.5 means the generator is no closer to the rows it "
                   "learned from than to fresh ones.")
    default = True
    needs_holdout = True
    default_max = 0.6
    # Far on the good side of 0.5 the synthetic rows resemble the holdout more than the rows they were learned
    # from: no privacy risk, but an output unlike its source (or a holdout from elsewhere).
    below_is_fidelity = True

    def measure(self, train, holdout, synthetic, schema):
        context = metrics.distance_context(train, holdout, synthetic, schema)
        to_train = context.distances("synthetic", "train")[:, 0]
        to_holdout = context.distances("synthetic", "holdout")[:, 0]
        share = float(np.mean((to_train < to_holdout) + 0.5 * (to_train == to_holdout)))
        histogram = _dcr_histogram(to_train, context.distances("holdout", "train")[:, 0])
        error = dcr_share_error(len(to_train), len(context.train))
        floor, ceiling = chance_band(error, self.default_max)
        summary = f"{share:.1%} of synthetic rows are closer to training rows than to holdout rows (50% ideal)"
        if share >= floor and ceiling > self.default_max:
            # training rows beyond the holdout's count are not compared: a copy of one of them scores as chance
            reach = 0.5 + 0.5 * len(context.train) / max(train.height, len(context.train))
            summary += (f"; on {len(context.train):,} holdout rows chance alone spreads it by ±{error:.3f} "
                        f"(copying every training row would reach {reach:.3f}: the membership attack and the DCR "
                        f"ratio tell memory apart here)")
        return share, summary, {"rows_compared": len(to_train), "reference_rows": len(context.train),
                                "dcr_histogram": histogram, "implausible_below": floor, "chance_above": ceiling}

    def gate_from_data(self, details):
        return details.get("implausible_below"), details.get("chance_above", self.default_max)




def chance_band(standard_error: float, ceiling: float, ideal: float = 0.5) -> tuple[float, float]:
    """The (lowest, highest) scores of a 0.5-ideal privacy measure that chance explains for a generator that
    remembers no row: 0.1 or 4 standard errors below ideal (further is implausible), and ``ceiling`` or 2.5
    standard errors above, whichever is higher.

    On a small table the second is higher: with fresh real rows as the output (a generator that remembers
    nothing), 80 training and 20 holdout rows of Adult or of the RAND health table gave a membership AUC above
    0.6 in 10-20% of splits and a DCR share above it in 3-13% (``benchmarks/README.md``, 2026-12-04); a gate
    at 0.6 there refuses a fair model on noise. From about 400 training rows on, 0.6 is the higher.
    """
    return ideal - max(0.1, 4 * standard_error), max(ceiling, ideal + 2.5 * standard_error)


def dcr_share_error(rows: int, reference_rows: int) -> float:
    """The standard error of a DCR share of ``rows`` synthetic rows against two reference sets of
    ``reference_rows`` each, for a generator that remembers no row: the synthetic rows' binomial spread plus the
    reference sets' own (which half of ``2 × reference_rows`` cells of nearly equal mass are training's), about
    ``1 / (8 × reference_rows)``; 10-15% above the spread measured on Adult and RAND at 40-1,000 rows."""
    return float(np.sqrt(0.25 / max(rows, 1) + 1 / (8 * max(reference_rows, 1))))


class DCRRatio(Check):
    name = "dcr_ratio"
    kind = "privacy"
    description = ("5th percentile of the synthetic rows' distance to the closest training row, divided by the "
                   "same for holdout rows: below 1, synthetic rows sit closer to real people than real people "
                   "sit to each other.")
    default = True
    needs_holdout = True
    default_min = 0.3

    def measure(self, train, holdout, synthetic, schema):
        context = metrics.distance_context(train, holdout, synthetic, schema)
        synthetic_closest = context.distances("synthetic", "train")[:, 0]
        holdout_closest = context.distances("holdout", "train")[:, 0]
        synthetic_p5 = float(np.percentile(synthetic_closest, 5))
        holdout_p5 = float(np.percentile(holdout_closest, 5))
        details = {"synthetic_p5": synthetic_p5, "holdout_p5": holdout_p5}
        summary = f"5th-percentile DCR {synthetic_p5:.4f} (synthetic) vs {holdout_p5:.4f} (holdout)"
        if holdout_p5 > 0:
            return synthetic_p5 / holdout_p5, summary, details
        # Rows repeat so often in this table that 5% of real holdout rows equal a training row: both
        # percentiles are 0 and say nothing, so compare how often each sits at distance 0 instead.
        details["synthetic_at_0"] = float(np.mean(synthetic_closest == 0))
        details["holdout_at_0"] = float(np.mean(holdout_closest == 0))
        ratio = details["holdout_at_0"] / details["synthetic_at_0"] if details["synthetic_at_0"] > 0 else 1.0
        return ratio, (f"rows repeat: {details['synthetic_at_0']:.1%} of synthetic rows and "
                       f"{details['holdout_at_0']:.1%} of holdout rows equal a (sampled) training row"), details


class NNDR(Check):
    name = "nndr"
    kind = "privacy"
    description = ("Nearest-neighbour distance ratio (closest / second-closest training row), 5th percentile, "
                   "synthetic relative to holdout: near 0 means synthetic rows single out one real record.")
    default = True
    needs_holdout = True
    default_min = 0.5
    default_on_fail = "warn"

    def measure(self, train, holdout, synthetic, schema):
        context = metrics.distance_context(train, holdout, synthetic, schema)

        def ratio_p5(distances: np.ndarray) -> float:
            ratios = np.where(distances[:, 1] > 0, distances[:, 0] / np.maximum(distances[:, 1], 1e-12), 1.0)
            return float(np.percentile(ratios, 5))

        synthetic_p5 = ratio_p5(context.distances("synthetic", "train"))
        holdout_p5 = ratio_p5(context.distances("holdout", "train"))
        score = synthetic_p5 / holdout_p5 if holdout_p5 > 0 else 1.0
        return score, f"5th-percentile NNDR {synthetic_p5:.3f} (synthetic) vs {holdout_p5:.3f} (holdout)", {
            "synthetic_p5": synthetic_p5, "holdout_p5": holdout_p5}


class MembershipInference(Check):
    name = "membership_inference"
    kind = "privacy"
    description = ("A distance attack: score each real row by how close the nearest synthetic row is, and "
                   "measure how well that separates training rows (members) from holdout rows (ROC AUC, 0.5 "
                   "ideal).")
    default = True
    needs_holdout = True
    default_max = 0.6
    below_is_fidelity = True  # an attack worse than guessing: real rows closer to the output than members are

    def measure(self, train, holdout, synthetic, schema):
        from sklearn.metrics import roc_auc_score

        context = metrics.distance_context(train, holdout, synthetic, schema)
        members = context.distances("train", "synthetic")[:, 0]
        non_members = context.distances("holdout", "synthetic")[:, 0]
        labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
        auc = float(roc_auc_score(labels, -np.r_[members, non_members]))
        # The AUC's standard error under no signal (Hanley & McNeil) is about sqrt((n1 + n2 + 1) / (12 n1 n2)).
        n1, n2 = max(len(members), 1), max(len(non_members), 1)
        error = float(np.sqrt((n1 + n2 + 1) / (12 * n1 * n2)))
        floor, ceiling = chance_band(error, self.default_max)
        summary = f"membership attack ROC AUC {auc:.3f} (0.5: no better than guessing)"
        if auc >= floor and ceiling > self.default_max:
            summary += f"; on {n2:,} holdout rows chance alone spreads it by ±{error:.3f}"
        return auc, summary, {"members": len(members), "non_members": len(non_members),
                              "implausible_below": floor, "chance_above": ceiling}

    def gate_from_data(self, details):
        return details.get("implausible_below"), details.get("chance_above", self.default_max)


class RareCombinations(Check):
    name = "rare_combinations"
    kind = "privacy"
    description = ("Share of synthetic rows that reproduce a training record unique on its categorical and "
                   "low-cardinality columns; gated by the holdout's own rate of such matches. Skipped where those "
                   "columns are a grid's coordinates (a panel such as city × year × month: every record is unique "
                   "on them).")
    default = True

    def measure(self, train, holdout, synthetic, schema):
        columns = schema.quasi_identifiers
        if not columns:  # every column a number with over 100 values: no record is told apart by these
            return None, "skipped: no categorical or low-cardinality column to form quasi-identifiers", {
                "skipped": True, "columns": []}
        unique = train.select(columns).group_by(columns).len().filter(pl.col("len") == 1).drop("len")
        # a streamed source's checks see a sample of its training rows: the grid is judged on the whole table
        records = max(train.height, schema.training_rows or 0)
        fill = schema.quasi_identifier_grid(train.height, unique.height, columns, table_rows=records)
        if fill is not None:  # copy protection does not redraw these either (Generator.protect_rows)
            return None, (f"skipped: {' × '.join(columns)} are a grid's coordinates, each of the {records:,} "
                          f"training records one of their combinations ({fill:.0%} of them filled), so every record "
                          f"is unique on them by design; copies of whole rows are judged by exact_copies and the "
                          f"distance checks"), {"skipped": True, "columns": columns, "grid_fill": fill}
        share = copy_share(synthetic, unique, columns)
        details: dict[str, Any] = {"columns": columns, "unique_records": unique.height, "rows": synthetic.height}
        if holdout is not None:
            details["holdout_share"] = copy_share(holdout, unique, columns)
        summary = (f"{share:.3%} of synthetic rows reproduce one of {unique.height:,} unique training records"
                   + (f" (holdout: {details['holdout_share']:.3%})" if holdout is not None else ""))
        return share, summary, details

    def gate_from_data(self, details):
        baseline = details.get("holdout_share")
        if baseline is None:
            return None, None
        return None, rate_ceiling(baseline, details["rows"], standard_errors=3, variance_floor=1e-6)


class IdentifierLeak(Check):
    name = "identifier_leak"
    kind = "privacy"
    description = ("Real values of identifier, free-text and personal (names, contacts, addresses) columns found "
                   "in any synthetic column (must be 0).")
    default = True
    mandatory = True
    default_max = 0.0

    def measure(self, train, holdout, synthetic, schema):
        # A personal column's values are looked for in every text column of the output, not only its own: a
        # name learned under another column, or a recipe that made a name column categorical, still shows.
        personal = [c for c in schema.columns if c.name in train.columns
                    and (c.kind in (ColumnKind.identifier, ColumnKind.free_text) or c.pii)]
        text_outputs = [name for name, dtype in synthetic.schema.items() if dtype in (pl.String, pl.Categorical)]
        # Columns Faker writes hold values from public lists, drawn without reading the rows: a first name or a
        # city they share with a real row is chance, not a leak. Their own column is still searched for a value
        # that names someone alone (a full name, an e-mail: the run draws those again when they equal a real one).
        faker = {c.name for c in schema.columns if c.personal and c.kind == ColumnKind.identifier
                 and c.handling == "regenerate"}
        leaks: dict[str, int] = {}
        for column in personal:
            real = train.get_column(column.name).drop_nulls().unique()
            if real.dtype in (pl.String, pl.Categorical):
                real = real.cast(pl.String).filter(real.cast(pl.String).str.len_chars() > 0)
                outputs = [o for o in text_outputs if o not in faker or (
                    o == column.name and column.personal not in COMPONENT_KINDS)]
            else:
                outputs = [column.name] if column.name in synthetic.columns else []
            for output in outputs:
                looked_for = real
                if output != column.name and output in train.columns:  # values the other column really holds
                    own = train.get_column(output).drop_nulls().cast(pl.String, strict=False)
                    looked_for = real.filter(~real.is_in(own.implode()))
                found = synthetic.get_column(output).drop_nulls().cast(real.dtype, strict=False) \
                    .is_in(looked_for.implode()).sum()
                key = column.name if output == column.name else f"{column.name} in {output}"
                if found or output == column.name:
                    leaks[key] = int(found)
        leaks |= _name_pairs_found(train, synthetic, schema)
        total = sum(leaks.values())
        checked = ", ".join(f"{k}: {v}" for k, v in leaks.items() if v) or (
            f"none of {len(personal)} personal/identifier column(s)" if personal else "no identifier columns")
        return float(total), f"{total} real identifier values in the output ({checked})", {
            "columns": leaks, "personal_columns": [c.name for c in personal]}


def _name_pairs_found(train: pl.DataFrame, synthetic: pl.DataFrame, schema: Any) -> dict[str, int]:
    """Synthetic rows whose first and last name together are a real row's: each alone is a common word, together
    they name someone."""
    firsts = [c.name for c in schema.columns if c.personal == "first_name" and c.name in synthetic.columns
              and c.name in train.columns]
    lasts = [c.name for c in schema.columns if c.personal == "last_name" and c.name in synthetic.columns
             and c.name in train.columns]
    if not firsts or not lasts:
        return {}
    pair = [firsts[0], lasts[0]]
    real = train.select(pl.struct(pl.col(pair).cast(pl.String)).alias("pair")).drop_nulls().unique().get_column("pair")
    drawn = synthetic.select(pl.struct(pl.col(pair).cast(pl.String)).alias("pair")).get_column("pair")
    return {f"{pair[0]}+{pair[1]}": int(drawn.is_in(real.implode()).sum())}


def _dcr_histogram(synthetic: np.ndarray, holdout: np.ndarray, bins: int = 30) -> dict[str, Any]:
    top = float(np.percentile(np.r_[synthetic, holdout], 99)) or 1.0
    edges = np.linspace(0, top, bins + 1)
    return {
        "edges": edges.tolist(),
        "holdout": (np.histogram(np.clip(holdout, 0, top), edges)[0] / max(len(holdout), 1)).tolist(),
        "synthetic": (np.histogram(np.clip(synthetic, 0, top), edges)[0] / max(len(synthetic), 1)).tolist(),
    }


@hookimpl
def synthforge_checks() -> list[type[Check]]:
    return [PairTrends, Detection, Accuracy, MLEfficacy, Validity, DCRShare, DCRRatio, NNDR, MembershipInference,
            RareCombinations, IdentifierLeak]
