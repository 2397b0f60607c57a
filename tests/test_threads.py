"""Each run takes its share of the cores: the recipe, SYNTHFORGE_THREADS, a worker's division, the affinity."""

from __future__ import annotations

import json
import os
from typing import ClassVar

import numpy as np
import pytest

from synthforge import hookimpl
from synthforge.baseline import GaussianCopula
from synthforge.engine import run
from synthforge.errors import SynthForgeError
from synthforge.jobs.store import JobStore
from synthforge.jobs.worker import Worker
from synthforge.plugins import get_plugin_manager
from synthforge.threads import THREADS_ENV, available_cpus, limited_threads, per_job_threads, thread_share

from .conftest import basic_recipe


class _ThreadRecorder(GaussianCopula):
    """A copula that records, while it fits, the thread limits every library would see."""

    name = "thread_recorder"
    seen: ClassVar[dict[str, object]] = {}

    def _fit(self, data: np.ndarray, context) -> None:
        import torch
        from threadpoolctl import threadpool_info

        type(self).seen = {"omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads(),
                           "pools": {pool["user_api"]: pool["num_threads"] for pool in threadpool_info()}}
        super()._fit(data, context)


class _Plugin:
    @hookimpl
    def synthforge_generators(self):
        return [_ThreadRecorder]


def test_the_share_follows_recipe_then_environment_then_the_cores(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert thread_share() == available_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(THREADS_ENV, "3")
    assert thread_share() == 3
    assert thread_share(5) == 5
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(SynthForgeError, match="SYNTHFORGE_THREADS='zero' is not a whole number"):
        thread_share()


def test_a_worker_divides_the_cores_among_its_concurrent_jobs(monkeypatch):
    monkeypatch.setattr("synthforge.threads.available_cpus", lambda: 8)
    assert [per_job_threads(jobs) for jobs in (1, 2, 3, 8, 80)] == [8, 4, 2, 1, 1]
    monkeypatch.setattr("synthforge.threads.available_cpus", lambda: 1)
    assert per_job_threads(2) == 1


def test_limited_threads_limits_torch_and_blas_and_restores_them(monkeypatch):
    import torch
    from threadpoolctl import threadpool_info

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ


def test_a_run_fits_with_the_recipes_threads_and_records_them(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "2")
    pm = get_plugin_manager(entry_points=False, extra_plugins=[_Plugin()])
    recipe = basic_recipe()
    recipe["generator"] = {"name": "thread_recorder", "threads": 1}
    result = run(write_recipe(recipe), pm=pm)
    assert result.threads == 1
    assert _ThreadRecorder.seen["omp"] == "1" and _ThreadRecorder.seen["torch"] == 1
    assert set(_ThreadRecorder.seen["pools"].values()) == {1}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["threads"] == 1

    del recipe["generator"]["threads"]
    assert run(write_recipe(recipe), pm=pm).threads == 2  # SYNTHFORGE_THREADS


def test_each_job_of_a_worker_gets_the_cores_divided_by_its_concurrency(write_recipe, tmp_path, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr("synthforge.threads.available_cpus", lambda: 6)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job_id = store.submit(write_recipe(basic_recipe(rows=300)))
    Worker(store, concurrency=2, poll_seconds=0.1, log=lambda line: None).run(drain=True)
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["threads"] == 3  # 6 cores, 2 jobs at once
    assert any("CPU thread" in line for _, _, line in store.logs(job_id))
