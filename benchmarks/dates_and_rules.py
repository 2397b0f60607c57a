"""Our generators on a real table with a date held as text and a rule in every row (issue 20).

    python -m benchmarks.dates_and_rules [--generators copula,autoregressive,vae,gan,diffusion]

Seattle's weather (recipes/data/seattle-weather, 1,461 days, NOAA via vega_datasets, MIT): each
generator at its defaults, one CPU thread, a seeded 80/20 split, run twice through the engine, with
the rule ``temp_min <= temp_max`` declared and without. Prints one JSON line per run: fit seconds,
SynthForge's column shapes (the date column's own, compared as dates), pair trends, detection AUC,
TSTR ROC AUC for the weather label next to train-on-real, DCR share, membership AUC, the share of
output rows that keep the rule, and whether every date is written as the source writes it.
Peers (SDV, TabularARGN) are not in this run yet: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from synthforge.engine import run

DATA = Path(__file__).resolve().parent.parent / "recipes" / "data" / "seattle-weather" / "seattle-weather.csv"


def measure(generator: str, constrained: bool, out: Path, adapt: bool = True, seed: int = 0) -> dict:
    params = {} if adapt or generator == "copula" else {"adapt_to_table": False}
    recipe = {"name": f"seattle-{generator}", "seed": seed,
              "source": {"path": str(DATA), "columns": {"date": {"kind": "datetime", "format": "%Y/%m/%d"}}},
              "holdout": 0.2, "generator": {"name": generator, "threads": 1, "params": params}, "target": "weather",
              "output": {"path": str(out / f"{generator}-{constrained}-{adapt}-{seed}"), "format": "csv"},
              "constraints": ["temp_min <= temp_max"] if constrained else []}
    started = time.perf_counter()
    result = run(recipe)
    checks = {c.name: c for c in result.checks}
    data = pl.read_csv(result.dataset_path)
    return {"generator": generator, "constraints": "declared" if constrained else "none", "seed": seed,
            "params": "adapted" if adapt else "class defaults", "epochs": result.generator.params.model_dump().get(
                "epochs"), "batch_size": result.generator.params.model_dump().get("batch_size"),
            "fit_s": round(result.timings["fit"], 1), "shapes": round(checks["column_shapes"].score, 3),
            "date_shape": round(checks["column_shapes"].details["columns"]["date"], 3),
            "trends": round(checks["pair_trends"].score, 3), "detection": round(checks["detection"].score, 3),
            "tstr": round(checks["ml_efficacy"].score, 3), "trtr": round(checks["ml_efficacy"].details["real"], 3),
            "dcr_share": round(checks["dcr_share"].score, 3), "mia": round(checks["membership_inference"].score, 3),
            "rule_share": round(float((data["temp_min"] <= data["temp_max"]).mean()), 4),
            "dates_as_source": bool(data["date"].str.contains(r"^\d{4}/\d\d/\d\d$").all()),
            "wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", default="copula,autoregressive,vae,gan,diffusion")
    parser.add_argument("--constraints", default="declared,none", help="declared, none or both")
    parser.add_argument("--params", default="adapted", help="adapted, defaults (adapt_to_table: false) or both")
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for generator in args.generators.split(","):
            for adapt in [variant == "adapted" for variant in args.params.split(",")]:
                for constrained in [variant == "declared" for variant in args.constraints.split(",")]:
                    for seed in map(int, args.seeds.split(",")):
                        try:
                            row = measure(generator, constrained, Path(folder), adapt, seed)
                        except Exception as error:  # a failed gate is a result too
                            row = {"generator": generator, "params": "adapted" if adapt else "class defaults",
                                   "seed": seed, "error": str(error)[:300]}
                        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
