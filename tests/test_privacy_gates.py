"""The privacy gates run in every run: a recipe turns one off only by name, and the report says so in red."""

from __future__ import annotations

import json

import pytest

from synthforge.engine import run
from synthforge.errors import RecipeError
from synthforge.recipe import load_recipe

from .conftest import basic_recipe


def _check_names(result) -> list[str]:
    return [check.name for check in result.checks]


def test_a_recipe_listing_only_a_quality_check_still_runs_the_privacy_gates(write_recipe, pm, tmp_path):
    recipe = basic_recipe()
    recipe["checks"] = [{"name": "column_shapes"}]
    result = run(write_recipe(recipe), pm=pm)
    assert _check_names(result) == ["column_shapes", "exact_copies", "identifier_leak"]
    assert result.privacy_off == []
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"]["copies_redrawn"] == result.rows["copies_redrawn"]  # the redraws are on record
    assert {c["name"] for c in manifest["checks"]} >= {"exact_copies", "identifier_leak"}
    assert manifest["privacy_turned_off"] == []
    assert "class='privacy-off'" not in (tmp_path / "out" / "report.html").read_text()


def test_a_listed_privacy_gate_keeps_the_recipes_gate_and_is_not_run_twice(write_recipe, pm):
    recipe = basic_recipe()
    recipe["checks"] = [{"name": "exact_copies", "max": 0.5}]
    result = run(write_recipe(recipe), pm=pm)
    assert _check_names(result) == ["exact_copies", "identifier_leak"]
    assert result.checks[0].maximum == 0.5


def test_only_an_explicit_off_turns_a_gate_off_and_the_report_says_so_in_red(write_recipe, pm, tmp_path):
    text = """
seed: 3
source: {path: adult.csv}
holdout: 0.25
output: {mode: synthesize, rows: 500, path: out, protect_rows_below: off}
checks:
  - {name: column_shapes}
  - {name: exact_copies, enabled: off}
  - {name: identifier_leak, on_fail: warn}
"""
    result = run(write_recipe({}, text=text), pm=pm)
    assert _check_names(result) == ["column_shapes", "identifier_leak"]
    assert result.rows["copies_redrawn"] == 0
    assert result.privacy_off == [
        "the exact_copies gate is turned off (checks: exact_copies enabled: off)",
        "the identifier_leak gate only warns (checks: identifier_leak on_fail: warn)",
        "copies of rare training rows are not drawn again (output.protect_rows_below: off)",
    ]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["privacy_turned_off"] == result.privacy_off
    page = (tmp_path / "out" / "report.html").read_text()
    assert "class='privacy-off'" in page and "exact_copies gate is turned off" in page
    assert ".privacy-off" in page and "#c53030" in page  # the box's red style ships in the page


@pytest.mark.parametrize("value", ["0", "-1", "true", "'no'"])
def test_copy_protection_is_not_turned_off_by_a_zero_or_a_typo(write_recipe, value):
    text = f"source: {{path: adult.csv}}\noutput: {{path: out, protect_rows_below: {value}}}\n"
    with pytest.raises(RecipeError, match=r"recipe.yaml:2: output.protect_rows_below: .*`off` to turn copy "
                                          r"protection off"):
        load_recipe(write_recipe({}, text=text))


def test_a_failed_gate_exits_3_and_bad_input_2(write_recipe, tmp_path):
    import subprocess
    import sys

    recipe = basic_recipe()
    recipe["checks"] = [{"name": "column_shapes", "min": 0.9999, "on_fail": "error"}]  # a gate no copula reaches
    failed = subprocess.run([sys.executable, "-m", "synthforge.cli", "run", str(write_recipe(recipe))],
                            capture_output=True, text=True)
    assert failed.returncode == 3 and "failed its gates" in failed.stderr
    recipe["output"]["rows"] = -1
    bad = subprocess.run([sys.executable, "-m", "synthforge.cli", "run", str(write_recipe(recipe, "bad.yaml"))],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "output.rows" in bad.stderr
