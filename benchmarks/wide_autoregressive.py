"""The autoregressive fit's cost per row and epoch: Adult (15 columns) against a 50-column table (issue 20).

    python -m benchmarks.wide_autoregressive [--epochs 6] [--defaults]

The wide table is Adult's first 5,050 rows beside three row-shuffled copies of its columns, cut to 50 columns:
real marginals, 50 learned columns. Both fits use batch 512 and the same epochs (``--defaults``: the wide
table also at its adapted defaults), one process, the machine's threads. Prints a JSON line per fit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

import synthforge
from synthforge.generator import FitContext

ADULT = Path(__file__).resolve().parent.parent / "recipes" / "data" / "adult" / "train.csv"


def wide_table(adult: pl.DataFrame, rows: int = 5050, columns: int = 50) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    copies = [adult] + [adult[rng.permutation(adult.height)].rename(lambda c, k=k: f"{c}_{k}") for k in range(1, 4)]
    wide = pl.concat(copies, how="horizontal").head(rows)
    return wide.select(wide.columns[:columns])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--defaults", action="store_true", help="also fit the wide table at its defaults")
    args = parser.parse_args()
    adult = pl.read_csv(ADULT)
    cls = synthforge.get_plugin_manager().get_generator("autoregressive")
    runs = [("adult", adult, {"epochs": args.epochs, "batch_size": 512}),
            ("wide-50", wide_table(adult), {"epochs": args.epochs, "batch_size": 512})]
    if args.defaults:
        runs.append(("wide-50 at defaults", wide_table(adult), {}))
    for name, table, params in runs:
        model = cls(params)
        started = time.perf_counter()
        model.fit(table, None, FitContext(seed=0))
        seconds = time.perf_counter() - started
        epochs = model.params.epochs
        print(json.dumps({"table": name, "rows": table.height, "columns": table.width, "epochs": epochs,
                          "batch_size": model.params.batch_size, "fit_s": round(seconds, 2),
                          "us_per_row_epoch": round(1e6 * seconds / (table.height * epochs), 1)}), flush=True)


if __name__ == "__main__":
    main()
