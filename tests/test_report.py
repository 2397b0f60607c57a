from __future__ import annotations

import json
import re

import polars as pl

from synthforge.engine import run

from .conftest import basic_recipe


def test_report_html_is_self_contained_and_has_the_plots(write_recipe, pm, tmp_path):
    run(write_recipe(basic_recipe()), pm=pm)
    page = (tmp_path / "out" / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "no external resources"
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert page.count("<svg") >= 15 + 3  # a plot per column and three correlation heat maps
    assert "column_shapes" in page and "exact_copies" in page
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["columns"]) == 15 and report["correlations"]["columns"][0] == "age"


def test_report_names_the_columns_that_give_synthetic_rows_away_and_the_accuracy_beside_the_holdout(adult, tmp_path):
    from synthforge.data.schema import infer_schema
    from synthforge.evaluation import evaluate_frames

    train, holdout = adult.head(2000), adult.slice(2000, 1000)
    broken = adult.tail(1000).with_columns(pl.col("education").shuffle(seed=0))
    evaluate_frames(train, broken, holdout=holdout, schema=infer_schema(adult), checks=["detection", "accuracy"],
                    out=tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "What gives the synthetic rows away" in page and "<td>education-num</td>" in page
    assert "<h2>Accuracy</h2>" in page and "<td>education × education-num</td>" in page
    checks = {c["name"]: c for c in json.loads((tmp_path / "report.json").read_text())["checks"]}
    assert checks["accuracy"]["details"]["holdout"]["overall"] > checks["accuracy"]["score"]
    assert set(checks["detection"]["details"]["telling"]) == {"education", "education-num"}
