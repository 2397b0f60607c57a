"""Checks of a dataset of related tables as a whole: cardinality, trends across tables, keys, sequences.

A :class:`RelationalCheck` is registered like any check and gated the same way in a recipe's
``checks:``; it is given every table at once (:class:`Database`), where a table check is given one.
The scores follow SDMetrics' multi-table QualityReport where it has one: Cardinality is the KS
complement of the number of children per parent row (zeros included), per relationship;
Intertable Trends are the column-pair similarities of each child joined with its parent, over the
pairs of one parent and one child column; ``quality_report`` is their mean with Column Shapes and
Column Pair Trends over every table's columns, as SDMetrics' overall score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import product
from typing import Any, ClassVar

import numpy as np
import polars as pl

from synthforge.checks import metrics
from synthforge.checks.base import Check, CheckResult, Gate
from synthforge.checks.builtin import column_shape_scores, ks_complement, rate_ceiling
from synthforge.checks.suite import DCRShare
from synthforge.data.schema import ColumnSpec, Schema
from synthforge.hookspecs import hookimpl
from synthforge.relational import Relation, Relations


@dataclass
class Database:
    """Real (training), holdout and synthetic tables by name, in internal form, with their schemas."""

    relations: Relations
    schemas: dict[str, Schema]
    train: dict[str, pl.DataFrame]
    holdout: dict[str, pl.DataFrame] | None
    synthetic: dict[str, pl.DataFrame]

    def sequences(self) -> list[Relation]:
        return [r for r in self.relations.relations if r.sequence_by]


class RelationalCheck(Check):
    relational: ClassVar[bool] = True

    @classmethod
    def applies_to(cls, database: Database) -> bool:
        return bool(database.relations.relations)

    def measure_database(self, database: Database) -> tuple[float | None, str, dict[str, Any]]:
        raise NotImplementedError

    def run_database(self, database: Database, gate: Gate | None = None) -> CheckResult:
        started = time.perf_counter()
        score, summary, details = self.measure_database(database)
        return self.judge(score, summary, details, gate, time.perf_counter() - started)


def children_per_parent(parent: pl.DataFrame, key: str, child: pl.DataFrame, column: str) -> np.ndarray:
    """How many ``child`` rows each ``parent`` row has (zeros included)."""
    counts = child.group_by(column).len("__n").with_columns(pl.col(column).cast(parent.schema[key], strict=False))
    joined = parent.select(key).join(counts, left_on=key, right_on=column, how="left")
    return joined.get_column("__n").fill_null(0).to_numpy()


def cardinality_scores(database: Database) -> dict[str, dict[str, Any]]:
    """Per relationship: the KS complement of children per parent, and both histograms for the report."""
    scores = {}
    for relation in database.relations.relations:
        key = database.relations.primary_keys[relation.parent]
        real = children_per_parent(database.train[relation.parent], key, database.train[relation.child],
                                   relation.column)
        fake = children_per_parent(database.synthetic[relation.parent], key, database.synthetic[relation.child],
                                   relation.column)
        score = ks_complement(pl.Series(real), pl.Series(fake)) if len(real) and len(fake) else 0.0
        top = int(max(np.percentile(real, 99) if len(real) else 1, 1))
        edges = np.linspace(0, top + 1, min(top + 2, 31))
        scores[relation.describe()] = {
            "score": score, "edges": edges.tolist(),
            "real": (np.histogram(np.minimum(real, top), edges)[0] / max(len(real), 1)).tolist(),
            "synthetic": (np.histogram(np.minimum(fake, top), edges)[0] / max(len(fake), 1)).tolist(),
            "mean": {"real": float(real.mean()) if len(real) else 0.0,
                     "synthetic": float(fake.mean()) if len(fake) else 0.0}}
    return scores


def _joined(database: Database, relation: Relation, side: str) -> pl.DataFrame:
    tables = database.train if side == "real" else database.synthetic
    key = database.relations.primary_keys[relation.parent]
    parent = tables[relation.parent].select(pl.col(key).alias("__key"), pl.all().name.prefix(f"{relation.parent}."))
    child = tables[relation.child].select(
        pl.col(relation.column).cast(parent.schema["__key"], strict=False).alias("__key"),
        pl.all().name.prefix(f"{relation.child}."))
    return child.join(parent, on="__key", how="inner").drop("__key")


def _joined_schema(database: Database, relation: Relation) -> Schema:
    columns: list[ColumnSpec] = []
    for table in (relation.child, relation.parent):
        columns += [c.model_copy(update={"name": f"{table}.{c.name}"}) for c in database.schemas[table].learned]
    return Schema(columns=columns)


def intertable_scores(database: Database) -> dict[str, float]:
    """Similarity of every (parent column, child column) pair in each child joined with its parent."""
    scores: dict[str, float] = {}
    for relation in database.relations.relations:
        schema = _joined_schema(database, relation)
        real, fake = _joined(database, relation, "real"), _joined(database, relation, "synthetic")
        if real.height == 0 or fake.height == 0:
            continue
        pairs = metrics.pair_trend_scores(real, fake, schema, correlation_threshold=0, association_threshold=0)
        parent_columns = {f"{relation.parent}.{c.name}" for c in database.schemas[relation.parent].learned}
        child_columns = {f"{relation.child}.{c.name}" for c in database.schemas[relation.child].learned}
        for a, b in product(child_columns, parent_columns):
            for name in (f"{a} × {b}", f"{b} × {a}"):
                if name in pairs:
                    scores[f"{relation.describe()}: {name}"] = pairs[name]["score"]
    return scores


class Cardinality(RelationalCheck):
    name = "cardinality"
    kind = "quality"
    description = ("Mean over relationships of the KS complement of the number of child rows per parent row "
                   "(SDMetrics' CardinalityShapeSimilarity).")
    default = True
    default_min = 0.8
    default_on_fail = "warn"

    def measure_database(self, database):
        scores = cardinality_scores(database)
        if not scores:
            return None, "no relationships", {}
        worst = min(scores, key=lambda name: scores[name]["score"])
        score = float(np.mean([s["score"] for s in scores.values()]))
        return score, f"mean {score:.3f}; worst {worst} {scores[worst]['score']:.3f}", {"relationships": scores}


class IntertableTrends(RelationalCheck):
    name = "intertable_trends"
    kind = "quality"
    description = ("Mean similarity of the pairs of a parent column and a child column, in each child table joined "
                   "with its parent (SDMetrics' InterTableTrends).")
    default = True
    default_min = 0.7
    default_on_fail = "warn"

    def measure_database(self, database):
        scores = intertable_scores(database)
        if not scores:
            return None, "no pair of a parent and a child column", {}
        worst = sorted(scores, key=scores.__getitem__)[:5]
        score = float(np.mean(list(scores.values())))
        return score, f"mean over {len(scores)} pairs {score:.3f}; worst {worst[0]!r} {scores[worst[0]]:.3f}", \
            {"pairs": scores, "worst": worst}


class ReferentialIntegrity(RelationalCheck):
    name = "referential_integrity"
    kind = "quality"
    description = "Share of foreign keys (not null) that are a key of a row of their parent table: 1 is required."
    default = True
    mandatory = True
    default_min = 1.0

    def measure_database(self, database):
        shares = {}
        for relation in database.relations.relations:
            keys = database.synthetic[relation.child].get_column(relation.column).drop_nulls()
            known = database.synthetic[relation.parent].get_column(database.relations.primary_keys[relation.parent])
            found = keys.cast(pl.String).is_in(known.cast(pl.String).implode())
            shares[relation.describe()] = float(found.mean()) if keys.len() else 1.0
        score = min(shares.values()) if shares else 1.0
        return score, ", ".join(f"{name}: {share:.2%}" for name, share in shares.items()), {"relationships": shares}


def _sequence_frames(database: Database, relation: Relation, tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    order = relation.sequence_by
    return tables[relation.child].with_row_index("__file_order").select("__file_order", relation.column, order)


class SequenceOrder(RelationalCheck):
    name = "sequence_order"
    kind = "quality"
    description = ("Share of synthetic sequences whose rows, in file order, keep the order column non-decreasing; "
                   "the gate is the real share.")
    default = True

    @classmethod
    def applies_to(cls, database):
        return bool(database.sequences())

    def measure_database(self, database):
        shares = {}
        for relation in database.sequences():
            shares[relation.describe()] = {side: _ordered_share(_sequence_frames(database, relation, tables),
                                                                relation)
                                           for side, tables in (("real", database.train),
                                                                ("synthetic", database.synthetic))}
        score = min(s["synthetic"] for s in shares.values())
        return score, ", ".join(f"{n}: {s['synthetic']:.2%} in order (real {s['real']:.2%})"
                                for n, s in shares.items()), {"sequences": shares}

    def gate_from_data(self, details):
        return min(s["real"] for s in details["sequences"].values()), None


def _ordered_share(frame: pl.DataFrame, relation: Relation) -> float:
    order = relation.sequence_by
    kept = frame.sort("__file_order").group_by(relation.column, maintain_order=True).agg(
        (pl.col(order).diff().drop_nulls() >= pl.duration() if frame.schema[order].is_temporal()
         else pl.col(order).diff().drop_nulls() >= 0).all().alias("ordered"))
    return float(kept.get_column("ordered").mean()) if kept.height else 1.0


def sequence_hashes(database: Database, relation: Relation, tables: dict[str, pl.DataFrame]) -> pl.Series:
    """One hash per sequence of two or more rows: its rows' learned values, in order, keys left out."""
    schema = database.schemas[relation.child]
    keys = set(database.relations.keys(relation.child))
    columns = [c.name for c in schema.learned if c.name not in keys and c.name != relation.sequence_by]
    frame = tables[relation.child].sort(relation.column, relation.sequence_by, maintain_order=True)
    gaps = (pl.col(relation.sequence_by).diff().over(relation.column)).alias("__gap")
    hashed = frame.with_columns(gaps).select(
        relation.column, pl.struct(*columns, "__gap").hash(seed=0).alias("__h"))
    grouped = hashed.group_by(relation.column, maintain_order=True).agg(pl.col("__h"), pl.len().alias("__n"))
    return grouped.filter(pl.col("__n") >= 2).get_column("__h").hash(seed=0)


class SequenceCopies(RelationalCheck):
    name = "sequence_copies"
    kind = "privacy"
    description = ("Share of synthetic sequences (two or more rows) that repeat a real parent's whole sequence, "
                   "values and gaps; the gate allows no more than the holdout's own share (plus two standard "
                   "errors).")
    default = True
    mandatory = True

    @classmethod
    def applies_to(cls, database):
        return bool(database.sequences())

    def measure_database(self, database):
        found: dict[str, dict[str, Any]] = {}
        for relation in database.sequences():
            real = sequence_hashes(database, relation, database.train).implode()
            fake = sequence_hashes(database, relation, database.synthetic)
            found[relation.describe()] = {"copies": int(fake.is_in(real).sum()), "sequences": fake.len()}
            if database.holdout is not None:
                held = sequence_hashes(database, relation, database.holdout)
                found[relation.describe()]["holdout_share"] = float(held.is_in(real).mean()) if held.len() else 0.0
        copies = sum(f["copies"] for f in found.values())
        total = sum(f["sequences"] for f in found.values())
        share = copies / max(total, 1)
        return share, f"{copies:,} of {total:,} synthetic sequences repeat a real one", \
            {"sequences": found, "rows": total,
             "holdout_share": max((f.get("holdout_share", 0.0) for f in found.values()), default=0.0)}

    def gate_from_data(self, details):
        return None, rate_ceiling(details["holdout_share"], details["rows"], standard_errors=2)


def parent_summaries(database: Database, table: str, tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """``table``'s learned columns with, per child table, its rows' count and its numeric columns' means."""
    relations = database.relations
    key = relations.primary_keys[table]
    frame = tables[table]
    for relation in relations.children(table):
        numeric = [c.name for c in database.schemas[relation.child].learned if c.kind.numeric
                   and c.name not in relations.keys(relation.child) and c.kind.value in ("continuous", "integer")]
        summary = tables[relation.child].group_by(relation.column).agg(
            pl.len().alias(f"{relation.child}.rows"),
            *[pl.col(c).cast(pl.Float64).mean().alias(f"{relation.child}.mean.{c}") for c in numeric])
        summary = summary.with_columns(pl.col(relation.column).cast(frame.schema[key], strict=False))
        frame = frame.join(summary, left_on=key, right_on=relation.column, how="left").with_columns(
            pl.col(f"{relation.child}.rows").fill_null(0))
    return frame


class ParentDCR(RelationalCheck):
    name = "parent_dcr_share"
    kind = "privacy"
    description = ("The DCR share (see dcr_share) of each entity table's rows joined with summaries of their "
                   "children (count, means): a whole entity with its children no closer to training than holdout.")
    default = True
    needs_holdout = True
    default_max = DCRShare.default_max
    below_is_fidelity = DCRShare.below_is_fidelity

    @classmethod
    def applies_to(cls, database):
        return database.holdout is not None and bool(database.relations.entity_roots())

    def measure_database(self, database):
        shares = {}
        floors, ceilings = [], []
        for table in database.relations.entity_roots():
            schema = self._schema(database, table)
            frames = [parent_summaries(database, table, tables)
                      for tables in (database.train, database.holdout, database.synthetic)]
            result = DCRShare().run(*frames, schema)
            shares[table] = result.score
            floors.append(result.details.get("implausible_below"))
            ceilings.append(result.details.get("chance_above"))
        score = max(s for s in shares.values() if s is not None)
        return score, ", ".join(f"{t}: {s:.1%} of synthetic entities closer to training than holdout"
                                for t, s in shares.items()), \
            {"tables": shares, "implausible_below": min(f for f in floors if f is not None),
             "chance_above": max(c for c in ceilings if c is not None)}

    def gate_from_data(self, details):
        # Entities are few (a hundred countries): the ceiling is as far above 0.5 as chance reaches, 0.6 at least.
        return details.get("implausible_below"), details.get("chance_above", self.default_max)

    @staticmethod
    def _schema(database: Database, table: str) -> Schema:
        relations = database.relations
        columns = [c for c in database.schemas[table].learned if c.name not in relations.keys(table)]
        for relation in relations.children(table):
            columns.append(ColumnSpec(name=f"{relation.child}.rows", kind="integer", dtype="Int64"))
            columns += [ColumnSpec(name=f"{relation.child}.mean.{c.name}", kind="continuous", dtype="Float64",
                                   null_rate=0.5)
                        for c in database.schemas[relation.child].learned
                        if c.kind.value in ("continuous", "integer") and c.name not in relations.keys(relation.child)]
        return Schema(columns=columns)


def sdmetrics_metadata(relations: Relations, schemas: dict[str, Schema]) -> dict[str, Any]:
    """The dataset described as SDMetrics' multi-table reports take it: keys as ids, learned columns by kind."""
    metadata: dict[str, Any] = {"tables": {}, "relationships": []}
    for name, schema in schemas.items():
        columns = {}
        for spec in schema.columns:
            if spec.name in relations.keys(name):
                columns[spec.name] = {"sdtype": "id"}
            elif spec.kind.learned:
                columns[spec.name] = {"sdtype": "datetime" if spec.kind.value == "datetime" else
                                      "numerical" if spec.kind.numeric else "categorical"}
        primary = relations.primary_keys[name]
        metadata["tables"][name] = {"columns": columns, **({"primary_key": primary} if primary else {})}
    metadata["relationships"] = [{"parent_table_name": r.parent, "child_table_name": r.child,
                                  "parent_primary_key": relations.primary_keys[r.parent], "child_foreign_key": r.column}
                                 for r in relations.relations]
    return metadata


def quality_properties(database: Database) -> dict[str, float | None]:
    """SDMetrics' multi-table QualityReport properties and overall score, computed here."""
    shapes: list[float] = []
    pairs: list[float] = []
    for table, schema in database.schemas.items():
        keys = set(database.relations.keys(table))
        learned = Schema(columns=[c for c in schema.learned if c.name not in keys])
        shapes += column_shape_scores(database.train[table], database.synthetic[table], learned).values()
        if database.synthetic[table].height:
            pairs += [p["score"] for p in metrics.pair_trend_scores(database.train[table], database.synthetic[table],
                                                                    learned).values() if p["counts"]]
    cardinality = [s["score"] for s in cardinality_scores(database).values()]
    intertable = list(intertable_scores(database).values())
    properties = {name: float(np.mean(values)) if values else None for name, values in (
        ("column_shapes", shapes), ("column_pair_trends", pairs), ("cardinality", cardinality),
        ("intertable_trends", intertable))}
    present = [v for v in properties.values() if v is not None]
    return {"overall": float(np.mean(present)) if present else None, **properties}


class QualityReport(RelationalCheck):
    name = "quality_report"
    kind = "quality"
    description = ("SDMetrics' multi-table quality score: the mean of Column Shapes, Column Pair Trends, "
                   "Cardinality and Intertable Trends, each averaged over every column, pair or relationship.")
    default = True
    default_min = 0.7
    default_on_fail = "warn"

    def measure_database(self, database):
        properties = quality_properties(database)
        shown = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in properties.items()
                          if k != "overall" and v is not None)
        return properties["overall"], f"overall {properties['overall']:.3f} ({shown})", properties


@hookimpl
def synthforge_checks() -> list[type[Check]]:
    return [Cardinality, IntertableTrends, ReferentialIntegrity, SequenceOrder, SequenceCopies, ParentDCR,
            QualityReport]
