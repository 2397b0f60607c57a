from __future__ import annotations

import json
import re

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
