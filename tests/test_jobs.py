"""Jobs: the store, real worker processes, leases and SIGKILL, schedules, retries, PostgreSQL and Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from synthforge.errors import SynthForgeError
from synthforge.jobs.store import JobStore, next_cron_time
from synthforge.jobs.worker import result_files

from .conftest import DATA

# A plugin loaded with --plugins-dir: a copula that can be slow or crash on purpose, and run hooks that
# leave a trace, as a tracker plugin would.
TEST_PLUGIN = '''
import os, time
from pathlib import Path
import synthforge
from synthforge.baseline import CopulaParams, GaussianCopula


class SlowParams(CopulaParams):
    fit_seconds: float = 0.0
    crash_once_marker: str | None = None


class SlowCopula(GaussianCopula):
    name = "slow_copula"
    Params = SlowParams

    def _fit(self, data, context):
        if os.environ.get("SYNTHFORGE_TEST_PIDS"):
            with open(os.environ["SYNTHFORGE_TEST_PIDS"], "a") as handle:
                handle.write(f"{os.getpid()}\\n")
        marker = self.params.crash_once_marker
        if marker and not Path(marker).exists():
            Path(marker).write_text("crashed once")
            raise RuntimeError("a crash, on purpose, the first time")
        time.sleep(self.params.fit_seconds)
        super()._fit(data, context)


@synthforge.hookimpl
def synthforge_generators():
    return [SlowCopula]


@synthforge.hookimpl
def synthforge_run_started(run):
    _trace(f"started {run.recipe.name} {run.output_path.name}")


@synthforge.hookimpl
def synthforge_run_finished(run, result):
    _trace(f"finished {run.recipe.name} {run.output_path.name} {result.status}")


def _trace(line):
    path = os.environ.get("SYNTHFORGE_TEST_HOOKS")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\\n")
'''


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch):
    """A folder with the plugin, 4k Adult rows, a recipe, and the environment the workers inherit."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_copula.py").write_text(TEST_PLUGIN)
    (tmp_path / "adult.csv").write_bytes((DATA / "adult_4k.csv").read_bytes())
    monkeypatch.setenv("SYNTHFORGE_TEST_HOOKS", str(tmp_path / "hooks.log"))
    monkeypatch.setenv("SYNTHFORGE_TEST_PIDS", str(tmp_path / "pids.log"))
    return tmp_path


def write_recipe(folder: Path, name: str = "job", *, fit_seconds: float = 0.0, marker: str | None = None,
                 checks: list | None = None) -> Path:
    recipe = {"name": name, "seed": 1, "source": {"path": "adult.csv"}, "holdout": 0.25,
              "generator": {"name": "slow_copula", "params": {"fit_seconds": fit_seconds,
                                                              "crash_once_marker": marker}},
              "output": {"mode": "synthesize", "rows": 2000, "path": f"out/{name}", "format": "parquet"},
              "checks": checks if checks is not None else [{"name": "exact_copies"}, {"name": "column_shapes"}]}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-m", "synthforge.cli", *args], cwd=cwd, capture_output=True,
                               text=True, timeout=300)
    if check and completed.returncode != 0:
        raise AssertionError(f"synthforge {' '.join(args)} exited {completed.returncode}:\n{completed.stderr}")
    return completed


def start_worker(store: str, cwd: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "synthforge.cli", "worker", "--store", store,
                             "--plugins-dir", str(cwd / "plugins"), "--poll", "0.2", *options],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def hooks(workspace: Path) -> list[str]:
    path = workspace / "hooks.log"
    return path.read_text().splitlines() if path.exists() else []


# --- the store on its own ----------------------------------------------------------------------


def test_store_migrates_once_and_runs_a_job_through_its_states(store_url: str):
    store = JobStore(store_url)
    assert store.migrate() == 3 and JobStore(store_url).migrate() == 3
    job_id = store.submit("/r.yaml", {"seed": 3})
    job = store.claim("w1", lease_seconds=30)
    assert job is not None and job.id == job_id and job.status == "running" and job.attempts == 1
    assert job.params == {"seed": 3}
    assert store.claim("w2", lease_seconds=30) is None, "a running job is not claimed twice"
    assert store.heartbeat(job_id, "w1", 30) and not store.heartbeat(job_id, "w2", 30)
    assert store.complete(job, "w1", {"dataset_path": "/x"})
    done = store.get(job_id)
    assert done.status == "succeeded" and done.result == {"dataset_path": "/x"} and done.finished_at
    assert [line for _, _, line in store.logs(job_id)][-1] == "succeeded"


def test_claims_are_exclusive_across_concurrent_claimers(store_url: str):
    store = JobStore(store_url)
    ids = [store.submit(f"/r{i}.yaml") for i in range(40)]
    claimed: dict[str, list[int]] = {}

    def claim_all(owner: str) -> None:
        mine = JobStore(store_url)  # its own connections, as another worker would have
        claimed[owner] = []
        while (job := mine.claim(owner, 60)) is not None:
            claimed[owner].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for jobs in claimed.values() for job_id in jobs]
    assert sorted(every) == ids, "each job claimed exactly once"


def test_an_expired_lease_requeues_with_backoff_then_fails_when_attempts_run_out(store_url: str):
    store = JobStore(store_url)
    job_id = store.submit("/r.yaml", max_attempts=2)
    store.claim("dead-worker", lease_seconds=0.01)
    time.sleep(0.05)
    assert store.recover_expired() == [job_id]
    job = store.get(job_id)
    assert job.status == "queued" and "lease of dead-worker expired" in job.error
    time.sleep(0.05)
    store.claim("dead-again", lease_seconds=0.01)
    time.sleep(0.05)
    store.recover_expired()
    assert store.get(job_id).status == "failed"


def test_cron_is_read_in_its_time_zone_and_bad_input_is_explained():
    midnight_utc = 1_767_225_600.0  # 2026-01-01 00:00 UTC
    assert next_cron_time("0 2 * * *", "UTC", midnight_utc) == midnight_utc + 2 * 3600
    assert next_cron_time("0 2 * * *", "Europe/Paris", midnight_utc) == midnight_utc + 1 * 3600
    with pytest.raises(SynthForgeError, match="bad cron expression"):
        next_cron_time("every day", "UTC", midnight_utc)
    with pytest.raises(SynthForgeError, match="unknown time zone"):
        next_cron_time("0 2 * * *", "Mars/Olympus", midnight_utc)


def test_a_schedule_enqueues_each_due_time_once_even_with_two_callers(tmp_path: Path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    schedule_id = store.add_schedule("/r.yaml", "* * * * * */2")  # every 2 seconds (croniter's seconds field)
    due = store.list_schedules()[0].next_run_at
    other = JobStore(store.url)
    created = store.enqueue_due(now=due + 0.1) + other.enqueue_due(now=due + 0.1)
    assert len(created) == 1
    job = store.get(created[0])
    assert job.schedule_id == schedule_id and job.run_after == due
    assert store.list_schedules()[0].next_run_at == due + 2


# --- real worker processes -----------------------------------------------------------------


def test_a_submitted_job_runs_in_a_worker_with_hooks_logs_and_results(workspace: Path, store_url: str):
    recipe = write_recipe(workspace, "first")
    job_id = int(cli("jobs", "submit", str(recipe), "--store", store_url, "--plugins-dir", "plugins",
                     "--param", "output.rows=1500", cwd=workspace).stdout.split()[-1])
    worker = start_worker(store_url, workspace, "--drain")
    assert worker.wait(timeout=300) == 0, worker.stdout.read()
    shown = json.loads(cli("jobs", "show", str(job_id), "--json", "--store", store_url, cwd=workspace).stdout)
    assert shown["status"] == "succeeded" and shown["attempts"] == 1
    assert pl.read_parquet(shown["result"]["dataset_path"]).height == 1500, "the --param override was applied"
    assert {c["name"] for c in shown["result"]["checks"]} == {"exact_copies", "column_shapes", "identifier_leak"}
    logs = cli("jobs", "logs", str(job_id), "--store", store_url, cwd=workspace).stdout
    assert "claimed by" in logs and "fitting" in logs and "succeeded" in logs
    assert hooks(workspace) == ["started first first", "finished first first succeeded"]
    listed = cli("jobs", "list", "--store", store_url, cwd=workspace).stdout
    assert "succeeded" in listed and "first.yaml" in listed


def test_a_bad_recipe_is_refused_at_submit_time(workspace: Path, tmp_path: Path):
    recipe = write_recipe(workspace, "bad")
    completed = cli("jobs", "submit", str(recipe), "--store", f"sqlite:///{tmp_path / 'j.db'}", "--plugins-dir",
                    "plugins", "--param", "generator.params.fit_secnds=1", cwd=workspace, check=False)
    assert completed.returncode == 2 and "fit_secnds" in completed.stderr


def test_sigkill_of_a_worker_mid_job_is_survived_with_nothing_lost_or_duplicated(workspace: Path):
    store_url = f"sqlite:///{workspace / 'jobs.db'}"
    store = JobStore(store_url)
    job_id = store.submit(write_recipe(workspace, "killed", fit_seconds=4.0))
    first = start_worker(store_url, workspace, "--lease", "2")
    wait_for(lambda: (workspace / "pids.log").exists(), what="the job to start fitting")
    child = int((workspace / "pids.log").read_text().split()[0])
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    wait_for(lambda: not _alive(child), timeout=10, what="the job's process to die with its worker")
    output = workspace / "out" / "killed"
    assert not output.exists(), "a killed job leaves no output that looks complete"
    assert store.get(job_id).status == "running", "the store still believes it runs, until the lease expires"

    second = start_worker(store_url, workspace, "--lease", "2", "--retry-delay", "0.1", "--drain")
    assert second.wait(timeout=300) == 0, second.stdout.read()
    job = store.get(job_id)
    assert job.status == "succeeded" and job.attempts == 2
    assert pl.read_parquet(output / "data.parquet").height == 2000, "the rerun wrote the whole output"
    assert sorted(p.name for p in output.iterdir()) == [".synthforge-output.json", "data.parquet", "manifest.json",
                                                         "model", "report.html", "report.json"]
    lines = [line for _, _, line in store.logs(job_id)]
    assert any("lease of" in line and "expired" in line for line in lines)
    trace = hooks(workspace)
    assert trace.count("started killed killed") == 2 and trace.count("finished killed killed succeeded") == 1
    assert not list(output.parent.glob(".killed.*")), "no hidden staging folder is left beside the output"
    assert not result_files(store, job_id), "no result file is left in the temp folder"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) is dead too.
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_two_workers_never_run_the_same_job(workspace: Path, store_url: str):
    store = JobStore(store_url)
    recipe = write_recipe(workspace, "many", fit_seconds=0.3)
    ids = [store.submit(recipe, {"output.path": f"out/many-{i}"}) for i in range(6)]
    workers = [start_worker(store_url, workspace, "--drain") for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stdout.read()
    assert all(store.get(job_id).status == "succeeded" and store.get(job_id).attempts == 1 for job_id in ids)
    started = [line for line in hooks(workspace) if line.startswith("started")]
    assert sorted(started) == sorted(f"started many many-{i}" for i in range(6)), "each job ran exactly once"
    owners = {line.split("claimed by ")[1].split(" (")[0] for job_id in ids
              for _, _, line in store.logs(job_id) if "claimed by" in line}
    assert len(owners) == 2, "both workers took jobs"


def test_a_crash_is_retried_with_backoff_and_a_gate_failure_is_not(workspace: Path):
    store_url = f"sqlite:///{workspace / 'jobs.db'}"
    store = JobStore(store_url)
    crashing = store.submit(write_recipe(workspace, "flaky", marker=str(workspace / "crashed")))
    gated = store.submit(write_recipe(workspace, "gated",
                                      checks=[{"name": "column_shapes", "min": 1.5, "on_fail": "error"}]))
    worker = start_worker(store_url, workspace, "--retry-delay", "0.5", "--drain")
    assert worker.wait(timeout=300) == 0, worker.stdout.read()
    flaky = store.get(crashing)
    assert flaky.status == "succeeded" and flaky.attempts == 2
    lines = [line for _, _, line in store.logs(crashing)]
    assert any("a crash, on purpose" in line for line in lines), "the traceback is in the log"
    assert any("retrying in 0.5 s" in line for line in lines)
    failed = store.get(gated)
    assert failed.status == "failed" and failed.attempts == 1, "a failed gate is final: a rerun would fail too"
    assert "column_shapes" in failed.error and not (workspace / "out" / "gated").exists()


def test_cancel_a_queued_and_a_running_job_then_retry(workspace: Path):
    store_url = f"sqlite:///{workspace / 'jobs.db'}"
    store = JobStore(store_url)
    slow = store.submit(write_recipe(workspace, "slow", fit_seconds=30.0))
    waiting = store.submit(write_recipe(workspace, "waiting"))
    worker = start_worker(store_url, workspace, "--lease", "1.5")
    wait_for(lambda: store.get(slow).status == "running", what="the slow job to start")
    assert cli("jobs", "cancel", str(waiting), "--store", store_url, cwd=workspace).stdout.strip().endswith(
        "cancelled")
    cli("jobs", "cancel", str(slow), "--store", store_url, cwd=workspace)
    wait_for(lambda: store.get(slow).status == "cancelled", timeout=30, what="the running job to be stopped")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert store.get(waiting).status == "cancelled" and not (workspace / "out" / "slow").exists()
    with pytest.raises(SynthForgeError, match="only failed or cancelled"):
        store.retry(store.submit("/x.yaml"))
    cli("jobs", "retry", str(waiting), "--store", store_url, cwd=workspace)
    again = start_worker(store_url, workspace, "--drain")
    # The third job (/x.yaml) does not exist: it fails, final, without stopping the worker.
    assert again.wait(timeout=300) == 0, again.stdout.read()
    assert store.get(waiting).status == "succeeded"


def test_a_scheduled_job_runs_at_its_time(workspace: Path):
    store_url = f"sqlite:///{workspace / 'jobs.db'}"
    cli("jobs", "submit", str(write_recipe(workspace, "nightly")), "--schedule", "* * * * * */3", "--timezone",
        "Europe/Paris", "--store", store_url, "--plugins-dir", "plugins", cwd=workspace)
    store = JobStore(store_url)
    planned = store.list_schedules()[0].next_run_at
    worker = start_worker(store_url, workspace, "--max-jobs", "2")
    assert worker.wait(timeout=300) == 0, worker.stdout.read()
    runs = sorted(store.list_jobs(), key=lambda job: job.id)
    assert len(runs) >= 2 and all(job.schedule_id == 1 for job in runs)
    assert runs[0].run_after == planned and runs[1].run_after == planned + 3
    # A run due while the worker finished its two may be queued, not started, when it exits.
    started = [job for job in runs if job.started_at is not None]
    assert len(started) >= 2 and all(job.started_at >= job.run_after for job in started), \
        "no run starts before its time"
    assert runs[0].status == "succeeded"


def test_ray_executor_runs_a_recipe(workspace: Path):
    pytest.importorskip("ray")
    store_url = f"sqlite:///{workspace / 'jobs.db'}"
    store = JobStore(store_url)
    job_id = store.submit(write_recipe(workspace, "on-ray"))
    worker = start_worker(store_url, workspace, "--executor", "ray", "--drain")
    assert worker.wait(timeout=300) == 0, worker.stdout.read()
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    assert pl.read_parquet(job.result["dataset_path"]).height == 2000
    assert any("fitting" in line for _, _, line in store.logs(job_id)), "the task's log reaches the store"


# --- partitioned sampling ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    from synthforge.engine import run

    folder = tmp_path_factory.mktemp("model")
    (folder / "adult.csv").write_bytes((DATA / "adult_4k.csv").read_bytes())
    recipe = {"seed": 2, "source": {"path": "adult.csv"}, "generator": {"name": "copula"},
              "output": {"rows": 100, "path": "out"}, "checks": []}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return run(folder / "recipe.yaml").output_path / "model"


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_partitioned_sampling_equals_sequential_sampling_and_commits_atomically(saved_model: Path, tmp_path: Path,
                                                                                executor: str):
    if executor == "ray":
        pytest.importorskip("ray")
    cli("sample", str(saved_model), "--rows", "25000", "--out", str(tmp_path / "one.parquet"), "--seed", "7",
        "--batch-size", "4000", cwd=tmp_path)
    printed = cli("sample", str(saved_model), "--rows", "25000", "--out", str(tmp_path / "parts"), "--seed", "7",
                  "--batch-size", "4000", "--partitions", "3", "--executor", executor, cwd=tmp_path).stdout
    assert "in 3 parts" in printed
    parts = sorted((tmp_path / "parts").glob("part-*.parquet"))
    assert len(parts) == 3
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert manifest["rows"] == 25000 and [p["rows"] for p in manifest["parts"]] == [12000, 8000, 5000]
    together = pl.concat([pl.read_parquet(part) for part in parts])
    assert together.equals(pl.read_parquet(tmp_path / "one.parquet")), "the same seed gives the same rows"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".parts")], "no staging folder is left"


def test_a_failing_partition_leaves_no_output(saved_model: Path, tmp_path: Path):
    from synthforge.jobs.partitioned import sample_partitioned

    with pytest.raises(Exception, match="cannot condition"):
        sample_partitioned(saved_model, 1000, tmp_path / "parts", partitions=2, batch_size=500,
                           conditions={"sex": "Martian"}, executor="local")
    assert list(tmp_path.iterdir()) == []


def test_each_retry_of_a_failed_job_waits_twice_as_long_as_the_one_before(tmp_path: Path):
    from synthforge.jobs.store import jobs

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job_id = store.submit("/r.yaml", max_attempts=4)
    waits = []
    for attempt in (1, 2, 3):
        job = store.claim("worker", lease_seconds=60)
        assert job is not None and job.id == job_id and job.attempts == attempt
        before = time.time()
        assert store.fail(job, "worker", "a crash", retry=True, retry_delay=10.0)
        queued = store.get(job_id)
        assert queued.status == "queued" and store.claim("worker", lease_seconds=60) is None, "it waits"
        waits.append(queued.run_after - before)
        with store.engine.begin() as connection:  # the wait is over
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(run_after=0.0))
    assert [round(wait) for wait in waits] == [10, 20, 40]
    notes = [line for _, _, line in store.logs(job_id)]
    assert [n.rsplit("; ", 1)[1] for n in notes if "retrying" in n] == [f"retrying in {s} s" for s in (10, 20, 40)]
    last = store.claim("worker", lease_seconds=60)
    assert last is not None and last.attempts == 4
    store.fail(last, "worker", "a crash", retry=True, retry_delay=10.0)
    assert store.get(job_id).status == "failed", "no retry once the attempts are spent"
