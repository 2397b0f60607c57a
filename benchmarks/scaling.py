"""How fit time, sample time and memory grow with the number of rows.

    python -m benchmarks.scaling --generators baseline [--sizes 32561,100000,300000,1000000] [--stream 10000000]
    python -m benchmarks.scaling --streamed --generators autoregressive,diffusion --epochs 1 \
        --sizes 32561,320000,1000000,3000000 --stream 10000000

``--streamed``: each size is a whole ``synthforge run`` of a recipe with ``source.streaming: true`` (the table
read in chunks, trained from disk; the checks on a 100,000-row sample), fixed epochs and batch size
(``adapt_to_table: false``), in its own process; fit seconds are the manifest's, peak RSS the process's.

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


# The process's own peak (VmHWM of its memory map, in kB): ru_maxrss would also count the parent's peak before the
# exec (Linux keeps the larger), and this parent has just built a table of millions of rows.
_MEASURED = """
import sys
from synthforge.cli import app
try:
    app(sys.argv[2:], standalone_mode=False)
finally:
    peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
    open(sys.argv[1], "w").write(peak)
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


_RECIPE = """
name: scaling-{generator}-{size}
seed: 7
source: {{path: {train}, streaming: true, sample_rows: 100000}}
holdout: {{fraction: 0.1}}
generator:
  name: {generator}
  params: {{epochs: {epochs}, batch_size: 1024, adapt_to_table: false}}
output: {{mode: synthesize, rows: {check_rows}, path: {out}, format: parquet}}
checks: [{{name: column_shapes}}, {{name: pair_trends}}, {{name: exact_copies}}]
"""


def streamed_run(generator: str, train_file: Path, size: int, epochs: int, work: Path,
                 check_rows: int = 50_000) -> dict[str, float]:
    """One streamed ``synthforge run`` in its own process: the manifest's fit and sample seconds, its peak RSS."""
    import shutil

    out = work / f"streamed-{generator}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    recipe = work / f"streamed-{generator}-{size}.yaml"
    recipe.write_text(_RECIPE.format(generator=generator, size=size, train=train_file, epochs=epochs, out=out,
                                     check_rows=check_rows))
    rss_file = out.with_suffix(".rss")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _MEASURED, str(rss_file), "run", str(recipe), "--quiet"], check=True,
                   capture_output=True)
    seconds = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    timings, checks = manifest["timings_seconds"], {c["name"]: c["score"] for c in manifest["checks"]}
    return {"rows": size, "training_rows": manifest["rows"]["training"], "fit_s": timings["fit"],
            "sample_s": timings["sample"], "sample_rows_per_s": check_rows / timings["sample"],
            "run_s": seconds, "peak_rss_mb": int(rss_file.read_text()) / 1024, "model_dir": str(out / "model"),
            "column_shapes": checks.get("column_shapes"), "pair_trends": checks.get("pair_trends")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", default="baseline")
    parser.add_argument("--sizes", default="32561,100000,300000,1000000")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epoch budget for neural generators")
    parser.add_argument("--stream", type=int, default=10_000_000, help="rows to sample streamed (0: skip)")
    parser.add_argument("--streamed", action="store_true", help="train through the streaming path (recipes)")
    parser.add_argument("--check-rows", type=int, default=50_000, help="--streamed: rows each run samples and checks")
    args = parser.parse_args(argv)
    if args.streamed:
        return main_streamed(args)
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
    write_results(f"scaling-{record['date']}", record, f"Scaling — {record['date']}\n\n{record['data']}.", lines)


def write_results(name: str, record: dict, title: str, lines: list[str]) -> None:
    """``benchmarks/results/<name>.json`` (the record) and ``.md`` (the title, machine, versions and table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    header = (f"# {title}\nMachine: {record['machine']}.\n"
              f"Versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}.\n\n")
    (RESULTS / f"{name}.md").write_text(header + "\n".join(lines) + "\n")


def main_streamed(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    epochs = args.epochs or 1
    work = WORK / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    record: dict = {"date": date.today().isoformat(), "machine": machine(), "versions": versions(),
                    "data": "UCI Adult train resampled with replacement, integer columns jittered ±2%",
                    "streamed": True, "epochs": epochs, "results": {}}
    lines = ["| generator | rows | training rows | fit s | fit µs/row·epoch | sample rows/s | peak RSS MB | "
             "shapes | trends |", "|---|---|---|---|---|---|---|---|---|"]
    for generator in [g.strip() for g in args.generators.split(",")]:
        runs = []
        for size in sizes:
            train_file = work / f"adult-{size}.parquet"
            if not train_file.exists():
                resample_with_jitter(adult().train, size, seed=size).write_parquet(train_file)
            run = streamed_run(generator, train_file, size, epochs, work, args.check_rows)
            runs.append(run)
            lines.append(f"| {generator} | {size:,} | {run['training_rows']:,} | {run['fit_s']:.1f} | "
                         f"{run['fit_s'] / run['training_rows'] / epochs * 1e6:.1f} | "
                         f"{run['sample_rows_per_s']:,.0f} | {run['peak_rss_mb']:.0f} | "
                         f"{run['column_shapes']:.4f} | {run['pair_trends']:.4f} |")
            print(lines[-1], flush=True)
        large = [r for r in runs if r["rows"] >= 320_000]
        exponents = {"fit_s": slope([r["rows"] for r in runs], [r["fit_s"] for r in runs]),
                     "fit_s_from_320k": slope([r["rows"] for r in large], [r["fit_s"] for r in large])
                     if len(large) > 1 else None,
                     "rss_spread_from_320k": max(r["peak_rss_mb"] for r in large)
                     / min(r["peak_rss_mb"] for r in large) - 1 if large else None}
        record["results"][generator] = {"runs": runs, "growth": exponents}
        lines.append(f"| {generator}: fit slope (all / from 320k) {exponents['fit_s']:.2f} / "
                     f"{exponents['fit_s_from_320k'] or float('nan'):.2f}; peak RSS spread from 320k "
                     f"{(exponents['rss_spread_from_320k'] or 0):.0%} | | | | | | | | |")
        print(lines[-1], flush=True)
        if args.stream:
            streamed = stream_sample(Path(runs[-1]["model_dir"]), args.stream, work / f"stream-{generator}.parquet")
            record["results"][generator]["sample_stream"] = streamed
            lines.append(f"| {generator}: {args.stream:,} rows sampled to parquet | | | | | "
                         f"{streamed['rows_per_s']:,.0f} | {streamed['peak_rss_mb']:.0f} | | |")
            print(lines[-1], flush=True)
    write_results(f"scaling-streamed-{'-'.join(record['results'])}-{record['date']}", record,
                  f"Scaling, streamed — {record['date']}\n\n{record['data']}; {epochs} epoch(s), batch 1,024.", lines)


if __name__ == "__main__":
    main()
