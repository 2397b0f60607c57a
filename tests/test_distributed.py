"""Data-parallel training on Ray Train: two local workers train one model, reproducibly; a killed worker resumes.

The first test (a recipe with ``generator.workers: 2`` on a streamed source, stopped by its time budget) and
the second (3k Adult rows, ten epochs: three Ray Train runs and a restart, about two minutes, marked
``ray_train``) both run in CI; ``scripts/test -m "not ray_train"`` leaves the second out on a laptop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from synthforge.data.schema import infer_schema
from synthforge.generator import FitContext

from .conftest import require_module

require_module("ray.train")
torch = require_module("torch")
autoregressive = require_module("synthforge_autoregressive")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def _fit(adult, storage: Path, *, workers: int, epochs: int, seed: int = 11):
    from synthforge_autoregressive.model import AutoregressiveGenerator

    rows = adult.head(3000)
    generator = AutoregressiveGenerator({"epochs": epochs, "batch_size": 300, "adapt_to_table": False})
    context = FitContext(seed=seed, device="cpu", workers=workers, train_storage=str(storage), threads_per_worker=1,
                         log=print)
    generator.fit(rows, infer_schema(rows), context)
    return generator


def _weights(generator) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in generator.network_.parameters()])


def _train_workers() -> list[int]:
    listed = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listed.splitlines() if "RayTrainWorker" in line
            and "ps -eo" not in line]


def test_a_recipe_trains_on_two_ray_workers_from_rows_streamed_from_disk(adult, tmp_path: Path, ray_cluster):
    """generator.workers: 2 from a recipe, the rows streamed from disk (the encoded rows file read by both
    workers), checkpoints where the recipe says, and max_training_time honoured on every worker at once."""
    import json

    import yaml

    from synthforge.engine import run

    adult.write_parquet(tmp_path / "adult.parquet")
    recipe = {"name": "two-workers", "seed": 5,
              "source": {"path": "adult.parquet", "streaming": True, "sample_rows": 2_000, "chunk_rows": 1_000},
              "generator": {"name": "autoregressive", "workers": 2, "threads": 1, "checkpoint_path": "checkpoints",
                            "params": {"epochs": 6, "batch_size": 128, "adapt_to_table": False,
                                       "max_training_time": 0.001}},
              "output": {"mode": "synthesize", "rows": 1_000, "path": "out"},
              "checks": [{"name": "column_shapes", "min": 0.7}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run(tmp_path / "recipe.yaml")
    history = result.generator.history_
    # the budget passes during the first epoch: both workers stop after it, and the model is that epoch's
    assert [e["epoch"] for e in history.epochs] == [1] and history.out_of_time and history.stopped_early
    assert result.rows["synthetic"] == 1_000 and all(check.passed for check in result.checks)
    assert list((tmp_path / "checkpoints").iterdir()), "worker 0 wrote its checkpoints where the recipe said"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["recipe"]["generator"]["workers"] == 2


@pytest.mark.ray_train
def test_two_workers_train_one_model_reproducibly_and_a_killed_worker_resumes_from_the_checkpoint(
        adult, tmp_path: Path, ray_cluster):
    epochs = 10
    first = _fit(adult, tmp_path / "first", workers=2, epochs=epochs)
    assert [e["epoch"] for e in first.history_.epochs] == list(range(1, epochs + 1))

    storage = tmp_path / "killed"
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["generator"] = _fit(adult, storage, workers=2, epochs=epochs)
        except Exception as error:  # reported by the assertions below
            outcome["error"] = error

    thread = threading.Thread(target=fit)
    thread.start()
    deadline = time.monotonic() + 240
    # Ray Train writes its snapshot once a reported checkpoint is registered: the one a restart resumes from.
    while not list(storage.glob("*/checkpoint_manager_snapshot.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _train_workers()
    assert workers, "no Ray Train worker process found to kill"
    os.kill(workers[-1], signal.SIGKILL)
    thread.join(timeout=400)
    assert "error" not in outcome, outcome.get("error")
    killed = outcome["generator"].history_
    assert killed.restarts >= 1 and killed.resumed_after, "the worker group was restarted from a checkpoint"
    assert [e["epoch"] for e in killed.epochs] == list(range(1, epochs + 1)), "every epoch trained once, in order"
    resumed = killed.resumed_after[0]
    assert 1 <= resumed < epochs
    # The same seed and N: the epochs before the kill are the first run's, to the last bit.
    assert killed.epochs[:resumed] == first.history_.epochs[:resumed]
    # After it the optimiser's moments start again (only the weights and the schedule resume): close, not equal.
    assert killed.epochs[-1]["loss"] == pytest.approx(first.history_.epochs[-1]["loss"], rel=0.05)

    # Averaged gradients of half-batches are one process's gradient up to the order of the sums and the noise
    # streams: the losses follow one process's, and the model samples as well (seeds 11-14 alone: 0.11-0.14).
    alone = _fit(adult, tmp_path / "alone", workers=1, epochs=epochs)
    assert first.history_.epochs[-1]["loss"] == pytest.approx(alone.history_.epochs[-1]["loss"], rel=0.05)

    def error(generator) -> float:
        sample = generator.sample(4000, seed=1)
        gaps = []
        for column in ("sex", "race", "relationship"):
            shares = sample[column].value_counts(normalize=True).sort(column)["proportion"].to_numpy()
            real = adult[column].value_counts(normalize=True).sort(column)["proportion"].to_numpy()
            gaps.append(float(np.abs(shares - real).sum()))
        return float(np.mean(gaps))

    assert error(first) <= 1.5 * error(alone) + 0.02
    assert outcome["generator"].sample(500, seed=2).height == 500
