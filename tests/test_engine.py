from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import polars as pl
import pytest

from synthforge import hookimpl
from synthforge.checks.base import Check
from synthforge.engine import run
from synthforge.errors import DataError, GateFailed, RecipeError, SynthForgeError
from synthforge.plugins import get_plugin_manager

from .conftest import DATA, basic_recipe


def test_synthesize_writes_dataset_model_reports_and_manifest(write_recipe, pm, tmp_path):
    result = run(write_recipe(basic_recipe()), pm=pm)
    out = tmp_path / "out"
    assert result.output_path == out and sorted(p.name for p in out.iterdir()) == [
        ".synthforge-output.json", "data.csv", "manifest.json", "model", "report.html", "report.json"]
    data = pl.read_csv(out / "data.csv")
    assert data.height == 1000 and data.columns == pl.read_csv(DATA / "adult_4k.csv").columns
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and len(manifest["source_sha256"]) == 64 and len(manifest["recipe_sha256"]) == 64
    assert {"load", "infer", "split", "fit", "sample", "checks", "report", "save"} <= set(manifest["timings_seconds"])
    assert manifest["versions"]["polars"] == pl.__version__
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1
    names = {c["name"] for c in report["checks"]}
    assert {"column_shapes", "exact_copies", "dcr_share", "membership_inference", "detection"} <= names
    assert not list(tmp_path.glob(".out*")), "no temporary folder is left behind"


def test_the_same_recipe_and_seed_give_the_same_output(write_recipe, pm, tmp_path):
    path = write_recipe(basic_recipe())
    run(path, pm=pm)
    first = (tmp_path / "out" / "data.csv").read_bytes()
    run(path, pm=pm)
    assert (tmp_path / "out" / "data.csv").read_bytes() == first
    recipe = basic_recipe()
    recipe["seed"] = 4
    run(write_recipe(recipe), pm=pm)
    assert (tmp_path / "out" / "data.csv").read_bytes() != first


def test_augment_keeps_the_real_rows_and_labels_the_synthetic_ones(write_recipe, pm, tmp_path):
    run(write_recipe(basic_recipe(mode="augment", rows=500, label_column="is_synthetic", format="parquet")), pm=pm)
    data = pl.read_parquet(tmp_path / "out" / "data.parquet")
    assert data.height == 3000 + 500  # 4,000 rows less the 25% holdout, plus 500
    assert data["is_synthetic"].sum() == 500


def test_rebalance_reaches_the_asked_shares(write_recipe, pm, tmp_path):
    recipe = basic_recipe(mode="rebalance", column="income", shares={"<=50K": 0.5, ">50K": 0.5},
                          label_column="is_synthetic", rows=None)
    run(write_recipe(recipe), pm=pm)
    data = pl.read_csv(tmp_path / "out" / "data.csv")
    share = (data["income"] == ">50K").mean()
    assert abs(share - 0.5) < 0.02
    real = data.filter(~pl.col("is_synthetic"))
    assert (data.filter(pl.col("is_synthetic"))["income"] == ">50K").all() and real.height == 3000


def test_rebalance_synthetic_only_with_uniform_shares(write_recipe, pm, tmp_path):
    recipe = basic_recipe(mode="rebalance", column="race", include_real=False, rows=1000)
    run(write_recipe(recipe), pm=pm)
    counts = pl.read_csv(tmp_path / "out" / "data.csv")["race"].value_counts()
    assert counts.height == 5 and counts["count"].min() >= 199


def test_conditions_mode_fixes_values(write_recipe, pm, tmp_path):
    run(write_recipe(basic_recipe(mode="conditions", conditions={"sex": "Female", "age": 30}, format="ndjson")),
        pm=pm)
    data = pl.read_ndjson(tmp_path / "out" / "data.ndjson")
    assert (data["sex"] == "Female").all() and (data["age"] == 30).all() and data.height == 1000


def test_recipe_references_are_checked_against_the_data(write_recipe, pm):
    with pytest.raises(RecipeError, match="output.column names column 'incme'"):
        run(write_recipe(basic_recipe(mode="rebalance", column="incme")), pm=pm)
    with pytest.raises(RecipeError, match="rebalancing needs a categorical"):
        run(write_recipe(basic_recipe(mode="rebalance", column="age")), pm=pm)


def test_missing_source_file(write_recipe, pm):
    recipe = basic_recipe()
    recipe["source"]["path"] = "nowhere.csv"
    with pytest.raises(DataError, match="nowhere.csv does not exist"):
        run(write_recipe(recipe), pm=pm)


def test_constant_and_all_null_columns_are_written_back_as_they_are(write_recipe, pm, tmp_path):
    table = pl.read_csv(DATA / "adult_4k.csv").with_columns(pl.lit("US").alias("country_code"),
                                                             pl.lit(None, dtype=pl.String).alias("comment"))
    table.write_csv(tmp_path / "bad.csv")
    recipe = basic_recipe()
    recipe["source"]["path"] = "bad.csv"
    lines: list[str] = []
    result = run(write_recipe(recipe), pm=pm, log=lines.append)
    data = pl.read_csv(result.dataset_path)
    assert (data["country_code"] == "US").all() and data["comment"].null_count() == data.height
    assert any("'country_code': constant, 'US' in every row" in line for line in lines)
    recipe["source"]["drop"] = ["comment", "country_code"]  # the recipe saying otherwise
    assert "comment" not in pl.read_csv(run(write_recipe(recipe), pm=pm).dataset_path).columns


def test_identifiers_never_reach_the_output_even_in_augment(write_recipe, pm, tmp_path):
    table = pl.read_csv(DATA / "adult_4k.csv").with_row_index("case_number", offset=70000).with_columns(
        pl.format("{} {}", pl.col("occupation"), pl.col("case_number")).alias("full_name"))
    table.write_csv(tmp_path / "people.csv")
    recipe = basic_recipe(mode="augment", rows=300)
    recipe["source"]["path"] = "people.csv"
    run(write_recipe(recipe), pm=pm)
    data = pl.read_csv(tmp_path / "out" / "data.csv")
    for column in ("full_name", "case_number"):
        assert not set(data[column].drop_nulls().to_list()) & set(table[column].drop_nulls().to_list())
    assert data["full_name"].drop_nulls().str.starts_with("syn_").all()


class _Memorizer:
    """A 'generator' that returns training rows: what privacy gates exist to stop."""

    @hookimpl
    def synthforge_generators(self):
        from synthforge.baseline import GaussianCopula

        class Memorizer(GaussianCopula):
            name = "memorizer"

            def _fit(self, data, context):
                super()._fit(data, context)
                self.rows_ = data

            def _sample(self, n, conditions, rng):
                return self.rows_[rng.integers(0, len(self.rows_), n)]

        return [Memorizer]


def test_a_memorizing_generator_fails_the_privacy_gate_and_writes_no_dataset(write_recipe, tmp_path):
    pm = get_plugin_manager(entry_points=False, extra_plugins=[_Memorizer()])
    recipe = basic_recipe()
    recipe["generator"]["name"] = "memorizer"
    with pytest.raises(SynthForgeError, match="keeps reproducing rare training rows"):
        run(write_recipe(recipe), pm=pm)  # sampling stops it first
    assert not list(tmp_path.glob("*out*"))

    recipe["output"]["protect_rows_below"] = False  # `off`: and without that, the gates do
    with pytest.raises(GateFailed) as error:
        run(write_recipe(recipe), pm=pm)
    assert re.search(r"privacy check .exact_copies. scored (1|0\.9[0-9]+), outside its gate ≤ 0", str(error.value))
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "out.failed").iterdir()) == [".synthforge-output.json", "report.html",
                                                                          "report.json"]
    assert not list(tmp_path.glob(".out*"))


def test_a_warn_gate_lets_the_run_finish(write_recipe, pm, tmp_path):
    recipe = basic_recipe()
    recipe["checks"] = [{"name": "column_shapes", "min": 0.9999, "on_fail": "warn"}]
    result = run(write_recipe(recipe), pm=pm)
    assert not result.checks[0].passed and (tmp_path / "out" / "data.csv").exists()


def test_lifecycle_hooks_fire_with_the_run(write_recipe):
    events = []

    class Tracker:
        @hookimpl
        def synthforge_run_started(self, run):
            events.append(("started", run.seed))

        @hookimpl
        def synthforge_run_finished(self, run, result):
            events.append(("finished", result.status))

    pm = get_plugin_manager(entry_points=False, extra_plugins=[Tracker()])
    run(write_recipe(basic_recipe()), pm=pm)
    assert events == [("started", 3), ("finished", "succeeded")]


def test_an_in_test_check_plugin_is_used_by_a_recipe(write_recipe, tmp_path):
    class RowCount(Check):
        name = "row_count"

        def measure(self, train, holdout, synthetic, schema):
            return float(synthetic.height), f"{synthetic.height} rows", {}

    class Plugin:
        @hookimpl
        def synthforge_checks(self):
            return [RowCount]

    pm = get_plugin_manager(entry_points=False, extra_plugins=[Plugin()])
    recipe = basic_recipe()
    recipe["checks"] = [{"name": "row_count", "min": 1000, "max": 1000}]
    result = run(write_recipe(recipe), pm=pm)
    assert [(c.name, c.score, c.passed) for c in result.checks] == [
        ("row_count", 1000.0, True), ("exact_copies", 0.0, True), ("identifier_leak", 0.0, True)]


def test_sigkill_mid_sample_leaves_nothing_at_the_final_path(write_recipe, tmp_path):
    path = write_recipe(basic_recipe(rows=3_000_000, batch_size=20_000))
    script = textwrap.dedent(f"""
        from synthforge.engine import run
        from synthforge.plugins import get_plugin_manager
        run({str(path)!r}, pm=get_plugin_manager(entry_points=False))
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = list(tmp_path.glob(".out.tmp-*/data.csv"))
            if partial and partial[0].stat().st_size > 1_000_000:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never started writing")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out.tmp-*")), "the partial output stays hidden in a temporary folder"

    rerun = basic_recipe(rows=500)
    logged = []
    run(write_recipe(rerun), pm=get_plugin_manager(entry_points=False), log=logged.append)
    assert not list(tmp_path.glob(".out.*")), "the rerun removes what the killed run left"
    assert any("left by a run that was killed" in line for line in logged)


def test_each_check_is_heard_as_it_runs_once_in_the_log_and_in_the_progress_hook(write_recipe, pm):
    events, lines = [], []

    class Watcher:
        @hookimpl
        def synthforge_progress(self, run, stage, done, total):
            if stage == "checks" and total is not None:
                events.append((done, total))

    pm.register(Watcher())
    recipe = basic_recipe()
    recipe["checks"] = [{"name": "column_shapes"}, {"name": "detection", "on_fail": "warn"}, {"name": "validity"}]
    result = run(write_recipe(recipe), pm=pm, log=lines.append)
    total = len(result.checks)  # with the mandatory ones
    assert events == [(done, total) for done in range(total)]
    logged = [line for line in lines if line.startswith("check ")]
    assert [line.split(":")[0] for line in logged] == [f"check {c.name}" for c in result.checks]
