"""Related tables at scale: fit and sample time, peak RSS, as the child table grows (issue 17).

    python -m benchmarks.related_scale [--scales 1,10,100,600] [--generator autoregressive] [--epochs 5]

Gapminder (142 countries → 1,704 observations, recipes/data/gapminder) is made ``k`` times larger by
resampling whole countries with their sequences (new keys), so the 600× run has 85,200 countries and
1,022,400 child rows. Each scale trains at a fixed number of epochs (the adaptive defaults off, so
cost per row is comparable) in its own process, and samples as many countries as it trained on.
Prints one JSON line per scale: rows, fit s, sample s, child rows sampled per second, peak RSS MB,
and the multiple of the 1× time per multiple of rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.memory import own_peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "recipes" / "data" / "gapminder"


def grown(scale: int, seed: int = 0) -> dict[str, pl.DataFrame]:
    countries = pl.read_csv(DATA / "countries.csv")
    observations = pl.read_csv(DATA / "observations.csv")
    rng = np.random.default_rng(seed)
    picked = countries[rng.integers(0, countries.height, countries.height * scale)].with_row_index("copy")
    new = picked.with_columns((pl.col("country") + "#" + pl.col("copy").cast(pl.String)).alias("key"))
    children = observations.join(new.select("country", "key"), on="country").drop("country").rename(
        {"key": "country"})
    return {"countries": new.drop("country", "copy").rename({"key": "country"}), "observations": children}


def work(scale: int, generator: str, epochs: int) -> dict:
    import synthforge
    from synthforge.data.schema import ColumnKind, ColumnOverride, infer_schema
    from synthforge.generator import FitContext
    from synthforge.relational import DatabaseGenerator, Relation, Relations

    tables = grown(scale)
    relations = Relations(["countries", "observations"], {"countries": "country", "observations": None},
                          [Relation("observations", "country", "countries", True, "year")])
    identifier = ColumnOverride(kind=ColumnKind.identifier)
    schemas = {"countries": infer_schema(tables["countries"], {"country": identifier}),
               "observations": infer_schema(tables["observations"], {"country": identifier})}
    cls = synthforge.get_plugin_manager().get_generator(generator)
    params = {"epochs": epochs, "adapt_to_table": False} if "epochs" in cls.Params.model_fields else {}
    model = DatabaseGenerator(relations, lambda table: cls(params))
    started = time.perf_counter()
    model.fit(tables, schemas, lambda table: FitContext(seed=1))
    fitted = time.perf_counter()
    sampled = model.sample(seed=2)
    done = time.perf_counter()
    rows = sampled["observations"].height
    return {"scale": scale, "countries": tables["countries"].height, "child_rows": tables["observations"].height,
            "fit_s": round(fitted - started, 1), "sample_s": round(done - fitted, 1),
            "child_rows_per_s": round(rows / max(done - fitted, 1e-9)),
            "peak_rss_mb": round(own_peak_rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,100,600")
    parser.add_argument("--generator", default="autoregressive")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(work(args.worker, args.generator, args.epochs)))
        return
    first = None
    for scale in map(int, args.scales.split(",")):
        done = subprocess.run([sys.executable, "-m", "benchmarks.related_scale", "--worker", str(scale),
                               "--generator", args.generator, "--epochs", str(args.epochs)], cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(json.dumps({"scale": scale, "error": done.stderr.strip().splitlines()[-1:]}), flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        first = first or row
        factor = row["child_rows"] / first["child_rows"]
        row["fit_x_per_rows_x"] = round(row["fit_s"] / max(first["fit_s"], 1e-9) / factor, 2)
        row["sample_x_per_rows_x"] = round(row["sample_s"] / max(first["sample_s"], 1e-9) / factor, 2)
        print(json.dumps({"generator": args.generator, "epochs": args.epochs, **row}), flush=True)


if __name__ == "__main__":
    main()
