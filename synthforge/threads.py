"""How many CPU threads a run may use, and telling OpenMP, the BLAS libraries and torch so.

torch, numpy's BLAS and OpenMP each start one thread per core by default. Two such
runs on one machine (a worker with ``--concurrency 2``, or any other busy process)
ask for twice the cores there are, and OpenMP's threads spin while they wait for
each other: a fit that takes 36 s alone took 493 s that way. So every run takes a
share of the cores, chosen in this order:

1. the recipe's ``generator.threads``;
2. the ``SYNTHFORGE_THREADS`` environment variable (a worker sets it for each job
   it starts to the cores it may use divided by ``--concurrency``, unless it is
   set already);
3. inside a Ray task, the CPUs Ray assigned to it;
4. the cores this process may run on (its CPU affinity, which containers and
   ``taskset`` narrow).

OpenMP is also told to let waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``)
where the user has not chosen otherwise, so a thread that lost its core to
another process gives it back instead of spinning.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

THREADS_ENV = "SYNTHFORGE_THREADS"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "POLARS_MAX_THREADS")


def available_cpus() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def thread_share(requested: int | None = None) -> int:
    """The threads this run may use, by the order in the module documentation."""
    if requested:
        return int(requested)
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            from synthforge.errors import SynthForgeError

            raise SynthForgeError(f"{THREADS_ENV}={text!r} is not a whole number of threads ≥ 1.")
        return value
    assigned = _ray_assigned_cpus()
    if assigned:
        return assigned
    return available_cpus()


def per_job_threads(concurrency: int) -> int:
    """A worker's share for each of its ``concurrency`` jobs: the cores divided among them, at least one."""
    return max(1, available_cpus() // max(concurrency, 1))


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[int]:
    """Use ``threads`` threads inside the block: OpenMP, BLAS and torch; as before afterwards.

    Libraries loaded already are limited through threadpoolctl and ``torch.set_num_threads``;
    the environment variables reach those loaded inside the block (torch reads
    ``OMP_NUM_THREADS`` when it is first imported) and child processes.
    """
    threads = max(int(threads), 1)
    saved = {variable: os.environ.get(variable) for variable in (*_THREAD_VARIABLES, "OMP_WAIT_POLICY")}
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch_before = _set_torch_threads(threads)  # first: threadpoolctl's OpenMP limit changes torch's count too
    limits = None
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(threads)
    try:
        yield threads
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
        if limits is not None:
            limits.restore_original_limits()
        if torch_before is not None:  # torch first loaded inside the block keeps the share it started with
            _set_torch_threads(torch_before)


def _set_torch_threads(threads: int) -> int | None:
    """Set torch's intra-op threads if torch is loaded; the number it had before (None when not loaded)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads") or threads < 1:
        return None
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    return before


def _ray_assigned_cpus() -> int | None:
    """The CPUs Ray gave the task this code runs in; None outside a Ray worker."""
    if "ray" not in sys.modules:
        return None
    ray = sys.modules["ray"]
    try:
        if not ray.is_initialized():
            return None
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return None
        cpus = context.get_assigned_resources().get("CPU")
    except Exception:  # an old or partial Ray: fall back to the affinity
        return None
    return max(1, round(cpus)) if cpus else None
