"""The worker: claims due jobs, runs them, heartbeats their leases, records the outcome.

One loop, every ``poll_seconds``:

1. queue again the jobs whose lease ran out (their worker died), or fail them when
   their attempts are spent;
2. turn due schedules into jobs;
3. claim jobs up to ``concurrency`` and start each one — a child process
   (``executor="local"``, killed with the worker: Linux's parent-death signal) or
   a Ray task (``executor="ray"``);
4. renew the lease of every running job; stop one whose lease was lost or whose
   cancel was asked for; record the outcome of each that ended, retrying crashes
   with exponential back-off.

The engine writes outputs atomically, so a job killed at any point leaves no
dataset that looks complete, and its rerun writes the whole output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from synthforge.errors import SynthForgeError
from synthforge.jobs.store import Job, JobStore
from synthforge.threads import THREADS_ENV, per_job_threads

Executor = Literal["local", "ray"]


class Worker:
    def __init__(self, store: JobStore, *, concurrency: int = 1, executor: Executor = "local",
                 lease_seconds: float = 30.0, poll_seconds: float = 1.0, retry_delay: float = 30.0,
                 plugins_dir: str | Path | None = None, ray_address: str | None = None,
                 threads: int | None = None, log: Callable[[str], None] = print) -> None:
        if concurrency < 1:
            raise SynthForgeError("--concurrency must be at least 1.")
        if executor not in ("local", "ray"):
            raise SynthForgeError(f"unknown executor {executor!r}: use local or ray.")
        self.store, self.concurrency, self.executor = store, concurrency, executor
        self.lease_seconds, self.poll_seconds, self.retry_delay = lease_seconds, poll_seconds, retry_delay
        self.plugins_dir = str(plugins_dir) if plugins_dir else None
        self.ray_address = ray_address
        # Each job's share of the cores (synthforge.threads): a local child gets it as SYNTHFORGE_THREADS
        # (unless the worker's own environment sets that), a Ray task as its num_cpus.
        self.threads = threads or per_job_threads(concurrency)
        self.log = log
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.running: dict[int, tuple[Job, _Execution]] = {}
        self.stopping = False
        self.finished = 0

    def run(self, *, drain: bool = False, max_jobs: int | None = None) -> int:
        """Work until stopped (SIGTERM/SIGINT), or with ``drain`` until nothing is due or running anywhere.

        Returns the number of jobs this worker finished.
        """
        self._handle_signals()
        if self.executor == "ray":
            from synthforge.jobs.partitioned import init_ray

            init_ray(self.ray_address)
        self.log(f"worker {self.owner}: {self.executor} executor, concurrency {self.concurrency}, "
                 f"{self.threads} CPU thread(s) per job, store {self.store.url}")
        last_beat = 0.0
        try:
            while not self.stopping:
                self.store.recover_expired()
                self.store.enqueue_due()
                claimed = self._claim(max_jobs)
                if time.monotonic() - last_beat >= self.lease_seconds / 3:
                    self._heartbeat()
                    last_beat = time.monotonic()
                self._collect()
                if max_jobs is not None and self.finished >= max_jobs and not self.running:
                    break
                if drain and not claimed and not self.running and not self._pending():
                    break
                time.sleep(self.poll_seconds)
        finally:
            for job, execution in list(self.running.values()):
                execution.stop()
                self.store.release(job, self.owner)
            self.running.clear()
        return self.finished

    def _claim(self, max_jobs: int | None) -> bool:
        claimed = False
        while len(self.running) < self.concurrency and not self.stopping:
            if max_jobs is not None and self.finished + len(self.running) >= max_jobs:
                break
            job = self.store.claim(self.owner, self.lease_seconds)
            if job is None:
                break
            claimed = True
            self.log(f"job {job.id}: started (attempt {job.attempts}) {job.recipe}")
            self.running[job.id] = (job, self._start(job))
        return claimed

    def _start(self, job: Job) -> _Execution:
        if self.executor == "ray":
            return _RayExecution(job, self.plugins_dir, self.threads)
        return _LocalExecution(job, self.store, self.plugins_dir, self.threads)

    def _heartbeat(self) -> None:
        for job_id, (job, execution) in list(self.running.items()):
            if not self.store.heartbeat(job_id, self.owner, self.lease_seconds):
                self.log(f"job {job_id}: lease lost (another worker took it back); stopping it here")
                execution.stop()
                del self.running[job_id]
            elif self.store.cancel_requested(job_id):
                execution.stop()
                self.store.mark_cancelled(job, self.owner)
                self.log(f"job {job_id}: cancelled")
                del self.running[job_id]
                self.finished += 1

    def _collect(self) -> None:
        for job_id, (job, execution) in list(self.running.items()):
            outcome = execution.outcome()
            if outcome is None:
                continue
            del self.running[job_id]
            self.finished += 1
            for line in outcome.get("logs", []):
                self.store.log(job.id, job.attempts, line)
            if outcome["status"] == "succeeded":
                self.store.complete(job, self.owner, outcome["result"])
                self.log(f"job {job_id}: succeeded → {outcome['result'].get('output_path')}")
            else:
                self.store.fail(job, self.owner, outcome["error"], retry=outcome["retryable"],
                                retry_delay=self.retry_delay)
                self.log(f"job {job_id}: failed: {outcome['error'].splitlines()[0] if outcome['error'] else ''}")

    def _pending(self) -> bool:
        """Work a draining worker waits for: queued jobs due now, and jobs running anywhere (a dead
        worker's job comes back when its lease expires). Future retries and schedules do not count."""
        if self.store.list_jobs(status="running", limit=1):
            return True
        return any(job.run_after <= time.time() for job in self.store.list_jobs(status="queued", limit=1000))

    def _handle_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, _frame: Any) -> None:
            self.log(f"worker {self.owner}: {signal.Signals(signum).name}, releasing running jobs")
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


class _Execution:
    def outcome(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class _LocalExecution(_Execution):
    """The job in a child process that dies with the worker; its output lines become the job's log."""

    def __init__(self, job: Job, store: JobStore, plugins_dir: str | None, threads: int) -> None:
        self.job, self.store = job, store
        for earlier in result_files(store, job.id):  # an earlier attempt's, whose worker died holding it
            earlier.unlink(missing_ok=True)
        self.result_path = str(result_file(store, job))
        command = [sys.executable, "-m", "synthforge.jobs.runner", "--recipe", job.recipe,
                   "--params", json.dumps(job.params), "--result", self.result_path]
        if plugins_dir:
            command += ["--plugins-dir", plugins_dir]
        if job.output_path:
            command += ["--output-path", job.output_path]
        environment = {**os.environ}
        environment.setdefault(THREADS_ENV, str(threads))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=environment,
                                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.tail: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        from synthforge.jobs.runner import parse_progress

        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            progress = parse_progress(line)
            with contextlib.suppress(Exception):  # a log line must never take the job down with it
                if progress is not None:
                    self.store.set_progress(self.job.id, progress)
                    continue
                self.tail = [*self.tail[-19:], line]
                self.store.log(self.job.id, self.job.attempts, line)

    def outcome(self) -> dict[str, Any] | None:
        code = self.process.poll()
        if code is None:
            return None
        self.reader.join(timeout=10)
        try:
            result = Path(self.result_path)
            written = result.read_text() if result.exists() else ""
            if code == 0 and written:
                return {"status": "succeeded", "result": json.loads(written)}
            if code == 2 and written:
                return {"status": "failed", "error": json.loads(written)["error"], "retryable": False}
            reason = f"exit status {code}" if code > 0 else f"killed by {signal.Signals(-code).name}"
            return {"status": "failed", "retryable": True,
                    "error": f"the run crashed ({reason}): " + " | ".join(self.tail[-3:])}
        finally:
            Path(self.result_path).unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        Path(self.result_path).unlink(missing_ok=True)


class _RayExecution(_Execution):
    """The job as a Ray task on the cluster ``ray.init`` joined; its log arrives when it ends."""

    def __init__(self, job: Job, plugins_dir: str | None, threads: int) -> None:
        import ray

        from synthforge.jobs.runner import execute_captured

        task = ray.remote(max_retries=0, num_cpus=threads)(execute_captured)
        self.ref = task.remote(job.recipe, job.params, plugins_dir, job.output_path)

    def outcome(self) -> dict[str, Any] | None:
        import ray

        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return ray.get(self.ref)
        except Exception as error:  # the task's process died (OOM, node lost): retry
            return {"status": "failed", "error": f"the Ray task was lost: {error}", "retryable": True}

    def stop(self) -> None:
        import ray

        ray.cancel(self.ref, force=True)


def result_file(store: JobStore, job: Job) -> Path:
    """Where the child running ``job`` writes its result: the temp folder, named for the store, job and owner."""
    from synthforge.data.io import owner_tag

    return Path(tempfile.gettempdir()) / (f"{_RESULT_PREFIX}{_store_key(store)}-{job.id}-{job.attempts}-"
                                          f"{owner_tag()}.json")


def result_files(store: JobStore, job_id: int) -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(f"{_RESULT_PREFIX}{_store_key(store)}-{job_id}-*.json"))


def abandoned_result_files() -> list[Path]:
    """Result files whose worker is gone: it died before reading them (``kill -9``)."""
    from synthforge.data.io import owner_gone

    found = []
    for path in Path(tempfile.gettempdir()).glob(f"{_RESULT_PREFIX}*.json"):
        before, _, host = path.stem.rpartition("@")  # host names may hold dashes, never an @
        pid = before.rsplit("-", 1)[-1]
        if owner_gone(path, pid if host and pid.isdigit() else None, host or None):
            found.append(path)
    return sorted(found)


_RESULT_PREFIX = "synthforge-job-"


def collect_garbage(store: JobStore) -> list[Path]:
    """Remove what killed jobs left behind: result files of dead workers, and the hidden staging folders
    beside the outputs of this store's jobs and schedules whose owner process is gone. Return what went.

    A live run's files are never touched: each name records its owner (pid and host), checked here.
    """
    from synthforge.data.io import remove_abandoned_staging
    from synthforge.recipe import load_recipe

    removed = []
    for path in abandoned_result_files():
        path.unlink(missing_ok=True)
        removed.append(path)
    every_job = store.list_jobs(limit=1_000_000)
    outputs = {Path(job.output_path) for job in every_job if job.output_path}  # a service job's own folder
    recipes = {(job.recipe, json.dumps(job.params, sort_keys=True)) for job in every_job if not job.output_path}
    recipes |= {(item.recipe, json.dumps(item.params, sort_keys=True)) for item in store.list_schedules()
                if not item.job_output}
    for recipe, params in sorted(recipes):
        try:
            loaded = load_recipe(recipe, overrides=json.loads(params))
        except SynthForgeError:  # a recipe since moved or broken: nothing of it to find
            continue
        outputs.add(loaded.resolve(loaded.output.path))
    for output in sorted(outputs):
        removed += remove_abandoned_staging(output)
    return removed


def _store_key(store: JobStore) -> str:
    import hashlib

    return hashlib.sha256(store.url.encode()).hexdigest()[:8]


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the worker dies, so no orphan keeps running."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
