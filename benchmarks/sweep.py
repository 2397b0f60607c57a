"""Public tables we never tuned on, each run as a new user would: ``synthforge profile`` → ``synthforge run``.

    python -m benchmarks.sweep --generator copula
    python -m benchmarks.sweep --generator autoregressive --set epochs=60 --tables meat,msleep,penguins
    python -m benchmarks.sweep --generator autoregressive --seeds 1,2,3 --jobs 2   # each table at three seeds

The tables are those plotnine (ggplot2's data, MIT) and statsmodels (BSD-3; each dataset's own notes in
``statsmodels.datasets``) ship inside their wheels, so nothing is downloaded. Each is written to CSV, profiled,
and run with the starter recipe ``profile`` writes (its rules kept, the default checks and gates), the generator
and ``--set`` params overridden. The recipe's seed (``--seeds``) drives the holdout split as well as the model, so
seeds measure how a verdict moves across splits. The table printed is each run's exit status, seconds and its
checks' scores, a ``*`` on a failed gate, and, over all runs, the mean membership AUC and the median DCR ratio.
Results: ``results/sweep-<generator>-<date>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLOTNINE = ["economics", "economics_long", "faithful", "huron", "luv_colours", "meat", "midwest", "mpg", "msleep",
            "mtcars", "penguins", "presidential", "seals", "txhousing"]
STATSMODELS = ["anes96", "ccard", "china_smoking", "committee", "copper", "cpunish", "danish_data", "elnino",
               "engel", "fair", "fertility", "grunfeld", "heart", "interest_inflation", "longley", "macrodata",
               "modechoice", "nile", "randhie", "scotland", "spector", "star98", "statecrime", "strikes",
               "sunspots"]
CLI = str(Path(sys.executable).with_name("synthforge"))  # the venv's command, as a user runs it
SCORES = ["column_shapes", "pair_trends", "detection", "dcr_share", "dcr_ratio", "membership_inference",
          "rare_combinations"]


def write_tables(folder: Path, names: list[str] | None) -> list[Path]:
    """Each shipped table as ``<name>.csv`` in ``folder`` (statsmodels' prefixed ``sm_``)."""
    import pandas as pd
    import plotnine.data
    import statsmodels.api as sm

    paths = []
    for name, load in [*((n, lambda n=n: getattr(plotnine.data, n)) for n in PLOTNINE),
                       *((f"sm_{n}", lambda n=n: getattr(sm.datasets, n).load_pandas().data) for n in STATSMODELS)]:
        if names and name not in names:
            continue
        frame = load().copy()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(object)
        frame.to_csv(folder / f"{name}.csv", index=False)
        paths.append(folder / f"{name}.csv")
    return paths


def run_one(csv: Path, generator: str, params: list[str], seed: int | None = None,
            threads: int | None = None) -> dict:
    """Profile ``csv`` into a starter recipe and run it; the run's status, seconds, rows and check scores."""
    tag = "" if seed is None else f"-seed{seed}"
    recipe = csv.with_name(f"{csv.stem}{tag}.yaml")
    with recipe.open("w") as out:
        profiled = subprocess.run([CLI, "profile", str(csv)], stdout=out,
                                  stderr=subprocess.PIPE, text=True, cwd=csv.parent)
    if profiled.returncode:
        return {"table": csv.stem, "seed": seed, "status": f"profile failed: {profiled.stderr.strip()[-200:]}"}
    output = csv.parent / f"{csv.stem}-{generator}{tag}"
    overrides = ["-p", f"generator.name={generator}", "-p", f"output.path={output}"]
    if seed is not None:
        overrides += ["-p", f"seed={seed}"]
    if threads is not None:
        overrides += ["-p", f"generator.threads={threads}"]
    for item in params:
        overrides += ["-p", f"generator.params.{item}"]
    started = time.perf_counter()
    run = subprocess.run([CLI, "run", str(recipe), *overrides],
                         capture_output=True, text=True, cwd=csv.parent)
    seconds = time.perf_counter() - started
    report = next((p for p in (output / "report.json", output.with_name(output.name + ".failed") / "report.json")
                   if p.exists()), None)
    row = {"table": csv.stem, "seed": seed,
           "status": {0: "written", 3: "gates failed"}.get(run.returncode, "error"), "seconds": round(seconds, 1)}
    if report is None:
        row["error"] = (run.stderr.strip().splitlines() or [""])[-1][:300]
        return row
    row["retried"] = _retried(output / "manifest.json", run.stderr)
    written = json.loads(report.read_text())
    checks = {check["name"]: check for check in written["checks"]}
    row["rows"] = written.get("rows", {}).get("train")
    for name in SCORES:
        check = checks.get(name)
        if check is not None:
            score = check.get("score")
            row[name] = ("n/a" if score is None else f"{score:.3f}") + ("" if check.get("passed", True) else "*")
    return row


def _retried(manifest: Path, stderr: str) -> str:
    """What the run's refits after a privacy gate's refusal changed (engine.MAX_PRIVATE_RETRIES), from its manifest
    when it wrote, else from the error it stopped on."""
    if manifest.exists():
        retries = json.loads(manifest.read_text()).get("privacy_retries", [])
        return "; ".join(", ".join(f"{k} {v}" for k, v in r["changed"].items()) for r in retries)
    tried = [line.strip() for line in stderr.splitlines() if "refitted with" in line or "more private refit" in line]
    return " ".join(tried)[:200]


def _scores(rows: list[dict], name: str) -> list[float]:
    values = (str(row.get(name, "")).rstrip("*") for row in rows)
    return [float(v) for v in values if v.replace(".", "", 1).isdigit()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="copula")
    parser.add_argument("--set", action="append", default=[], help="a generator param, key=value (repeatable)")
    parser.add_argument("--tables", default="", help="comma-separated names (default: all)")
    parser.add_argument("--seeds", default="", help="comma-separated recipe seeds, each table run at each "
                                                    "(default: the starter recipe's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores / jobs threads)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    names = [n for n in args.tables.split(",") if n]
    seeds: list[int | None] = [int(s) for s in args.seeds.split(",") if s] or [None]
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    with tempfile.TemporaryDirectory(prefix="synthforge-sweep-") as folder:
        runs = [(csv, seed) for csv in write_tables(Path(folder), names) for seed in seeds]

        def one(run: tuple[Path, int | None]) -> dict:
            row = run_one(run[0], args.generator, args.set, run[1], threads)
            print(json.dumps(row), flush=True)
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(one, runs))
    header = ["table", "seed", "rows", "status", "seconds", *SCORES, "retried"]
    settings = " ".join([*args.set, *([f"seeds {args.seeds}"] if args.seeds else [])])
    lines = [f"# Sweep: {args.generator} {settings} — {date.today()}", "",
             f"{platform.machine()}, Python {platform.python_version()}; `*`: the check failed its gate.", "",
             "| " + " | ".join(header) + " | error |", "|" + "---|" * (len(header) + 1)]
    lines += ["| " + " | ".join("–" if row.get(key) is None else str(row[key]) for key in header)
              + f" | {row.get('error', '')} |" for row in rows]
    written = sum(row["status"] == "written" for row in rows)
    membership, ratio = _scores(rows, "membership_inference"), _scores(rows, "dcr_ratio")
    lines += ["", f"{written} of {len(rows)} runs wrote their dataset; mean membership AUC "
                  f"{statistics.fmean(membership) if membership else float('nan'):.3f}, median DCR ratio "
                  f"{statistics.median(ratio) if ratio else float('nan'):.3f}."]
    args.out.mkdir(parents=True, exist_ok=True)
    label = "-".join([args.generator, *(s.replace("=", "") for s in args.set),
                      *([f"seeds{args.seeds.replace(',', '_')}"] if args.seeds else [])])
    (args.out / f"sweep-{label}-{date.today()}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
