"""Us against the peers, on the same split, in one run.

    python -m benchmarks.run --dataset adult --generators baseline,sdv-gaussiancopula,sdv-tvae,sdv-ctgan
    python -m benchmarks.run --quick          # 5k rows, small epochs: a smoke run (CI)
    python -m benchmarks.run --generators autoregressive,mostlyai-argn --python mostlyai-argn=.venv-mostly/bin/python

Each generator fits and samples in its own subprocess (``benchmarks.worker``) so that
its peak RSS is its own; sampling is timed as the best of three calls (and the first call's rate beside
it), the first call's table scored; then every synthetic table is scored here, against the same
training rows and the same real holdout: SDMetrics' QualityReport (overall, Column
Shapes, Column Pair Trends) when sdmetrics is installed, TSTR ROC AUC next to
train-on-real, DCR share and exact copies (SynthForge's checks), and for SynthForge's
generators how many sampled rows copied a rare training row and were drawn again
before the table was written (``Generator.protect_rows``; peers have no such step). Writes
``benchmarks/results/<dataset>-<date>[-quick].json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.datasets import load

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
DEFAULT_GENERATORS = "baseline,sdv-gaussiancopula,sdv-tvae,sdv-ctgan"


def run_worker(generator: str, dataset: str, out: Path, *, rows: int | None, epochs: int | None,
               seed: int, timeout: float, python: str | None = None, extra: list[str] | None = None) -> dict[str, Any]:
    command = [python or sys.executable, "-m", "benchmarks.worker", "--generator", generator, "--dataset", dataset,
               "--out", str(out), "--seed", str(seed), *(extra or [])]
    if rows is not None:
        command += ["--rows", str(rows)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        return {"generator": generator, "error": " | ".join(tail), "wall_s": time.perf_counter() - started}
    return json.loads((out / "timing.json").read_text())


def score(dataset_name: str, train: pl.DataFrame, holdout: pl.DataFrame, target: str,
          synthetic: pl.DataFrame) -> dict[str, Any]:
    from synthforge.data.schema import infer_schema, to_internal
    from synthforge.evaluation import align, evaluate_frames
    from synthforge.profile import find_relations

    schema = infer_schema(train)
    # Dates held as text are scored as dates, whoever wrote the synthetic table (a peer writes datetimes).
    train, holdout = to_internal(train, schema), to_internal(holdout, schema)
    synthetic = align(to_internal(synthetic, schema, invalid={c.name: "null" for c in schema.columns if c.format}),
                      train, "synthetic")
    results = {r.name: r for r in evaluate_frames(
        train, synthetic, holdout=holdout, target=target, schema=schema,
        checks=["column_shapes", "pair_trends", "ml_efficacy", "dcr_share", "exact_copies"])}
    scores: dict[str, Any] = {
        "shapes": results["column_shapes"].score,
        "trends": results["pair_trends"].score,
        "tstr_auc": results["ml_efficacy"].details.get("synthetic"),
        "trtr_auc": results["ml_efficacy"].details.get("real"),
        "dcr_share": results["dcr_share"].score,
        "exact_copies": results["exact_copies"].details["copies"],
        "holdout_copy_share": results["exact_copies"].details.get("holdout_share"),
    }
    rules = find_relations(train, schema)  # what held in every real training row
    shares = {rule.describe(): float(rule.holds(synthetic).mean() or 0.0) for rule in rules}
    scores["rules"] = len(rules)
    scores["rules_min_share"] = min(shares.values()) if shares else None
    scores["rules_mean_share"] = sum(shares.values()) / len(shares) if shares else None
    scores["rule_shares"] = shares
    dates = [c.name for c in schema.learned if c.kind.value == "datetime"]
    if dates:
        from synthforge.checks.builtin import column_shape_scores

        by_column = column_shape_scores(train, synthetic, schema)
        scores["date_shapes"] = min(by_column[name] for name in dates)
    scores |= sdmetrics_scores(train, synthetic, schema)
    return scores


def sdmetrics_scores(train: pl.DataFrame, synthetic: pl.DataFrame, schema: Any) -> dict[str, Any]:
    try:
        import warnings

        from sdmetrics.reports.single_table import QualityReport
    except ImportError:
        return {}
    def sdtype(kind: str, numeric: bool) -> str:
        return "datetime" if kind == "datetime" else "numerical" if numeric else "categorical"

    metadata = {"columns": {c.name: {"sdtype": sdtype(c.kind.value, c.kind.numeric)} for c in schema.learned
                            if c.kind.value != "duration"}}
    train = train.select(list(metadata["columns"]))
    synthetic = synthetic.select(list(metadata["columns"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = QualityReport()
        report.generate(train.to_pandas(), synthetic.to_pandas(), metadata, verbose=False)
    properties = dict(report.get_properties().itertuples(index=False))
    return {"sdm_overall": report.get_score(), "sdm_shapes": properties["Column Shapes"],
            "sdm_trends": properties["Column Pair Trends"]}


def versions() -> dict[str, str]:
    import importlib.metadata

    found = {"python": platform.python_version()}
    for name in ("synthforge", "polars", "numpy", "torch", "opacus", "sdv", "sdmetrics", "ctgan", "mostlyai-engine",
                 "smartnoise-synth",
                 "synthforge-vae", "synthforge-gan", "synthforge-autoregressive", "synthforge-diffusion"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def machine() -> str:
    """The machine in words, with whether its CPU multiplies bfloat16 natively: the neural backends' ``auto``
    precision trains and samples in bfloat16 there, and their timings differ by 2-4x between such a CPU and one
    without (read from the CPU's flags, so a peer's venv without torch says the same)."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():  # the first core's lines
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cpu = model or platform.processor() or platform.machine()
    native = [name for flag, name in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    bfloat16 = f"bfloat16 native ({', '.join(native)})" if native else "no native bfloat16" if flags else None
    described = f"{cpu}, {bfloat16}" if bfloat16 else cpu
    return f"{os.cpu_count()} CPU cores ({described}), {platform.system()} {platform.machine()}, no GPU"


COLUMNS = [("generator", "generator"), ("fit_s", "fit s"), ("sample_rows_per_s", "sample rows/s"),
           ("first_sample_rows_per_s", "1st call rows/s"), ("peak_rss_mb", "peak RSS MB"),
           ("sdm_overall", "SDM overall"), ("sdm_shapes", "SDM shapes"),
           ("sdm_trends", "SDM trends"), ("tstr_auc", "TSTR AUC"), ("trtr_auc", "TRTR AUC"),
           ("dcr_share", "DCR share"), ("exact_copies", "exact copies"), ("copies_redrawn", "copies redrawn"),
           ("date_shapes", "date shapes (min)"), ("rules_min_share", "rules kept (min)"),
           ("rules_mean_share", "rules kept (mean)")]


def format_cell(value: Any, key: str) -> str:
    if value is None:
        return "–"
    if key in ("sample_rows_per_s", "first_sample_rows_per_s"):
        return f"{value:,.0f}"
    if key in ("fit_s", "peak_rss_mb"):
        return f"{value:,.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]] = COLUMNS,
                   cell: Callable[[Any, str], str] = format_cell) -> str:
    """A markdown table of ``rows``, one column per (key, title); a failed row says why after its first cell."""
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        first = columns[0][0]
        if "error" in row:
            lines.append(f"| {cell(row.get(first), first)} | failed: {row['error']} |")
            continue
        lines.append("| " + " | ".join(cell(row.get(key), key) for key, _ in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="adult")
    parser.add_argument("--generators", default=DEFAULT_GENERATORS)
    parser.add_argument("--quick", action="store_true", help="5,000 rows and small epochs: a smoke run")
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for neural generators (default: theirs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per generator")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--label", default="", help="appended to the results' file name")
    parser.add_argument("--python", action="append", default=[], metavar="GENERATOR=PATH",
                        help="run one generator's worker with another interpreter (a peer in its own venv), "
                             "e.g. mostlyai-argn=.venv-mostly/bin/python")
    args = parser.parse_args(argv)
    interpreters = dict(item.split("=", 1) for item in args.python)
    rows = 5000 if args.quick and args.rows is None else args.rows
    epochs = 2 if args.quick and args.epochs is None else args.epochs

    dataset = load(args.dataset, rows, args.seed)
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    table: list[dict[str, Any]] = []
    for generator in generators:
        out = WORK / f"{args.dataset}{'-quick' if args.quick else ''}" / generator
        print(f"[{generator}] fitting on {dataset.train.height:,} rows …", flush=True)
        row = run_worker(generator, args.dataset, out, rows=rows, epochs=epochs, seed=args.seed,
                         timeout=args.timeout, python=interpreters.get(generator))
        if "error" not in row:
            synthetic = pl.read_parquet(out / "synthetic.parquet")
            row |= score(args.dataset, dataset.train, dataset.holdout, dataset.target, synthetic)
        table.append(row)
        print(markdown_table([row]).splitlines()[-1], flush=True)

    stamp = date.today().isoformat()
    name = f"{args.dataset}-{stamp}{'-quick' if args.quick else ''}{'-' + args.label if args.label else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"dataset": args.dataset, "note": dataset.note, "date": stamp, "machine": machine(),
              "versions": versions(), "train_rows": dataset.train.height, "holdout_rows": dataset.holdout.height,
              "target": dataset.target, "quick": args.quick, "epochs": epochs, "results": table}
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    text = markdown_table(table)
    header = (f"# {args.dataset} — {stamp}{' (quick)' if args.quick else ''}\n\n{dataset.note}; trained on "
              f"{dataset.train.height:,} rows, scored on {dataset.holdout.height:,} holdout rows.\n"
              f"Machine: {machine()}.\nVersions: {', '.join(f'{k} {v}' for k, v in versions().items())}.\n\n")
    (args.out / f"{name}.md").write_text(header + text + "\n")
    print()
    print(text)
    failed = [row["generator"] for row in table if "error" in row]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
