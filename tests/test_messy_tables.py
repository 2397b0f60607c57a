"""Tables unlike Adult: only numbers, a very wide one, a 0/1 target, a huge category, a repeated header."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from synthforge.checks.metrics import ml_efficacy
from synthforge.data.io import read_table
from synthforge.data.schema import infer_schema
from synthforge.engine import run
from synthforge.errors import DataError


def test_every_default_check_runs_on_a_table_of_only_numbers(pm):
    from synthforge.engine import run_checks

    rng = np.random.default_rng(0)

    def numbers(rows: int) -> pl.DataFrame:
        return pl.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(40)})

    train, holdout, synthetic = numbers(300), numbers(100), numbers(300)
    results = {check.name: check for check in run_checks(None, pm, train, holdout, synthetic, infer_schema(train))}
    assert results["rare_combinations"].score is None and "no categorical" in results["rare_combinations"].summary
    assert results["rare_combinations"].passed and results["exact_copies"].passed
    assert results["dcr_share"].passed and results["membership_inference"].passed  # fresh rows, like a holdout


def test_columns_named_like_a_count_of_values_are_learned_and_checked(tmp_path):
    """``count``, ``value`` and ``n``: what polars names the columns of value_counts, and what real tables call
    a column (a count of items); each used to clash with the counting inside the encoder, the checks or the
    report."""
    rng = np.random.default_rng(1)
    rows = 1_500
    table = pl.DataFrame({"count": rng.poisson(3, rows), "value": rng.choice(["low", "mid", "high"], rows),
                          "n": rng.choice(["a", "b"], rows), "amount": rng.gamma(2.0, 10.0, rows).round(2)})
    table.write_csv(tmp_path / "counts.csv")
    recipe = {"name": "counts", "seed": 1, "source": {"path": "counts.csv"}, "target": "value",
              "generator": {"name": "copula"}, "output": {"mode": "synthesize", "path": "out"}}
    import yaml

    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run(tmp_path / "recipe.yaml")
    synthetic = pl.read_csv(result.dataset_path)
    assert synthetic.columns == table.columns and synthetic.height == rows  # as many rows as the source, by default
    assert {check.name for check in result.checks} >= {"column_shapes", "ml_efficacy", "rare_combinations"}


def test_ml_efficacy_handles_a_feature_with_more_categories_than_the_model_takes_and_a_0_1_target():
    rng = np.random.default_rng(1)
    rows = 3000
    city = np.array([f"c{int(i)}" for i in rng.integers(0, 400, rows)])
    x = rng.normal(size=rows)
    label = (x + (np.char.str_len(city) > 3) + rng.normal(scale=0.5, size=rows) > 0.8).astype(int)
    table = pl.DataFrame({"city": city, "x": x, "label": label})
    schema = infer_schema(table)
    assert schema["label"].kind.numeric and schema["city"].n_unique > 255
    train, holdout = table.head(2000), table.tail(1000)
    result = ml_efficacy(train, holdout, train, schema, "label")
    assert result["metric"] == "roc_auc" and result["real"] > 0.75


def test_a_repeated_column_name_is_refused_with_the_fix(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"names 'a' \(2 times\).*Give each column its own name"):
        read_table(tmp_path / "dup.csv")


def test_ragged_csv_lines_are_refused_with_their_line_numbers_unless_allowed(tmp_path):
    (tmp_path / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5\n7,8,9\n10\n")
    with pytest.raises(DataError, match=r"2 line\(s\) hold another number of fields than the header's 3 "
                                        r"\(line 3: 2, line 5: 1\).*ragged_rows: allow"):
        read_table(tmp_path / "ragged.csv")
    table = read_table(tmp_path / "ragged.csv", ragged_rows="allow")
    assert table.height == 4 and table["c"].null_count() == 2


def test_evaluate_takes_column_kinds_as_a_recipe_does(tmp_path):
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    # 40 codes over 3,000 rows: inferred categorical, so only the override makes them an identifier
    codes = [f"K{int(i):04d}" for i in rng.integers(0, 40, 3000)]
    table = pl.DataFrame({"code": codes, "x": rng.normal(size=3000)})
    table.head(2000).write_csv(tmp_path / "real.csv")
    table.tail(1000).write_csv(tmp_path / "synthetic.csv")

    def evaluate(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "synthforge.cli", "evaluate", str(tmp_path / "real.csv"),
                               str(tmp_path / "synthetic.csv"), *options], capture_output=True, text=True,
                              env=dict(os.environ))  # not the COLUMNS=80 a library leaves in the C environment

    def leak_line(done: subprocess.CompletedProcess) -> str:
        return next(line for line in done.stdout.splitlines() if "identifier_leak" in line)

    assert evaluate("--column", "code=shape").returncode == 2
    inferred = evaluate("--column", "x=continuous")
    assert inferred.returncode == 0, inferred.stdout[-2000:] + inferred.stderr
    assert "no identifier columns" in leak_line(inferred)
    declared = evaluate("--column", "code=identifier", "--column", "x=continuous")
    assert declared.returncode == 3, declared.stderr  # every synthetic code is a real one: the privacy gate fails
    assert "FAIL" in leak_line(declared) and "code: 1000" in leak_line(declared)


def test_the_manifest_records_the_holdout_that_was_used(write_recipe, pm, tmp_path):
    import json

    from .conftest import DATA, basic_recipe

    adult = pl.read_csv(DATA / "adult_4k.csv")
    adult.head(3000).write_csv(tmp_path / "train.csv")
    adult.tail(1000).write_csv(tmp_path / "test.csv")
    recipe = basic_recipe()
    recipe["source"] = {"path": "train.csv"}
    recipe["holdout"] = {"path": "test.csv"}
    result = run(write_recipe(recipe), pm=pm)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["holdout"] == {"path": str(tmp_path / "test.csv"), "rows": 1000}
    assert "fraction" not in manifest["recipe"]["holdout"]
    assert result.rows["training"] == 3000 and result.rows["holdout"] == 1000
