"""Wall time of sampling many rows into parquet parts with 1 and 2 local Ray workers.

    python -m benchmarks.ray_sampling [--rows 10000000] [--generator copula] [--workers 1,2]

Fits the generator on Adult train once and saves it; then, for each worker count,
starts a local Ray with that many CPUs and samples ``--rows`` rows as that many
partitions (``synthforge.jobs.partitioned``), committed atomically. Writes
``results/ray-sampling-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.datasets import load
from benchmarks.run import RESULTS, machine, versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--generator", default="copula")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-size", type=int, default=250_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray

    import synthforge
    from synthforge.jobs.partitioned import sample_partitioned

    work = Path(tempfile.mkdtemp(prefix="ray-sampling-"))
    data = load("adult")
    model = synthforge.fit(data.train.to_pandas(), generator=args.generator, seed=0)
    model.save(work / "model")
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
        try:
            started = time.perf_counter()
            manifest = sample_partitioned(work / "model", args.rows, work / f"parts-{workers}", partitions=workers,
                                          batch_size=args.batch_size, seed=1, executor="ray")
            wall = time.perf_counter() - started
        finally:
            ray.shutdown()
        size_mb = sum(p.stat().st_size for p in (work / f"parts-{workers}").glob("*.parquet")) / 2**20
        rows.append({"workers": workers, "rows": manifest["rows"], "wall_s": round(wall, 2),
                     "rows_per_s": round(manifest["rows"] / wall), "parquet_mb": round(size_mb, 1)})
        print(rows[-1], flush=True)
        shutil.rmtree(work / f"parts-{workers}")
    shutil.rmtree(work, ignore_errors=True)

    stamp = date.today().isoformat()
    record = {"date": stamp, "machine": machine(), "versions": {**versions(), "ray": ray.__version__},
              "generator": args.generator, "batch_size": args.batch_size, "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ray-sampling-{stamp}.json").write_text(json.dumps(record, indent=1))
    table = ["| Ray workers | rows | wall s | rows/s | parquet MB |", "|---|---|---|---|---|"]
    table += [f"| {r['workers']} | {r['rows']:,} | {r['wall_s']:.1f} | {r['rows_per_s']:,} | {r['parquet_mb']} |"
              for r in rows]
    (args.out / f"ray-sampling-{stamp}.md").write_text(
        f"# Partitioned sampling with Ray — {stamp}\n\n{args.generator} fitted on Adult train; "
        f"{args.rows:,} rows in {args.batch_size:,}-row batches. Machine: {machine()}. Ray {ray.__version__}.\n\n"
        + "\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
