"""Issue 20: dates and times as text, business rules (constraints), profile, personal columns, null patterns.

Real data: recipes/data/seattle-weather/seattle-weather.csv and tests/data/stocks.csv (both from
vega_datasets 0.9.0, MIT; the weather is NOAA's Seattle record, the prices public market data),
copied so that no test downloads anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from synthforge.baseline import GaussianCopula
from synthforge.checks.suite import IdentifierLeak
from synthforge.cli import app
from synthforge.constraints import Constraint, parse_comparison
from synthforge.data.schema import ColumnKind, ColumnOverride, infer_schema, to_internal, to_source
from synthforge.data.temporal import detect_format
from synthforge.engine import run
from synthforge.errors import DataError, RecipeError, SynthForgeError
from synthforge.profile import profile_table
from synthforge.recipe import load_recipe

DATA = Path(__file__).parent / "data"
WEATHER = Path(__file__).parents[1] / "recipes" / "data" / "seattle-weather" / "seattle-weather.csv"


def messy_table(n: int = 600, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    birth = pl.date_range(pl.date(1950, 1, 1), pl.date(2000, 1, 1), "1d", eager=True).sample(
        n, with_replacement=True, seed=seed)
    booked = pl.Series([f"2013-08-{d:02d} {h:02d}:{m:02d}:42" for d, h, m in
                        zip(rng.integers(1, 28, n), rng.integers(0, 23, n), rng.integers(0, 60, n), strict=True)])
    flag = rng.integers(0, 2, n)
    table = pl.DataFrame({
        "dob": birth.dt.strftime("%-m/%-d/%Y"), "booked": booked, "flag": flag,
        "case_no": [f"C{i:05d}" if f else None for i, f in enumerate(flag)],
        "amount": rng.gamma(2, 100, n).round(2), "city": rng.choice(["Paris", "Lyon", "Berlin"], n)})
    released = table["booked"].str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S") + pl.duration(
        hours=pl.Series(rng.integers(1, 48, n)))
    reason = pl.Series(rng.choice(["bail", "served", "dropped"], n)).set(pl.Series(flag == 0), None)
    fee = pl.Series(rng.gamma(3, 50, n).round(0)).set(pl.Series(flag == 0), None)
    table = table.with_columns(reason=reason, fee=fee)
    return table.with_columns(released=released.dt.strftime("%Y-%m-%d %H:%M:%S"),
                              country=pl.col("city").replace({"Paris": "FR", "Lyon": "FR", "Berlin": "DE"}),
                              total=pl.col("amount") + pl.col("flag"))


# --- dates and times -------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "expected", "dtype"), [
    (["1969-04-18", "2001-12-01"], "%Y-%m-%d", pl.Date),
    (["4/18/1969", "12/1/2001"], "%-m/%-d/%Y", pl.Date),
    (["18/04/1969", "01/12/2001"], "%d/%m/%Y", pl.Date),
    (["2013-08-13 06:03:42", "2013-08-14 17:00:00"], "%Y-%m-%d %H:%M:%S", pl.Datetime),
    (["2013-08-13T06:03:42+02:00", "2013-08-14T17:00:00+00:00"], "%Y-%m-%dT%H:%M:%S%:z@+02:00", pl.Datetime),
    (["Jan 1 2000", "Feb 1 2000"], "%b %-d %Y", pl.Date),
    (["06:03:42", "17:00:00"], "%H:%M:%S", pl.Time),
])
def test_text_dates_and_times_are_recognised_with_their_format(values, expected, dtype):
    series = pl.Series("when", values * 10)
    found = detect_format(series)
    assert found is not None and found.format == expected
    parsed = found.parse(series)
    assert parsed.null_count() == 0 and isinstance(parsed.dtype, dtype)


def test_numbers_codes_and_words_are_not_dates():
    for values in (["12", "7"], ["A-12", "B-7"], ["yes", "no"], ["1.5", "2.25"]):
        assert detect_format(pl.Series("x", values * 10)) is None


def test_a_date_column_is_parsed_learned_and_written_back_in_its_own_format():
    table = messy_table()
    schema = infer_schema(table)
    assert schema["dob"].kind == ColumnKind.datetime and schema["dob"].format == "%-m/%-d/%Y"
    assert schema["booked"].step == 1_000_000  # whole seconds
    assert to_source(to_internal(table, schema), schema).equals(table)
    model = GaussianCopula().fit(table, schema)
    synthetic = model.sample(500, seed=1)
    assert synthetic["dob"].str.contains(r"^\d{1,2}/\d{1,2}/\d{4}$").all()
    assert synthetic["booked"].str.contains(r"^2013-0[78]-\d\d \d\d:\d\d:\d\d$").all()  # no microseconds
    from synthforge.checks.builtin import ks_complement
    parsed = to_internal(synthetic, schema)
    real = to_internal(table, schema)
    assert ks_complement(real["dob"], parsed["dob"]) >= 0.9
    assert model.sample(3, conditions={"dob": "1/4/1975"}, seed=2)["dob"].to_list() == ["1/4/1975"] * 3


def test_unreadable_dates_say_how_many_and_show_them_or_are_read_as_missing():
    values = [f"2020-01-{d:02d}" for d in range(1, 29)] * 4 + ["not a date", "31/31/2020"]
    table = pl.DataFrame({"d": values, "x": list(range(len(values)))})
    with pytest.raises(DataError, match=r"2 of 114 values do not read that way.*'not a date', '31/31/2020'"):
        infer_schema(table)
    schema = infer_schema(table, {"d": ColumnOverride(invalid="null")})
    assert schema["d"].kind == ColumnKind.datetime and schema["d"].null_rate == pytest.approx(2 / 114)
    with pytest.raises(DataError, match="none of the date/time formats.*format:"):
        infer_schema(pl.DataFrame({"d": ["soon", "later"] * 20}), {"d": ColumnOverride(kind=ColumnKind.datetime)})
    custom = infer_schema(pl.DataFrame({"d": ["18h03 2020.01.02", "07h00 2021.03.04"] * 10}),
                          {"d": ColumnOverride(kind=ColumnKind.datetime, format="%Hh%M %Y.%m.%d")})
    assert custom["d"].format == "%Hh%M %Y.%m.%d" and custom["d"].dtype.startswith("Datetime")


def test_durations_and_times_of_day_round_trip_through_a_model():
    rng = np.random.default_rng(0)
    table = pl.DataFrame({"wait": pl.Series(rng.integers(60, 7200, 400) * 1_000_000).cast(pl.Duration("us")),
                          "at": pl.Series([f"{h:02d}:{m:02d}:00" for h, m in zip(rng.integers(0, 24, 400),
                                                                                rng.integers(0, 60, 400),
                                                                                strict=True)]),
                          "x": rng.normal(size=400)})
    schema = infer_schema(table)
    assert schema["wait"].kind == ColumnKind.duration and schema["at"].format == "%H:%M:%S"
    synthetic = GaussianCopula().fit(table, schema).sample(200, seed=0)
    assert synthetic.schema["wait"] == pl.Duration("us") and synthetic["at"].str.contains(r"^\d\d:\d\d:00$").all()


# --- constraints ----------------------------------------------------------------------------


def test_rules_are_parsed_not_evaluated():
    frame = pl.DataFrame({"a": [1.0, 5.0, None], "b": [2.0, 4.0, 1.0], "capital-gain": [0, 1, 2]})
    assert Constraint.model_validate("a <= b").holds(frame).to_list() == [True, False, True]  # null passes
    assert Constraint.model_validate("0 <= `capital-gain` <= 1").holds(frame).to_list() == [True, True, False]
    assert Constraint.model_validate("abs(a - b) * 2 + min(a, b) < 5").holds(frame).to_list() == [True, False, True]
    for text in ("__import__('os').system('true')", "a.b <= 1", "a <= b; b", "lambda: 1 < 2", "open('x') < 1"):
        with pytest.raises(ValueError):
            parse_comparison(text)
    with pytest.raises(ValueError, match="exactly one of"):
        Constraint.model_validate({"check": "a < b", "unique": "a"})


def test_a_bad_rule_in_a_recipe_names_its_line(tmp_path):
    (tmp_path / "r.yaml").write_text("source: {path: x.csv}\noutput: {path: out}\nconstraints:\n"
                                     "  - a <= b\n  - open('x') < 1\n")
    with pytest.raises(RecipeError, match=r"r.yaml:5: constraints.1: .*calls open\(\), not one of abs"):
        load_recipe(tmp_path / "r.yaml")


def test_every_kind_of_rule_holds_in_every_sampled_row():
    table = messy_table()
    rules = [Constraint.model_validate(r) for r in (
        "booked <= released", "dob <= '1999-06-30'", "10 <= amount <= 900", {"fixed": ["city", "country"]},
        {"null_together": ["reason", "fee"]}, {"derive": "total = amount + flag"},
        {"unique": "amount"})]
    rules = [rule.fit(table, 5) for rule in rules]
    schema = infer_schema(table).model_copy(update={"constraints": rules})
    unconstrained = to_internal(GaussianCopula().fit(table, infer_schema(table)).sample(2000, seed=3), schema)
    assert Constraint.model_validate("booked <= released").holds(unconstrained).mean() < 0.95  # not for free
    model = GaussianCopula().fit(table, schema)
    synthetic = to_internal(model.sample(2000, seed=3), schema)
    for rule in rules:
        assert rule.holds(synthetic).all(), rule.describe()
    assert model.constraint_redrawn_ > 0
    rebalanced = to_internal(model.sample(300, conditions={"city": "Lyon"}, seed=4), schema)
    assert (rebalanced["country"] == "FR").all() and all(rule.holds(rebalanced).all() for rule in rules)


def test_a_rule_the_model_cannot_keep_is_an_error_naming_it():
    table = messy_table()
    schema = infer_schema(table).model_copy(update={"constraints": [Constraint.model_validate("amount > 1e9")]})
    model = GaussianCopula().fit(table, schema)
    with pytest.raises(SynthForgeError, match=r"keeps breaking the rule 'amount > 1e9'.*kept it in 0.0% of rows"):
        model.sample(50, seed=0)


def test_profile_finds_the_rules_and_its_starter_recipe_runs_as_it_is(tmp_path, monkeypatch):
    messy_table().write_csv(tmp_path / "messy.csv")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    profiled = runner.invoke(app, ["profile", "messy.csv"])
    assert profiled.exit_code == 0, profiled.output
    text = profiled.output
    assert "#   dob                          datetime" in text and "%-m/%-d/%Y" in text
    recipe = yaml.safe_load(text)
    rules = recipe["constraints"]
    assert "booked <= released" in rules and {"fixed": ["city", "country"]} in rules
    assert {"null_together": ["reason", "fee"]} in rules
    assert {"derive": "total = flag + amount"} in rules or {"derive": "total = amount + flag"} in rules
    assert recipe["source"]["columns"]["case_no"] == {"kind": "identifier"}
    (tmp_path / "recipe.yaml").write_text(text)
    validated = runner.invoke(app, ["validate", "recipe.yaml"])
    assert validated.exit_code == 0 and "100.00% of real rows keep it" in validated.output
    ran = runner.invoke(app, ["run", "-q", "recipe.yaml"])
    assert ran.exit_code == 0, ran.output
    output = pl.read_csv(tmp_path / "messy-synthetic" / "data.csv")
    report = (tmp_path / "messy-synthetic" / "report.html").read_text()
    assert "<h2>Source profile</h2>" in report and "%-m/%-d/%Y" in report
    assert "<h2>Constraints</h2>" in report and "<td>booked &lt;= released</td><td>100.00%</td>" in report
    assert output["dob"].str.contains(r"^\d{1,2}/\d{1,2}/\d{4}$").all()
    assert (output["booked"] <= output["released"]).all()  # ISO text sorts as time
    assert not set(output["case_no"].drop_nulls()) & set(messy_table()["case_no"].drop_nulls())
    # a case number is null exactly where the real ones are: when flag is 0
    assert output.filter(pl.col("flag") == 0)["case_no"].null_count() == (output["flag"] == 0).sum()
    assert output.filter(pl.col("flag") == 1)["case_no"].null_count() == 0


def test_a_real_table_with_dates_and_a_rule_profiles_and_runs(tmp_path):
    """Seattle's weather (1,461 days): a date as text and temp_min <= temp_max on every day."""
    table = pl.read_csv(WEATHER)
    found = profile_table(table, path=str(WEATHER))
    assert found.schema["date"].format == "%Y/%m/%d"
    assert [rule.describe() for rule in found.relations] == ["temp_min <= temp_max"]
    from synthforge.profile import starter_recipe

    recipe = yaml.safe_load(starter_recipe(found))
    recipe["output"]["path"] = str(tmp_path / "out")
    result = run(recipe)
    output = pl.read_csv(result.dataset_path)
    assert (output["temp_min"] <= output["temp_max"]).all()
    assert output["date"].str.contains(r"^\d{4}/\d\d/\d\d$").all()
    shapes = next(c for c in result.checks if c.name == "column_shapes")
    assert shapes.details["columns"]["date"] >= 0.95
    stocks = infer_schema(pl.read_csv(DATA / "stocks.csv"))
    assert stocks["date"].format == "%b %-d %Y"


# --- personal columns and identifiers ---------------------------------------------------------


def people(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    first = rng.choice(["James", "Mary", "Ahmed", "Wei", "Sofia", "John", "Linda", "Carlos"], n)
    last = rng.choice(["Smith", "Garcia", "Khan", "Chen", "Rossi", "Brown", "Lee", "Patel"], n)
    return pl.DataFrame({"given": first, "family": last, "contact": [f"p{i}@mail.example" for i in range(n)],
                         "phone_no": [f"+44 20 7946 {i:04d}" for i in range(n)], "age": rng.integers(18, 90, n),
                         "group": rng.choice(["a", "b"], n)})


def test_names_and_contact_details_are_recognised_by_content_and_never_learned():
    schema = infer_schema(people())
    for column in ("given", "family", "contact", "phone_no"):
        assert schema[column].kind == ColumnKind.identifier and schema[column].pii, column
    assert "look like" in schema["family"].note or "name" in schema["family"].note
    assert schema["group"].kind == ColumnKind.categorical and not schema["group"].pii
    cities = pl.DataFrame({"city": ["Boston", "Denver", "Seattle", "Miami", "Austin", "Dallas"] * 20,
                           "x": list(range(120))})
    assert infer_schema(cities)["city"].kind == ColumnKind.categorical


def test_identifier_leak_looks_for_personal_values_in_every_column_whatever_their_kind():
    table = people()
    learned = infer_schema(table, {"given": ColumnOverride(kind=ColumnKind.categorical)})
    assert learned["given"].pii and learned["given"].kind == ColumnKind.categorical
    synthetic = GaussianCopula().fit(table, learned).sample(300, seed=0)
    result = IdentifierLeak().run(table, None, synthetic, learned)
    assert not result.passed and result.details["columns"]["given"] > 0
    moved = synthetic.with_columns(pl.Series("group", table["family"].head(300)))  # a surname under another column
    schema = infer_schema(table)
    result = IdentifierLeak().run(table, None, moved, schema)
    assert not result.passed and result.details["columns"]["family in group"] == 300


def test_every_problem_of_a_recipe_and_its_data_in_one_validate(tmp_path):
    table = pl.DataFrame({"a": [1.0, float("nan"), 2.0] * 2200, "b": [f"v{i % 1100}" for i in range(6600)],
                          "c": [1.0, float("inf"), 2.0] * 2200, "d": list(range(6600))})
    table.write_csv(tmp_path / "bad.csv")
    (tmp_path / "r.yaml").write_text("source: {path: bad.csv}\noutput: {path: out}\n")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "r.yaml")])
    assert isinstance(result.exception, DataError)  # the installed `synthforge` prints it and exits 2
    message = str(result.exception)
    assert message.startswith("3 columns cannot be learned")
    assert all(re.search(f"column '{name}'", message) for name in "abc")


# --- honest checks ------------------------------------------------------------------------------


def test_a_privacy_score_far_on_the_good_side_is_a_quality_warning_not_a_privacy_failure():
    from synthforge.checks.base import Gate
    from synthforge.checks.suite import DCRShare, MembershipInference

    adult = pl.read_csv(DATA / "adult_4k.csv")
    train, holdout = adult.head(3000), adult.tail(1000)
    schema = infer_schema(adult)
    mismatched = holdout.head(600)  # "synthetic" rows that are holdout rows: closer to the holdout than to training
    for check in (DCRShare(), MembershipInference()):
        result = check.run(train, holdout, mismatched, schema)
        assert not result.passed and "far on the good side" in result.summary, check.name
        assert result.minimum is not None and result.score < result.minimum
        assert (result.kind, result.on_fail) == ("quality", "warn")  # issue 40: fidelity, never a privacy failure
        chosen = check.run(train, holdout, mismatched, schema, Gate(min=0.45))  # a recipe's own minimum is its gate
        assert (chosen.kind, chosen.on_fail, chosen.passed) == ("privacy", "error", False)


def test_detection_gates_every_run_without_a_target_and_warns_by_default():
    from synthforge.checks.suite import Detection

    adult = pl.read_csv(DATA / "adult_4k.csv")
    schema = infer_schema(adult)
    broken = adult.head(2000).with_columns(pl.col("age") * 0 + 17, pl.lit("Never-married").alias("marital-status"))
    result = Detection().run(adult.head(2000), None, broken, schema)
    assert not result.passed and result.on_fail == "warn" and result.maximum == 0.9


def test_rebalance_scores_utility_on_the_rows_a_user_trains_on(tmp_path):
    adult = pl.read_csv(DATA / "adult_4k.csv")
    adult.write_csv(tmp_path / "adult.csv")
    recipe = {"source": {"path": str(tmp_path / "adult.csv")}, "generator": {"name": "copula"}, "target": "income",
              "output": {"mode": "rebalance", "column": "income", "path": str(tmp_path / "out")}}
    result = run(recipe)
    efficacy = next(c for c in result.checks if c.name == "ml_efficacy")
    assert efficacy.details["rows_trained_on"] == result.rows["real"] + result.rows["synthetic"]
    assert efficacy.passed


# --- reading and defaults that fit the table ------------------------------------------------------


def test_missing_markers_in_a_column_of_numbers_are_nulls_but_stay_values_elsewhere(tmp_path):
    from synthforge.data.io import read_table

    (tmp_path / "t.csv").write_text("gust,country,code\n12.5,NA,1\nNA,FR,NULL\n3,DE,7\n-,NA,2\n")
    table = read_table(tmp_path / "t.csv")
    assert table.schema["gust"] == pl.Float64 and table["gust"].null_count() == 2
    assert table.schema["code"] == pl.Int64 and table["code"].null_count() == 1
    assert table["country"].to_list() == ["NA", "FR", "DE", "NA"]  # Namibia


def test_profile_reports_no_rule_that_random_pairs_would_keep_too():
    rng = np.random.default_rng(0)
    temp = rng.normal(55, 15, 3000).round(1)
    table = pl.DataFrame({"month": rng.integers(1, 13, 3000), "temp": temp,
                          "dewp": (temp - rng.gamma(2, 4, 3000)).round(1), "precip": rng.gamma(0.3, 0.1, 3000)})
    described = [rule.describe() for rule in profile_table(table).relations]
    assert described == ["dewp <= temp"]  # not month <= temp, nor precip <= month


def test_small_tables_get_more_steps_unless_the_recipe_sets_them():
    from synthforge.nn.params import TrainingParams

    params = TrainingParams()  # 100 epochs of 500 rows: 6,000 steps on a 30,000-row table
    assert params.adapted_to(1168) == {"batch_size": 73, "epochs": 300}  # 6,000 steps would be 375: at most 3×
    assert params.adapted_to(100_000) == {}
    assert TrainingParams(batch_size=500, epochs=100).adapted_to(1168) == {}  # set by the user: kept
    assert TrainingParams(adapt_to_table=False).adapted_to(1168) == {}
    assert TrainingParams(batch_size=256, epochs=20).adapted_to(1000) == {}  # both set by the user
    from synthforge_autoregressive.model import AutoregressiveParams

    # the autoregressive model memorises small tables sooner: at most 100 of its 60 epochs' 180
    assert AutoregressiveParams().adapted_to(768) == {"batch_size": 48, "epochs": 100}
    assert AutoregressiveParams().adapted_to(20_000) == {"epochs": 88}  # 59 × 60 steps in 40 per epoch: below it


def test_a_torch_model_says_what_it_adapted_and_saves_it(tmp_path):
    import synthforge

    cls = synthforge.get_plugin_manager().get_generator("vae")
    lines: list[str] = []
    model = cls({"epochs": 1}).fit(pl.read_csv(DATA / "adult_4k.csv").head(800), None,
                                   synthforge.FitContext(seed=0, log=lines.append))
    assert model.params.epochs == 1 and model.params.batch_size == 50
    assert any("adapted to a 800-row table: batch_size 1000 → 50" in line for line in lines)
    model.save(tmp_path / "m")
    assert cls.load(tmp_path / "m").params.batch_size == 50


def test_an_ordering_of_two_columns_holds_by_construction_not_by_redraws(tmp_path):
    table = messy_table()
    rule = Constraint.model_validate("booked <= released")
    schema = infer_schema(table).model_copy(update={"constraints": [rule]})
    model = GaussianCopula().fit(table, schema)
    assert model.orderings_ == [{"column": "released", "base": "booked", "rule": "booked <= released"}]
    synthetic = to_internal(model.sample(2000, seed=1), schema)
    assert rule.holds(synthetic).all() and model.constraint_redrawn_ == 0
    gap = (synthetic["released"] - synthetic["booked"]).dt.total_hours()
    assert gap.min() >= 1 and gap.max() <= 47  # the real gaps: 1 to 47 hours, learned as such
    with pytest.raises(SynthForgeError, match="learned as its difference from 'booked'.*condition on 'booked'"):
        model.sample(5, conditions={"released": "2013-08-05 10:00:00"})
    model.save(tmp_path / "m")
    assert GaussianCopula.load(tmp_path / "m").sample(50, seed=2).equals(model.sample(50, seed=2))
    with_nulls = table.with_columns(pl.when(pl.col("flag") == 0).then(None).otherwise(pl.col("booked")).alias("booked"))
    assert GaussianCopula().fit(with_nulls, infer_schema(with_nulls).model_copy(
        update={"constraints": [rule]})).orderings_ == []  # a base with nulls: kept by redraws instead


def test_imputation_keeps_an_ordering_and_the_given_cells():
    import synthforge

    table = messy_table()
    rule = Constraint.model_validate("booked <= released")
    schema = infer_schema(table).model_copy(update={"constraints": [rule]})
    model = synthforge.get_plugin_manager().get_generator("autoregressive")({"epochs": 2}).fit(table, schema)
    given = pl.Series(np.arange(100) % 2 == 1)
    holes = table.head(100).with_columns(pl.when(given).then(pl.col("released")).otherwise(None).alias("released"))
    filled = model.impute(holes, seed=0)
    assert filled["released"].null_count() == 0
    assert filled["released"].filter(given).equals(table["released"].head(100).filter(given))
    assert rule.holds(to_internal(filled, schema)).all()
