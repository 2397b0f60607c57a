"""Data-parallel training on Ray Train against one process: same rows, epochs, batch size and seed.

    python -m benchmarks.ray_train [--rows 1000000] [--epochs 2] [--workers 1,2] [--generator autoregressive]

Adult resampled with replacement to ``--rows`` (integer columns jittered ±2%, as ``benchmarks.scaling``); each
configuration fits in its own process: ``workers 1`` in that process with all the machine's threads,
``workers N`` on N local Ray Train workers with an equal share of them. Fit seconds include Ray Train's start;
quality is SDMetrics' QualityReport of 20,000 sampled rows against 20,000 training rows. Writes
``benchmarks/results/ray-train-<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date

from benchmarks.datasets import adult, resample_with_jitter
from benchmarks.run import RESULTS, WORK, machine, versions

_FIT = """
import json, sys, time
import polars as pl
from benchmarks.memory import own_peak_rss_mb
from benchmarks.run import sdmetrics_scores
import synthforge
from synthforge.data.schema import infer_schema
from synthforge.generator import FitContext

path, generator = sys.argv[1], sys.argv[2]
workers, threads, epochs = (int(value) for value in sys.argv[3:6])
train = pl.read_parquet(path)
schema = infer_schema(train)
model = synthforge.get_plugin_manager().get_generator(generator)({"epochs": epochs, "batch_size": 1024,
                                                                   "adapt_to_table": False})
context = FitContext(seed=3, device="cpu", workers=workers, threads_per_worker=threads)
started = time.perf_counter()
model.fit(train, schema, context)
fit_s = time.perf_counter() - started
synthetic = model.sample(20_000, seed=4)
scores = sdmetrics_scores(train.sample(20_000, seed=5), synthetic, schema)
print(json.dumps({"workers": workers, "threads": threads, "fit_s": fit_s, "peak_rss_mb": own_peak_rss_mb(),
                  "train_loop_s": model.history_.seconds, "last_loss": model.history_.epochs[-1]["loss"], **scores}))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--generator", default="autoregressive")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    work = WORK / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    train_file = work / f"adult-{args.rows}.parquet"
    if not train_file.exists():
        resample_with_jitter(adult().train, args.rows, seed=args.rows).write_parquet(train_file)
    runs = []
    for workers in [int(w) for w in args.workers.split(",")]:
        threads = cores if workers == 1 else max(cores // workers, 1)
        done = subprocess.run([sys.executable, "-c", _FIT, str(train_file), args.generator, str(workers),
                               str(threads), str(args.epochs)], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    base = runs[0]["fit_s"]
    lines = ["| workers | threads each | fit s | speed-up | training loop s | last loss | SDM overall | shapes "
             "| trends | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {run['workers']} | {run['threads']} | {run['fit_s']:.1f} | {base / run['fit_s']:.2f}× | "
                     f"{run['train_loop_s']:.1f} | "
                     f"{run['last_loss']:.4f} | {run.get('sdm_overall', float('nan')):.4f} | "
                     f"{run.get('sdm_shapes', float('nan')):.4f} | {run.get('sdm_trends', float('nan')):.4f} | "
                     f"{run['peak_rss_mb']:.0f} |")
    print("\n".join(lines))
    record = {"date": date.today().isoformat(), "machine": machine(), "versions": versions(), "rows": args.rows,
              "epochs": args.epochs, "generator": args.generator, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"ray-train-{record['date']}"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    (RESULTS / f"{name}.md").write_text(f"# Ray Train vs one process — {record['date']}\n\n{args.generator}, "
                                        f"{args.rows:,} rows (Adult resampled), {args.epochs} epochs, batch 1,024."
                                        f"\nMachine: {record['machine']}.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
