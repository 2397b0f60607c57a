"""Large sampling split into partitions, sampled in parallel from the saved model, committed atomically.

Rows are cut into batches of ``batch_size``; batch ``k`` is sampled with the seed
``derive_seed(seed, k * batch_size)`` — the same seeds ``synthforge sample`` uses
one batch after another — so the parts together hold exactly the rows a
sequential run would, whatever the number of partitions. Each partition (a Ray
task, or a local process) loads the model itself (JSON + safetensors: nothing
large crosses the wire) and writes ``part-NNNNN.parquet`` into a hidden folder
beside the output; the folder is renamed into place, with a ``manifest.json``,
only when every partition has succeeded.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from synthforge.errors import SynthForgeError


def plan_partitions(rows: int, partitions: int, batch_size: int) -> list[list[tuple[int, int]]]:
    """(offset, rows) batches for each partition: whole batches, spread as evenly as they go."""
    from synthforge.engine import batch_plan

    batches = batch_plan(rows, batch_size)
    partitions = max(1, min(partitions, len(batches)))
    size, extra = divmod(len(batches), partitions)
    plan, start = [], 0
    for index in range(partitions):
        stop = start + size + (index < extra)
        plan.append(batches[start:stop])
        start = stop
    return plan


def sample_partition(model_dir: str, batches: list[tuple[int, int]], seed: int, conditions: dict[str, Any],
                     path: str, plugins_dir: str | None = None, protection: tuple[str, int] | None = None,
                     sample_params: dict[str, Any] | None = None, threads: int | None = None) -> int:
    """Load the model, sample the partition's batches and write them as one parquet file; return its rows.

    ``protection`` is (training table path, ``below``) for :meth:`Generator.protect_rows`;
    ``threads`` the CPU threads it may use (default: :func:`synthforge.threads.thread_share`,
    the CPUs Ray gave the task).
    """
    from synthforge.threads import limited_threads, thread_share

    with limited_threads(thread_share(threads)):
        return _sample_partition(model_dir, batches, seed, conditions, path, plugins_dir, protection,
                                 sample_params or {})


def _sample_partition(model_dir: str, batches: list[tuple[int, int]], seed: int, conditions: dict[str, Any],
                      path: str, plugins_dir: str | None, protection: tuple[str, int] | None,
                      sample_params: dict[str, Any]) -> int:
    import polars as pl

    from synthforge.api import load
    from synthforge.data.io import read_table
    from synthforge.generator import as_polars
    from synthforge.plugins import get_plugin_manager
    from synthforge.seeds import derive_seed

    pm = get_plugin_manager(plugins_dir=Path(plugins_dir) if plugins_dir else None)
    model = load(model_dir, pm=pm)
    if protection is not None:
        model.protect_rows(read_table(Path(protection[0]), None, pm=pm), below=protection[1])
    frames = [as_polars(model.sample(count, conditions or None, seed=derive_seed(seed, offset), **sample_params))
              for offset, count in batches]
    frame = pl.concat(frames) if frames else as_polars(model.sample(0))
    frame.write_parquet(path)
    return frame.height


def sample_partitioned(model_dir: str | Path, rows: int, out: str | Path, *, partitions: int = 2,
                       batch_size: int = 100_000, seed: int = 0, conditions: dict[str, Any] | None = None,
                       executor: Literal["ray", "local"] = "ray", ray_address: str | None = None,
                       plugins_dir: str | Path | None = None,
                       protection: tuple[str | Path, int] | None = None,
                       sample_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``rows`` rows as parquet parts in the folder ``out``; return the manifest.

    ``protection`` is (training table path, ``below``): each partition then redraws rows
    that copy a rare training row, as :meth:`Generator.protect_rows` describes.
    """
    from synthforge.data.io import remove_abandoned_staging, replace_atomically, staging_path

    if rows < 1:
        raise SynthForgeError("partitioned sampling needs at least one row.")
    model_dir, out = Path(model_dir).resolve(), Path(out).resolve()
    from synthforge.relational import is_database_model

    if is_database_model(model_dir):
        return sample_database_partitioned(model_dir, rows, out, partitions=partitions, seed=seed, executor=executor,
                                           ray_address=ray_address, plugins_dir=plugins_dir)
    if not (model_dir / "config.json").exists():
        raise SynthForgeError(f"{model_dir} is not a saved SynthForge model (no config.json).")
    plan = plan_partitions(rows, partitions, batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out)
    staging = staging_path(out)
    staging.mkdir()
    started = time.perf_counter()
    arguments = [(str(model_dir), batches, seed, dict(conditions or {}), str(staging / f"part-{index:05d}.parquet"),
                  str(plugins_dir) if plugins_dir else None,
                  (str(Path(protection[0]).resolve()), protection[1]) if protection else None,
                  dict(sample_params or {}))
                 for index, batches in enumerate(plan)]
    try:
        counts = _run_ray(sample_partition, arguments, ray_address) if executor == "ray" \
            else _run_local(sample_partition, arguments)
        manifest = {"rows": sum(counts), "parts": [{"file": Path(a[4]).name, "rows": c}
                                                   for a, c in zip(arguments, counts, strict=True)],
                    "model": str(model_dir), "seed": seed, "batch_size": batch_size, "conditions": conditions or {},
                    "executor": executor, "partitions": len(plan),
                    "seconds": round(time.perf_counter() - started, 3)}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        replace_atomically(staging, out)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def init_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (or start a local one) unless this process already has."""
    try:
        import ray
    except ImportError:
        raise SynthForgeError("--executor ray needs Ray: pip install 'synthforge[ray]'.") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")


def _run_ray(function: Any, arguments: list[tuple], address: str | None) -> list[Any]:
    import ray

    init_ray(address)
    task = ray.remote(max_retries=2)(function)
    return list(ray.get([task.remote(*args) for args in arguments]))


def _run_local(function: Any, arguments: list[tuple]) -> list[Any]:
    if len(arguments) == 1:
        return [function(*arguments[0])]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from synthforge.threads import per_job_threads

    # The processes share this machine's cores, rather than each taking all of them.
    arguments = [(*args, per_job_threads(len(arguments))) for args in arguments]
    # spawn, not fork: the parent may hold torch threads or a Ray client, which do not survive a fork.
    with ProcessPoolExecutor(len(arguments), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(function, *zip(*arguments, strict=True)))


# A partition's new keys start at its index times this: keys stay unique across partitions of a database.
KEY_STRIDE = 10**9


def sample_database_partition(model_dir: str, rows: int, seed: int, index: int, folder: str,
                              plugins_dir: str | None = None, threads: int | None = None) -> dict[str, int]:
    """One consistent sub-database: ``rows`` rows of the first root with their children, written as
    ``<table>/part-<index>.parquet``; keys start at ``index * KEY_STRIDE``, so no two partitions share one."""
    from synthforge.plugins import get_plugin_manager
    from synthforge.relational import DatabaseGenerator
    from synthforge.seeds import derive_seed
    from synthforge.threads import limited_threads, thread_share

    pm = get_plugin_manager(plugins_dir=Path(plugins_dir) if plugins_dir else None)
    with limited_threads(thread_share(threads)):
        tables = DatabaseGenerator.load(model_dir, pm).sample(rows, seed=derive_seed(seed, "partition", index),
                                                               key_offset=index * KEY_STRIDE)
    for name, frame in tables.items():
        (Path(folder) / name).mkdir(exist_ok=True)
        frame.write_parquet(Path(folder) / name / f"part-{index:05d}.parquet")
    return {name: frame.height for name, frame in tables.items()}


def sample_database_partitioned(model_dir: Path, rows: int, out: Path, *, partitions: int, seed: int,
                                executor: Literal["ray", "local"], ray_address: str | None,
                                plugins_dir: str | Path | None) -> dict[str, Any]:
    """A related-tables model sampled in ``partitions`` sub-databases split by root rows, each with all its
    children (so every partition is referentially whole); one folder of parquet parts per table."""
    from synthforge.data.io import remove_abandoned_staging, replace_atomically, staging_path

    partitions = max(1, min(partitions, rows))
    size, extra = divmod(rows, partitions)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out)
    staging = staging_path(out)
    staging.mkdir()
    started = time.perf_counter()
    arguments = [(str(model_dir), size + (index < extra), seed, index, str(staging),
                  str(plugins_dir) if plugins_dir else None) for index in range(partitions)]
    try:
        counts = _run_ray(sample_database_partition, arguments, ray_address) if executor == "ray" \
            else _run_local(sample_database_partition, arguments)
        tables = {name: sum(count[name] for count in counts) for name in counts[0]}
        manifest = {"rows": sum(tables.values()), "tables": tables, "parts": counts, "model": str(model_dir),
                    "seed": seed, "executor": executor, "partitions": partitions,
                    "seconds": round(time.perf_counter() - started, 3)}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        replace_atomically(staging, out)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
