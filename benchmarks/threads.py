"""A fit alone against the same fit beside a second concurrent job, through the real worker.

    python -m benchmarks.threads [--recipe recipes/adult-autoregressive.yaml] [--repeats 2]

Scenarios, each run ``--repeats`` times (the best fit is kept, since this machine is shared):

- ``alone``: one job, ``synthforge worker --concurrency 1`` (the job gets every core);
- ``two jobs, shared cores``: two jobs at once, ``--concurrency 2`` (each gets its share: the cores
  divided by the concurrency, ``synthforge.threads``);
- ``two jobs, every core each``: the same with ``--threads <cores>`` and ``OMP_WAIT_POLICY=ACTIVE``
  (waiting threads spin), the worst of oversubscription (torch, BLAS and OpenMP one thread per core
  each); run ``--scenarios alone,shared`` on a checkout from before ``synthforge.threads`` for the old
  behaviour itself;
- ``beside an outside process``: one job while a plain ``synthforge run`` of the same recipe runs
  outside the worker, each at its default (so no one divides the cores).

The fit seconds come from each job's recorded timings. Results: ``results/threads-<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _jobs(store: str, recipe: Path, count: int, params: list[str]) -> list[int]:
    from synthforge.jobs.store import JobStore
    from synthforge.recipe import parse_overrides

    jobs = JobStore(store)
    return [jobs.submit(recipe.resolve(), parse_overrides([*params, f"output.path={tempfile.mkdtemp()}/out"]))
            for _ in range(count)]


def _fits(store: str, ids: list[int]) -> list[float]:
    from synthforge.jobs.store import JobStore

    jobs = JobStore(store)
    fits = []
    for job_id in ids:
        job = jobs.get(job_id)
        if job.status != "succeeded":
            raise SystemExit(f"job {job_id} {job.status}: {job.error}")
        fits.append(float(job.result["timings"]["fit"]))
    return fits


def scenario(name: str, recipe: Path, params: list[str], *, jobs: int, concurrency: int, threads: int | None = None,
             environment: dict[str, str] | None = None, outside: bool = False) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="synthforge-threads-"))
    store = f"sqlite:///{folder / 'jobs.db'}"
    ids = _jobs(store, recipe, jobs, params)
    env = {**os.environ, **(environment or {})}
    env.pop("SYNTHFORGE_THREADS", None)
    command = [sys.executable, "-m", "synthforge.cli", "worker", "--concurrency", str(concurrency), "--drain",
               "--poll", "0.2", "--store", store]
    if threads:
        command += ["--threads", str(threads)]
    other = None
    if outside:
        other = subprocess.Popen([sys.executable, "-m", "synthforge.cli", "run", str(recipe), "-q",
                                  *[item for param in params for item in ("-p", param)],
                                  "-p", f"output.path={folder / 'outside'}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - started
    if other is not None:
        other.wait()
    fits = _fits(store, ids)
    return {"scenario": name, "jobs": jobs, "concurrency": concurrency, "threads_per_job": threads,
            "fit_s": fits, "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> None:
    from synthforge.threads import available_cpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "adult-autoregressive.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--param", "-p", action="append", default=[],
                        help="recipe overrides for every job, e.g. generator.params.epochs=10")
    parser.add_argument("--scenarios", default="alone,shared,oversubscribed,outside")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    cores = available_cpus()
    # Only the privacy gates that always run: the checks' own cost is not what is measured.
    params = ["checks=[{name: column_shapes}]", *args.param]
    plans = {
        "alone": dict(name="alone", jobs=1, concurrency=1),
        "shared": dict(name="two jobs, shared cores", jobs=2, concurrency=2),
        "oversubscribed": dict(name="two jobs, every core each", jobs=2, concurrency=2, threads=cores,
                               environment={"OMP_WAIT_POLICY": "ACTIVE"}),
        "outside": dict(name="beside an outside process", jobs=1, concurrency=1, outside=True),
    }
    rows = []
    for key in args.scenarios.split(","):
        runs = [scenario(recipe=args.recipe, params=params, **plans[key]) for _ in range(args.repeats)]
        best = min(runs, key=lambda run: max(run["fit_s"]))
        rows.append({**best, "all_runs_fit_s": [run["fit_s"] for run in runs]})
        print(f"{best['scenario']}: fit {', '.join(f'{s:.1f}' for s in best['fit_s'])} s "
              f"(runs: {[[round(s, 1) for s in run['fit_s']] for run in runs]})", flush=True)
    alone = max(rows[0]["fit_s"]) if rows and rows[0]["jobs"] == 1 else None
    from benchmarks.run import machine, versions

    stamp = date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"date": stamp, "machine": machine(), "cores": cores, "versions": versions(),
              "recipe": str(args.recipe.relative_to(ROOT)) if args.recipe.is_relative_to(ROOT) else str(args.recipe),
              "params": params, "rows": rows}
    (args.out / f"threads-{stamp}.json").write_text(json.dumps(record, indent=1))
    lines = [f"# Threads: a fit alone and beside a second job — {stamp}", "",
             f"Machine: {machine()}. Recipe: `{record['recipe']}` with {', '.join(params)}.", "",
             "| scenario | jobs | concurrency | threads per job | fit s (best of runs) | × alone |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        slowest = max(row["fit_s"])
        ratio = f"{slowest / alone:.2f}" if alone else "–"
        threads = row["threads_per_job"] or max(1, cores // row["concurrency"])
        lines.append(f"| {row['scenario']} | {row['jobs']} | {row['concurrency']} | {threads} | "
                     f"{', '.join(f'{s:.1f}' for s in row['fit_s'])} | {ratio} |")
    (args.out / f"threads-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
