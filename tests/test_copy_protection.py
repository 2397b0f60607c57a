"""Synthetic rows never copy a training row that few training rows share."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import synthforge
from synthforge.engine import run
from synthforge.errors import SynthForgeError
from synthforge.generator import FitContext, Generator
from synthforge.jobs.partitioned import sample_partitioned
from synthforge.seeds import derive_seed
from tests.conftest import ROOT, basic_recipe

CATEGORIES = ["workclass", "education", "marital-status", "race", "sex", "income"]


@pytest.fixture(scope="module")
def categorical(adult) -> pl.DataFrame:
    """Six categorical Adult columns: 686 of their 840 combinations are held by fewer than 5 rows."""
    return adult.select(CATEGORIES)


def copies(synthetic: pl.DataFrame, train: pl.DataFrame, *, rare: bool) -> int:
    counts = train.group_by(train.columns).len()
    wanted = counts.filter((pl.col("len") < 5) if rare else (pl.col("len") >= 5)).drop("len")
    return synthetic.select(train.columns).join(wanted, on=train.columns, how="semi", nulls_equal=True).height


def test_copies_of_rare_rows_are_drawn_again_and_common_rows_kept(categorical):
    unprotected = synthforge.fit(categorical, "copula", seed=0, protect_rows_below=0).sample(5000, seed=1)
    assert copies(unprotected, categorical, rare=True) > 500  # the copula does copy rare rows

    model = synthforge.fit(categorical, "copula", seed=0)
    synthetic = model.sample(5000, seed=1)
    assert synthetic.height == 5000
    assert copies(synthetic, categorical, rare=True) == 0
    assert copies(synthetic, categorical, rare=False) > copies(unprotected, categorical, rare=False)
    assert model.copies_redrawn_ >= copies(unprotected, categorical, rare=True) // 2
    assert synthetic.equals(synthforge.fit(categorical, "copula", seed=0).sample(5000, seed=1))


def test_refused_rows_come_back_in_one_oversampled_draw(categorical, monkeypatch):
    model = synthforge.fit(categorical, "copula", seed=0)
    draws: list[int] = []
    draw = Generator._draw

    def counted(self, n, conditions, rng):
        draws.append(n)
        return draw(self, n, conditions, rng)

    monkeypatch.setattr(Generator, "_draw", counted)
    synthetic = model.sample(5000, seed=1)
    assert synthetic.height == 5000 and copies(synthetic, categorical, rare=True) == 0
    # a fifth of the copula's rows copy a rare one (980 here): drawn again at once with a margin (1,303 rows), not
    # round after round (a fifth of a fifth, ... : six draws)
    assert model.copies_redrawn_ > 500 and len(draws) <= 3 and draws[1] > 1.2 * model.copies_redrawn_


def test_conditions_hold_in_redrawn_rows(categorical):
    model = synthforge.fit(categorical, "copula", seed=0)
    synthetic = model.sample(2000, conditions={"race": "Black"}, seed=3)
    assert (synthetic["race"] == "Black").all() and synthetic.height == 2000
    assert copies(synthetic, categorical, rare=True) == 0 and model.copies_redrawn_ > 0


def test_a_loaded_model_protects_only_when_given_the_training_table(categorical, tmp_path):
    synthforge.fit(categorical, "copula", seed=0).save(tmp_path / "model")
    assert "fnlwgt" not in (tmp_path / "model" / "config.json").read_text()
    loaded = synthforge.load(tmp_path / "model")
    assert copies(loaded.sample(3000, seed=2), categorical, rare=True) > 0
    loaded.protect_rows(categorical)
    assert copies(loaded.sample(3000, seed=2), categorical, rare=True) == 0


class Replayer(Generator):
    """Memorises its training rows: the failure the protection exists to catch."""

    name = "replayer"

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        self.rows_ = data

    def _sample(self, n, conditions, rng):
        return self.rows_[rng.integers(len(self.rows_), size=n)]


class Marginals(Generator):
    """Each column drawn alone from its training values; keeps what its calibration was shown."""

    name = "marginals"

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        self.rows_ = data

    def _sample(self, n, conditions, rng):
        picks = rng.integers(len(self.rows_), size=(n, self.rows_.shape[1]))
        return np.take_along_axis(self.rows_, picks, axis=0)

    def _calibrate_output(self, emitted, context):
        self.emitted_ = self.encoder_.decode(emitted(3000))
        self.redrawn_while_calibrating_ = self.copies_redrawn_


def test_calibration_is_shown_rows_as_a_run_emits_them(categorical):
    model = Marginals().fit(categorical, context=FitContext(seed=4))
    unprotected = Marginals().fit(categorical, context=FitContext(seed=4, protect_rows_below=0))
    assert copies(unprotected.emitted_, categorical, rare=True) > 100  # independent columns make rare rows
    assert copies(model.emitted_, categorical, rare=True) == 0 and model.emitted_.height == 3000
    assert model.redrawn_while_calibrating_ > 100
    assert model.copies_redrawn_ == 0, "the counters report the user's calls to sample, not the fit's"
    assert model.emitted_.equals(Marginals().fit(categorical, context=FitContext(seed=4)).emitted_)


def test_a_model_that_memorised_its_rows_is_stopped_with_a_reason(adult):
    model = Replayer().fit(adult)
    with pytest.raises(SynthForgeError, match="keeps reproducing rare training rows.*memorised"):
        model.sample(100, seed=0)
    assert Replayer().fit(adult, context=FitContext(protect_rows_below=0)).sample(100, seed=0).height == 100


def test_a_run_reports_redrawn_copies_and_writes_none(write_recipe, tmp_path, categorical):
    train, holdout = categorical.head(3000), categorical.tail(1000)
    train.write_csv(tmp_path / "train.csv")
    holdout.write_csv(tmp_path / "holdout.csv")
    recipe = basic_recipe(rows=3000, format="parquet")
    recipe["source"] = {"path": "train.csv"}
    recipe["holdout"] = {"path": "holdout.csv"}
    result = run(write_recipe(recipe))
    assert result.rows["copies_redrawn"] > 0
    assert copies(pl.read_parquet(result.dataset_path), train, rare=True) == 0
    protected_share = {c.name: c.score for c in result.checks}["rare_combinations"]

    recipe["output"]["protect_rows_below"] = False  # YAML: off
    recipe["checks"] = [{"name": "rare_combinations", "on_fail": "warn"}]
    result = run(write_recipe(recipe, "off.yaml"))
    assert result.checks[0].score > protected_share  # unprotected, the copula reproduces unique records more often
    assert result.rows["copies_redrawn"] == 0
    assert copies(pl.read_parquet(result.dataset_path), train, rare=True) > 0


def test_sample_command_protects_the_rows_of_a_given_table(categorical, tmp_path):
    synthforge.fit(categorical, "copula", seed=0).save(tmp_path / "model")
    categorical.write_parquet(tmp_path / "train.parquet")
    for extra, protected in (([], False), (["--protect-rows-of", str(tmp_path / "train.parquet")], True)):
        out = tmp_path / f"out-{protected}.parquet"
        done = subprocess.run([sys.executable, "-m", "synthforge.cli", "sample", str(tmp_path / "model"), "-n", "3000",
                               "--out", str(out), *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert (copies(pl.read_parquet(out), categorical, rare=True) == 0) == protected
        assert ("drawn again" in done.stdout) == protected


def test_partitions_protect_the_rows_of_a_given_table_as_one_process_does(categorical, tmp_path):
    synthforge.fit(categorical, "copula", seed=0).save(tmp_path / "model")
    categorical.write_parquet(tmp_path / "train.parquet")
    sample_partitioned(tmp_path / "model", 3000, tmp_path / "parts", partitions=2, batch_size=1500, seed=5,
                       executor="local", protection=(tmp_path / "train.parquet", 5))
    parts = pl.concat([pl.read_parquet(part) for part in sorted((tmp_path / "parts").glob("part-*.parquet"))])
    assert parts.height == 3000 and copies(parts, categorical, rare=True) == 0

    model = synthforge.load(tmp_path / "model").protect_rows(categorical)
    one = pl.concat([model.sample(1500, seed=derive_seed(5, offset)) for offset in (0, 1500)])
    assert parts.equals(one)


def test_a_panels_cells_are_not_refused_as_records_unique_on_them(write_recipe, tmp_path, adult):
    """Gapminder's country × year panel: every record is one cell of the grid, unique on the two by design. Refusing
    every training cell (as records of people unique on what can be known are) would leave only the holdout's
    cells: each row drawn about five times, the output leaning to the rows held out, and its privacy checks failing
    for being implausibly close to the holdout."""
    observations = ROOT / "recipes" / "data" / "gapminder" / "observations.csv"
    (tmp_path / "observations.csv").write_bytes(observations.read_bytes())
    recipe = basic_recipe(rows=1000, format="parquet")
    recipe["source"] = {"path": "observations.csv"}
    result = run(write_recipe(recipe))
    assert result.dataset_path.exists()  # every gate passed
    scores = {check.name: check for check in result.checks}
    assert scores["rare_combinations"].details["grid_fill"] == pytest.approx(0.75, abs=0.01)  # a quarter held out
    assert 0.4 <= scores["dcr_share"].score <= 0.6 and scores["membership_inference"].score >= 0.4
    assert result.rows["copies_redrawn"] < 100  # whole rows are still protected (the numbers are continuous)

    table = pl.read_csv(observations)
    train = table.sample(fraction=0.8, seed=0)
    model = synthforge.fit(train, "copula", seed=0)
    assert model._protected_records is None and model._protected is not None
    model.protect_streamed(lambda: train.iter_slices(500))  # a streamed fit's counting decides the same
    assert model._protected_records is None and model._protected is not None
    schema = model.schema_
    cells = train.select("country", "year").n_unique()
    assert schema.quasi_identifier_grid(train.height, cells) == pytest.approx(train.height / (142 * 12))
    assert schema.quasi_identifier_grid(train.height, cells - 1) is None  # one cell held twice: no key
    sparse = synthforge.fit(adult, "copula", seed=0)  # 4,000 people, 3,045 unique on 13 columns: kept protected
    assert sparse._protected_records is not None
