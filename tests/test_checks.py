from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from synthforge.baseline import GaussianCopula
from synthforge.checks.builtin import column_shape_scores
from synthforge.data.schema import infer_schema
from synthforge.engine import run_checks
from synthforge.evaluation import evaluate_frames
from synthforge.generator import FitContext
from synthforge.recipe import CheckSpec

ADULT = Path(__file__).parent.parent / "recipes" / "data" / "adult"


@pytest.fixture(scope="module")
def adult_full():
    train, holdout = pl.read_csv(ADULT / "train.csv"), pl.read_csv(ADULT / "test.csv")
    synthetic = GaussianCopula().fit(train, context=FitContext(seed=0)).sample(train.height, seed=1)
    return train, holdout, synthetic, infer_schema(train)


def test_our_quality_scores_agree_with_sdmetrics_on_adult(adult_full):
    sdmetrics = pytest.importorskip("sdmetrics.reports.single_table")
    train, _, synthetic, schema = adult_full
    real, fake = train.to_pandas(), synthetic.to_pandas()
    metadata = {"columns": {c.name: {"sdtype": "numerical" if c.kind.numeric else "categorical"}
                            for c in schema.columns}}
    report = sdmetrics.QualityReport()
    report.generate(real, fake, metadata, verbose=False)
    properties = dict(report.get_properties().itertuples(index=False))
    ours = {r.name: r.score for r in run_checks(
        [CheckSpec(name="column_shapes"), CheckSpec(name="pair_trends")],
        __import__("synthforge").get_plugin_manager(entry_points=False), train, None, synthetic, schema)}
    assert abs(ours["column_shapes"] - properties["Column Shapes"]) < 0.005
    assert abs(ours["pair_trends"] - properties["Column Pair Trends"]) < 0.005
    assert abs((ours["column_shapes"] + ours["pair_trends"]) / 2 - report.get_score()) < 0.005


def test_shape_scores_are_exactly_one_for_identical_tables(adult):
    schema = infer_schema(adult)
    assert set(column_shape_scores(adult, adult, schema).values()) == {1.0}


def test_a_memorizing_table_fails_every_privacy_gate_that_should_catch_it(adult_full):
    train, holdout, _, schema = adult_full
    copied = train.sample(10_000, seed=3)
    results = {r.name: r for r in evaluate_frames(train, copied, holdout=holdout, target="income", schema=schema)}
    for name in ("exact_copies", "dcr_share", "dcr_ratio", "membership_inference", "rare_combinations"):
        assert not results[name].passed, f"{name} should fail on copied rows: {results[name].summary}"
    assert results["dcr_share"].score > 0.6 and results["membership_inference"].score > 0.6


def test_on_a_small_table_the_gates_refuse_memory_not_chance(adult):
    """80 training rows and 20 held out: a "generator" whose rows are fresh real ones remembers nothing, and one
    that returns its training rows remembers everything. Gates fixed at 0.6 refused the first in 5 of 40
    splits (membership AUC or DCR share above 0.6 by chance); widened to chance's reach, in none, and the
    membership attack, DCR ratio and exact copies still refuse the second in every split. (The DCR share cannot:
    it compares with as many training rows as the holdout has, so copying every training row moves it to about
    0.62 there, within chance, and its summary says so.)"""
    from synthforge.checks.builtin import ExactCopies
    from synthforge.checks.suite import DCRRatio, DCRShare, MembershipInference

    schema = infer_schema(adult)
    fixed_gate_refusals = refusals = 0
    for split in range(40):
        rows = adult.sample(180, seed=split, shuffle=True)
        train, holdout, fresh = rows.head(80), rows.slice(80, 20), rows.tail(80)
        fresh_results = [check.run(train, holdout, fresh, schema) for check in (DCRShare(), MembershipInference())]
        refusals += not all(result.passed for result in fresh_results)
        fixed_gate_refusals += any(result.score > 0.6 for result in fresh_results)
        for check in (MembershipInference(), DCRRatio(), ExactCopies()):
            assert not check.run(train, holdout, train, schema).passed, check.name
        copied = DCRShare().run(train, holdout, train, schema)
        assert copied.maximum > 0.6 and "copying every training row would reach 0.625" in copied.summary
    assert refusals <= 1 and fixed_gate_refusals >= 4


def test_the_copula_passes_the_privacy_gates(adult_full):
    train, holdout, synthetic, schema = adult_full
    results = evaluate_frames(train, synthetic, holdout=holdout, target="income", schema=schema)
    failed = [r.name for r in results if r.kind == "privacy" and not r.passed]
    assert not failed
    by_name = {r.name: r for r in results}
    assert 0.45 < by_name["dcr_share"].score < 0.55 and by_name["ml_efficacy"].details["real"] > 0.9


def test_identifier_leak_is_caught():
    table = pl.DataFrame({"customer_id": [f"C{i:04d}" for i in range(300)], "x": [i % 7 for i in range(300)],
                          "y": ["a", "b", "c"] * 100})
    schema = infer_schema(table)
    leaky = table.with_columns(pl.when(pl.col("x") == 0).then(pl.col("customer_id")).otherwise(pl.lit("syn_1")))
    results = {r.name: r for r in evaluate_frames(table, leaky, schema=schema, checks=["identifier_leak"])}
    assert results["identifier_leak"].score == 43 and not results["identifier_leak"].passed


def test_checks_that_need_a_holdout_are_skipped_without_one(adult):
    results = {r.name: r for r in evaluate_frames(adult, adult.sample(500, seed=1))}
    assert results["dcr_share"].details == {"skipped": True} and results["dcr_share"].passed


def test_dcr_ratio_compares_exact_matches_where_rows_repeat(adult):
    # 40% of real rows equal another on these columns, so the 5th-percentile distance is 0 for any table.
    table = adult.select("workclass", "education", "marital-status", "occupation", "race", "sex", "income")
    train, holdout, unseen = table.head(3000), table.slice(3000, 500), table.tail(500)
    schema = infer_schema(train)

    def dcr_ratio(synthetic: pl.DataFrame):
        return evaluate_frames(train, synthetic, holdout=holdout, schema=schema, checks=["dcr_ratio"])[0]

    fair, copied = dcr_ratio(unseen), dcr_ratio(train.sample(500, seed=1))
    assert fair.details["holdout_p5"] == 0 and fair.passed and 0.9 < fair.score < 1.2
    assert copied.score < fair.score - 0.15 and "rows repeat" in copied.summary


# --- detection: a classifier two-sample test that sees what a linear model cannot --------------------------------


def test_detection_agrees_with_an_independent_gradient_boosting_c2st_on_the_copulas_adult(adult_full):
    from threadpoolctl import threadpool_limits

    from benchmarks.c2st import c2st_auc
    from synthforge.checks.suite import Detection

    train, _, synthetic, schema = adult_full
    ours = Detection().run(train, None, synthetic, schema)
    with threadpool_limits(1, user_api="openmp"):
        independent = c2st_auc(train.to_pandas(), synthetic.to_pandas())  # 5-fold, 10,000 rows each
    assert abs(ours.score - independent) < 0.05, (ours.score, independent)
    # the copula breaks Adult's one-to-one pair: the check names it, and fails its gate
    assert {"education", "education-num"} <= set(ours.details["telling"][:2])
    assert not ours.passed and ours.on_fail == "warn"  # a quality gate: it warns unless a recipe says error


def test_detection_sees_a_broken_pair_that_the_logistic_detector_misses(adult):
    from synthforge.checks.suite import Detection

    schema = infer_schema(adult)
    real, other = adult.head(2000), adult.tail(2000)
    # every column's own distribution intact; only education no longer goes with education-num
    broken = other.with_columns(pl.col("education").shuffle(seed=0))
    strong = Detection().run(real, None, broken, schema)
    linear = Detection({"model": "logistic"}).run(real, None, broken, schema)
    assert strong.score > 0.9 and not strong.passed, strong.summary
    assert linear.score < 0.6, linear.summary
    assert set(strong.details["telling"]) == {"education", "education-num"}, strong.details["columns"]


def test_detection_of_fresh_real_rows_is_near_one_half_and_names_no_column(adult):
    from synthforge.checks.suite import Detection

    holdout = pl.read_csv(Path(__file__).parent / "data" / "adult_holdout_1500.csv")
    result = Detection().run(adult, None, holdout, infer_schema(adult))
    assert result.score < 0.56 and result.passed, result.summary
    assert result.details["telling"] == [] and result.details["rows"] == 1500 and result.details["folds"] == 5


def test_detection_of_copied_rows_falls_below_one_half_and_is_not_folded_into_a_tell(adult):
    from synthforge.checks.suite import Detection

    # each fold learns "this row is synthetic" from a copy it saw, and gets its real twin wrong
    result = Detection().run(adult.head(1500), None, adult.head(1500), infer_schema(adult))
    assert result.score < 0.3 and result.passed and "repeat real rows" in result.summary, result.summary


def test_detection_reads_a_wide_table_on_fewer_rows_and_a_many_valued_column_whole():
    import numpy as np

    from synthforge.checks import metrics
    from synthforge.checks.suite import Detection

    assert metrics.detection_rows(15) == 10_000 and metrics.detection_rows(100) == 3_000
    assert metrics.detection_rows(500) == metrics.MIN_DETECTION_ROWS
    rng = np.random.default_rng(0)

    def table(rows: int = 1500) -> pl.DataFrame:
        # 400 distinct codes: more than gradient boosting's 255 categories a feature
        return pl.DataFrame({"code": [f"c{i}" for i in rng.integers(0, 400, rows)],
                             **{f"x{i}": rng.normal(size=rows) for i in range(39)}})

    real = table()
    result = Detection().run(real, None, table(), infer_schema(real))
    assert result.details["shuffled_folds"] == 2 and len(result.details["columns"]) == 40
    assert result.score < 0.6 and result.details["telling"] == [], result.summary
    # codes beyond the 254 most frequent are one category, not missing: a table of only those is told apart
    rare = table().with_columns(pl.lit("never-seen").alias("code"))
    assert Detection().run(real, None, rare, infer_schema(real)).details["telling"] == ["code"]


# --- accuracy: mostlyai-qa's 1- and 2-column accuracy, the holdout beside it ------------------------------------


def test_accuracy_of_fresh_real_rows_reaches_the_holdouts_ceiling_and_a_broken_pair_is_named(adult):
    from synthforge.checks.suite import Accuracy

    schema = infer_schema(adult)
    train, holdout, fresh = adult.head(2000), adult.slice(2000, 1000), adult.tail(1000)
    real = Accuracy().run(train, holdout, fresh, schema)
    assert abs(real.score - real.details["holdout"]["overall"]) < 0.01 and real.passed, real.summary
    broken = fresh.with_columns(pl.col("education").shuffle(seed=0))
    result = Accuracy().run(train, holdout, broken, schema)
    assert result.details["worst"] == "education × education-num", result.summary
    pair = result.details["bivariate"]["education × education-num"]
    assert pair["synthetic"] < 0.5 < 0.9 < pair["holdout"]
    assert abs(result.details["univariate"]["education"]["synthetic"] - real.details["univariate"]["education"][
        "synthetic"]) < 1e-9  # one column's own distribution is untouched


def test_accuracy_warns_on_output_far_below_the_holdouts(adult):
    from synthforge.checks.suite import Accuracy

    schema = infer_schema(adult)
    train, holdout = adult.head(3000), adult.tail(1000)
    flat = holdout.with_columns(pl.col("age") * 0 + 17, pl.lit("Never-married").alias("marital-status"),
                                pl.lit("Doctorate").alias("education"), pl.col("hours-per-week") * 0 + 99)
    result = Accuracy().run(train, holdout, flat, schema)
    assert not result.passed and result.on_fail == "warn"
    assert result.minimum == pytest.approx(result.details["holdout"]["overall"] - 0.1)
    without_holdout = Accuracy().run(train, None, flat, schema)
    assert without_holdout.minimum is None and "holdout" not in without_holdout.details
