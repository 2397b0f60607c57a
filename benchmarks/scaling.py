"""How fit time, sample time and memory grow with the number of rows.

    python -m benchmarks.scaling --generators baseline [--sizes 32561,100000,300000,1000000] [--stream 10000000]

Adult is resampled with replacement to each size, its integer columns jittered by ±2%
(stated in the output: larger tables are not new real data). Each fit runs in its own
process. Then the last model samples ``--stream`` rows streamed to parquet through
``synthforge sample``, in batches, to show that memory stays flat. Prints the table and
the log-log slope (growth exponent) of time and memory; writes
``benchmarks/results/scaling-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.datasets import adult, resample_with_jitter
from benchmarks.run import RESULTS, WORK, machine, versions


def slope(sizes: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(values, 1e-9)), 1)[0])


_MEASURED = """
import resource, sys
from synthforge.cli import app
try:
    app(sys.argv[2:], standalone_mode=False)
finally:
    open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def stream_sample(model_dir: Path, rows: int, out: Path) -> dict[str, float]:
    """``synthforge sample`` in its own process; its own peak RSS, read by the process itself."""
    rss_file = out.with_suffix(".rss")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _MEASURED, str(rss_file), "sample", str(model_dir), "--rows", str(rows),
                    "--out", str(out), "--batch-size", "200000"], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mb": int(rss_file.read_text()) / 1024, "file_mb": out.stat().st_size / 2**20}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", default="baseline")
    parser.add_argument("--sizes", default="32561,100000,300000,1000000")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epoch budget for neural generators")
    parser.add_argument("--stream", type=int, default=10_000_000, help="rows to sample streamed (0: skip)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    source = adult().train
    work = WORK / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    record: dict = {"date": date.today().isoformat(), "machine": machine(), "versions": versions(),
                    "data": "UCI Adult train resampled with replacement, integer columns jittered ±2%",
                    "results": {}}
    lines = ["| generator | rows | fit s | sample s | sample rows/s | peak RSS MB |", "|---|---|---|---|---|---|"]
    for generator in [g.strip() for g in args.generators.split(",")]:
        rows_out = []
        for size in sizes:
            train_file = work / f"adult-{size}.parquet"
            if not train_file.exists():
                resample_with_jitter(source, size, seed=size).write_parquet(train_file)
            out = work / f"{generator}-{size}"
            command = [sys.executable, "-m", "benchmarks.worker", "--generator", generator, "--train-file",
                       str(train_file), "--out", str(out)]
            if args.epochs is not None:
                command += ["--epochs", str(args.epochs)]
            subprocess.run(command, check=True, capture_output=True)
            timing = json.loads((out / "timing.json").read_text())
            rows_out.append(timing)
            lines.append(f"| {generator} | {size:,} | {timing['fit_s']:.2f} | {timing['sample_s']:.2f} | "
                         f"{timing['sample_rows_per_s']:,.0f} | {timing['peak_rss_mb']:.0f} |")
            print(lines[-1], flush=True)
        exponents = {key: slope(sizes, [r[key] for r in rows_out]) for key in ("fit_s", "sample_s", "peak_rss_mb")}
        record["results"][generator] = {"runs": rows_out, "log_log_slopes": exponents}
        lines.append(f"| {generator} growth exponent | | {exponents['fit_s']:.2f} | {exponents['sample_s']:.2f} | "
                     f"| {exponents['peak_rss_mb']:.2f} |")
        print(lines[-1], flush=True)

    if args.stream:
        import synthforge
        from synthforge.generator import FitContext

        model_dir = work / "stream-model"
        import polars as pl

        synthforge.get_plugin_manager().get_generator("copula")().fit(
            pl.read_parquet(work / f"adult-{sizes[0]}.parquet"), None, FitContext(seed=0)).save(model_dir)
        lines += ["", "| streamed to parquet | seconds | rows/s | peak RSS MB | file MB |", "|---|---|---|---|---|"]
        record["stream"] = []
        for rows in (args.stream // 10, args.stream):
            streamed = stream_sample(model_dir, rows, work / f"stream-{rows}.parquet")
            record["stream"].append(streamed)
            lines.append(f"| {rows:,} copula rows | {streamed['seconds']:.1f} | {streamed['rows_per_s']:,.0f} | "
                         f"{streamed['peak_rss_mb']:.0f} | {streamed['file_mb']:.0f} |")
            print(lines[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"scaling-{record['date']}"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    header = (f"# Scaling — {record['date']}\n\n{record['data']}.\nMachine: {record['machine']}.\n"
              f"Versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}.\n\n")
    (RESULTS / f"{name}.md").write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
