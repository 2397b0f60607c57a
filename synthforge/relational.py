"""Related tables: a dataset of tables joined by keys, learned and generated in its structure.

A recipe's ``source.tables`` names each table's file, its primary key and its foreign keys. A
table's *first* foreign key makes it a **child** of that parent: its rows are generated for each
synthetic parent row. Further foreign keys are **references** (flights → airports besides
flights → planes): a synthetic row gets a key of a synthetic row of that table, never a dangling one.
A child with ``sequence_by`` is a **sequence**: each parent's rows ordered by that column.

How it is learned, table by table, parents first (:meth:`Relations.order`):

- **cardinality**: a parent table learns, beside its own columns, how many rows each of its children
  has (``__rows.<child>``), and where each child sequence starts (``__start.<child>``), so the
  number of children and the start are learned jointly with the parent's attributes, not copied;
  the sampled counts are then mapped rank for rank onto each count's learned distribution (a
  quantile table, as a number's encoder learns it), so the model decides which parents have many
  children and the distribution how many — a 16-row table's counts come out as learned too;
- **context**: a child table is learned with its parent's learned columns beside its own
  (``<parent>.<column>``); it is sampled with :meth:`synthforge.Generator.sample_given`, one row per
  child, given its synthetic parent. A generator that conditions per row (``supports_context``,
  the autoregressive one) sees all of the parent, and for a sequence the row's position and the row
  before it (``prev.<column>``); any other generator gets the documented fallback: conditioned on
  the parent's categorical columns (see ``sample_given``), rows of a sequence drawn independently;
- **order**: a sequence's order column is learned as the gap to the row before
  (``__gap.<column>`` ≥ 0) and rebuilt from the learned start, so every synthetic sequence is
  in order by construction;
- **references**: the child learns the referenced row's attributes (``<key>-><column>``); each
  synthetic row takes the key of the synthetic referenced row nearest to what it drew;
- **keys**: every primary key is regenerated (integers above the largest real one, or text with a
  prefix no real key has), and foreign keys are those new keys: no real key is in the output and
  referential integrity is exact.

Copy protection works per table (a row copying a rare real row is drawn again, given the same
parent), and for whole sequences: a synthetic sequence equal to a real parent's sequence is drawn again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from synthforge.data.identifiers import plan_identifier, real_values_to_avoid, regenerate_columns
from synthforge.data.schema import ColumnKind, ColumnOverride, ColumnSpec, Schema, infer_schema, to_internal, to_source
from synthforge.errors import DataError, ModelError, RecipeError
from synthforge.generator import matching_rows, model_directory, rare_row_hashes
from synthforge.seeds import derive_seed

if TYPE_CHECKING:
    from synthforge.generator import FitContext, Generator
    from synthforge.plugins import SynthForgePluginManager
    from synthforge.recipe import Recipe

ROWS = "__rows."
REFERRED = "__referred."
START = "__start."
GAP = "__gap."
FIRST = "__first."
CHANGE = "__change."
POSITION = "__position"
PREVIOUS = "prev."
REFERENCE = "->"
DATABASE_FILE = "database.json"
# A synthetic sequence equal to a real one is drawn again this many times, then the run fails.
MAX_SEQUENCE_REDRAWS = 20
# A sequence's number whose consecutive values correlate above this is learned as its changes.
CHANGE_CORRELATION = 0.9
# ... and a positive one whose largest value is this many times its smallest changes by factors.
RELATIVE_RANGE = 100
# A count of children (or of references) with more distinct values than this is learned as a measurement.
MAX_COUNT_VALUES = 10
# The fallback conditions on a parent's categorical columns with at most this many values.
MAX_CONTEXT_CATEGORIES = 50


@dataclass(frozen=True)
class Relation:
    """``child.column`` holds keys of ``parent``; ``primary`` when it is the child's first foreign key."""

    child: str
    column: str
    parent: str
    primary: bool
    sequence_by: str | None = None

    def describe(self) -> str:
        return f"{self.child}.{self.column} → {self.parent}"


@dataclass
class Relations:
    """The tables of a dataset, their primary keys and the foreign keys between them."""

    tables: list[str]
    primary_keys: dict[str, str | None]
    relations: list[Relation] = field(default_factory=list)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Relations:
        """The structure a recipe's ``source.tables`` describes; a bad one is an error naming its line."""
        from synthforge.recipe import recipe_locator

        where = recipe_locator(recipe)
        tables = recipe.source.tables
        names = list(tables)
        relations = []
        for name, spec in tables.items():
            for index, key in enumerate(spec.foreign_keys):
                at = where(("source", "tables", name, "foreign_keys", index))
                if key.parent not in tables:
                    raise RecipeError(f"{at}source.tables.{name}.foreign_keys[{index}]: parent {key.parent!r} is "
                                      f"not a table of the source; its tables: {', '.join(names)}.")
                if tables[key.parent].primary_key is None:
                    raise RecipeError(f"{at}source.tables.{name}.foreign_keys[{index}]: {key.parent!r} has no "
                                      f"primary_key for {key.column!r} to refer to; set "
                                      f"source.tables.{key.parent}.primary_key.")
                if key.column == spec.primary_key:
                    raise RecipeError(f"{at}source.tables.{name}: {key.column!r} is both its primary key and a "
                                      f"foreign key; a one-to-one table belongs in its parent's file.")
                relations.append(Relation(name, key.column, key.parent, index == 0,
                                          spec.sequence_by if index == 0 else None))
            if spec.sequence_by is not None and not spec.foreign_keys:
                raise RecipeError(f"{where(('source', 'tables', name, 'sequence_by'))}source.tables.{name}."
                                  f"sequence_by: a sequence orders the rows of each parent; give "
                                  f"foreign_keys (the first names the parent).")
        structure = cls(names, {name: spec.primary_key for name, spec in tables.items()}, relations)
        structure.order(where=lambda table: where(("source", "tables", table, "foreign_keys")))
        return structure

    def parent(self, table: str) -> Relation | None:
        return next((r for r in self.relations if r.child == table and r.primary), None)

    def children(self, table: str) -> list[Relation]:
        return [r for r in self.relations if r.parent == table and r.primary]

    def references(self, table: str) -> list[Relation]:
        return [r for r in self.relations if r.child == table and not r.primary]

    def keys(self, table: str) -> list[str]:
        """The key columns of ``table``: its primary key and its foreign keys."""
        primary = self.primary_keys[table]
        return ([primary] if primary else []) + [r.column for r in self.relations if r.child == table]

    @property
    def roots(self) -> list[str]:
        return [t for t in self.tables if self.parent(t) is None]

    def order(self, where: Callable[[str], str] | None = None) -> list[str]:
        """Tables with every table they refer to before them; a cycle of foreign keys is an error."""
        done: list[str] = []
        visiting: list[str] = []

        def visit(table: str) -> None:
            if table in done:
                return
            if table in visiting:
                cycle = [*visiting[visiting.index(table):], table]
                at = where(table) if where else ""
                raise RecipeError(f"{at}the foreign keys make a cycle: {' → '.join(cycle)}. Tables are generated "
                                  f"parents first, so one of these keys must go (or become a plain column).")
            visiting.append(table)
            for relation in self.relations:
                if relation.child == table:
                    visit(relation.parent)
            visiting.pop()
            done.append(table)

        for table in self.tables:
            visit(table)
        return done

    def entity_roots(self) -> list[str]:
        """Root tables with children: the entities a holdout splits (a lookup table stays whole)."""
        return [t for t in self.roots if self.children(t)]

    def descendants(self, table: str) -> list[Relation]:
        """The parent relations below ``table``, top down."""
        found = []
        for relation in self.children(table):
            found += [relation, *self.descendants(relation.child)]
        return found

    def as_json(self) -> dict[str, Any]:
        return {"tables": self.tables, "primary_keys": self.primary_keys,
                "relations": [asdict(r) for r in self.relations]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Relations:
        return cls(data["tables"], data["primary_keys"], [Relation(**r) for r in data["relations"]])


def align_key_types(relations: Relations, frames: dict[str, pl.DataFrame],
                    where: Callable[[str], str]) -> dict[str, pl.DataFrame]:
    """``frames`` with each foreign key in its parent's primary key's type, where every value reads as one.

    Two files often disagree on a key's type (``"17"`` as text in one, 17 as a number in the other); joins
    need one type. A key that cannot be read in the parent's type is an error naming both columns.
    """
    frames = dict(frames)
    for relation in relations.relations:
        child, parent = frames[relation.child], frames[relation.parent]
        primary = relations.primary_keys[relation.parent]
        if relation.column not in child.columns or primary not in parent.columns:
            continue  # check_keys names the missing column
        wanted, found = parent.schema[primary], child.schema[relation.column]
        if wanted == found:
            continue
        keys = child.get_column(relation.column)
        converted = (keys.cast(pl.String) if wanted == pl.String else keys).cast(wanted, strict=False)
        lost = keys.is_not_null() & converted.is_null()
        if lost.any():
            examples = keys.filter(lost).unique(maintain_order=True).head(3).to_list()
            raise DataError(
                f"{where(relation.child)}{relation.describe()}: the key is {found} in {relation.child!r} but "
                f"{wanted} in {relation.parent!r}, and {int(lost.sum()):,} values cannot be read as {wanted} "
                f"(e.g. {', '.join(map(repr, examples))}). Store the key with one type in both tables.")
        frames[relation.child] = child.with_columns(converted.alias(relation.column))
    return frames


def check_keys(relations: Relations, frames: dict[str, pl.DataFrame], where: Callable[[str], str]) -> None:
    """Every key problem of the real tables in one error: missing or duplicate primary keys, children
    whose parent is missing, an order column with nulls."""
    problems = []
    for table in relations.tables:
        frame = frames[table]
        primary = relations.primary_keys[table]
        for column in relations.keys(table) + ([relations.parent(table).sequence_by] if relations.parent(table)
                                               and relations.parent(table).sequence_by else []):
            if column not in frame.columns:
                problems.append(f"{where(table)}table {table!r} has no column {column!r}; its columns: "
                                f"{', '.join(frame.columns)}.")
        if primary in frame.columns:
            nulls = frame.get_column(primary).null_count()
            repeated = frame.height - frame.get_column(primary).n_unique()
            if nulls:
                problems.append(f"{where(table)}table {table!r}: primary key {primary!r} is null in {nulls:,} "
                                f"rows; every row needs a key.")
            if repeated > nulls - (1 if nulls else 0):
                examples = frame.get_column(primary).drop_nulls().filter(
                    frame.get_column(primary).drop_nulls().is_duplicated()).unique().head(5).to_list()
                problems.append(f"{where(table)}table {table!r}: primary key {primary!r} is not unique: "
                                f"{repeated:,} rows repeat a key (e.g. {', '.join(map(repr, examples))}).")
    for relation in relations.relations:
        child, parent = frames[relation.child], frames[relation.parent]
        primary = relations.primary_keys[relation.parent]
        if relation.column not in child.columns or primary not in parent.columns:
            continue
        keys = child.get_column(relation.column)
        if relation.primary and keys.null_count():
            problems.append(f"{where(relation.child)}table {relation.child!r}: {keys.null_count():,} rows have no "
                            f"{relation.parent!r} ({relation.column!r} is null); a child row needs its parent. Drop "
                            f"them, or list another key first if this one is only a reference.")
        known = parent.get_column(primary)
        if keys.dtype != known.dtype:
            keys = keys.cast(pl.String)
            known = known.cast(pl.String)
        dangling = keys.drop_nulls().filter(~keys.drop_nulls().is_in(known.implode()))
        if dangling.len():
            examples = dangling.unique(maintain_order=True).head(5).to_list()
            problems.append(f"{where(relation.child)}{relation.describe()}: {dangling.len():,} rows hold a key that "
                            f"is not in {relation.parent!r} (e.g. {', '.join(map(repr, examples))}). Remove those "
                            f"rows or add their parents; a synthetic database never has a dangling key.")
        if relation.sequence_by and relation.sequence_by in child.columns:
            nulls = child.get_column(relation.sequence_by).null_count()
            if nulls:
                problems.append(f"{where(relation.child)}table {relation.child!r}: sequence_by "
                                f"{relation.sequence_by!r} is null in {nulls:,} rows, so their place in the "
                                f"sequence is unknown; fill or drop them.")
    if problems:
        raise DataError(problems[0] if len(problems) == 1 else
                        f"{len(problems)} problems with the tables' keys:\n" + "\n".join(f"  - {p}" for p in problems))


def split_holdout(relations: Relations, frames: dict[str, pl.DataFrame], fraction: float,
                  rng: np.random.Generator) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame] | None]:
    """A ``fraction`` of each entity root's rows, with all their descendants, held out."""
    if fraction == 0 or not relations.entity_roots():
        return frames, None
    train, holdout = dict(frames), {}
    for root in relations.entity_roots():
        frame = frames[root]
        order = rng.permutation(frame.height)
        cut = round(frame.height * fraction)
        if cut == 0 or cut == frame.height:
            raise RecipeError(f"holdout.fraction {fraction} of {root!r}'s {frame.height} rows leaves an empty "
                              f"{'holdout' if cut == 0 else 'training set'}.")
        held = np.zeros(frame.height, dtype=bool)
        held[order[:cut]] = True
        train[root], holdout[root] = frame.filter(~held), frame.filter(held)
        for relation in relations.descendants(root):
            key = relations.primary_keys[relation.parent]
            for side in (train, holdout):
                side[relation.child] = frames[relation.child].join(
                    side[relation.parent].select(key), left_on=relation.column, right_on=key, how="semi")
    return train, holdout


@dataclass
class TablePlan:
    """What the database generator learned of one table, beyond its generator (JSON-able)."""

    name: str
    rows: int
    columns: list[str]  # the table's columns in the source's order, keys included
    own: list[str]  # the learned columns of the table itself (the order column as its gap)
    context: list[str] = field(default_factory=list)  # columns given to sample_given: parent's, position, prev
    counts: dict[str, str] = field(default_factory=dict)  # child table -> its count column here
    starts: dict[str, str] = field(default_factory=dict)  # sequence child -> the column holding its first order
    references: dict[str, list[str]] = field(default_factory=dict)  # key column -> its `key->attribute` columns
    referred: dict[str, str] = field(default_factory=dict)  # "child.column" referring here -> its count column
    order_number: str | None = None  # "date", "datetime" or "number": how the order column is learned as a gap
    key: dict[str, Any] | None = None  # the primary key's regeneration: integers above, or a prefix
    keys_only: dict[str, dict[str, Any]] = field(default_factory=dict)  # nothing learned: columns regenerated
    native_context: bool = False
    history: list[str] = field(default_factory=list)  # a sequence's columns given as the row before (prev.*)
    changed: list[str] = field(default_factory=list)  # numbers learned as a first value and changes
    relative: list[str] = field(default_factory=list)  # of those, the ones whose changes are factors (log changes)
    first_fill: dict[str, float] = field(default_factory=dict)  # their median first value, for a drawn null
    # the learned distribution of its count columns (children per row, references to it): schema and encoder state
    count_distribution: dict[str, Any] = field(default_factory=dict)
    # personal columns that repeat a parent's (a customer's name on each order): column -> {via, parent, column}
    inherited: dict[str, dict[str, str]] = field(default_factory=dict)


class DatabaseGenerator:
    """A generator per table, fitted and sampled in the dataset's structure (see the module documentation)."""

    def __init__(self, relations: Relations, make_generator: Callable[[str], Generator]) -> None:
        self.relations = relations
        self.make_generator = make_generator

    # --- fitting --------------------------------------------------------------------------------

    def fit(self, frames: dict[str, pl.DataFrame], schemas: dict[str, Schema],
            context_for: Callable[[str], FitContext], log: Callable[[str], None] | None = None) -> DatabaseGenerator:
        """Fit on the real tables (``frames``, dates parsed) described by ``schemas`` (keys as identifiers)."""
        log = log or (lambda message: None)
        self.schemas_ = schemas
        self.plans_: dict[str, TablePlan] = {}
        self.generators_: dict[str, Generator] = {}
        self.sequence_hashes_: dict[str, pl.Series] = {}
        self.rare_rows_: dict[str, tuple[pl.Schema, pl.Series]] = {}
        self.sequences_redrawn_ = 0
        self.personal_real_: dict[str, dict[str, pl.Series]] = {}
        learned: dict[str, pl.DataFrame] = {}  # each table's training frame, for its children's context
        for table in self.relations.order():
            generator = self.make_generator(table)
            full, plan = self._training_frame(table, frames, learned, changes=generator.supports_context
                                              and generator.sequence_changes)
            plan.inherited = self._inherited(table, frames, schemas)
            self.plans_[table] = plan
            learned[table] = full
            plan.count_distribution = _count_distribution(full, [*plan.counts.values(), *plan.referred.values()])
            frame = full.select([c for c in full.columns if c not in self.relations.keys(table) and c != _PARENT_INDEX])
            schema = self._table_schema(table, frame, plan)
            if not schema.learned:
                plan.keys_only = {c.name: plan_identifier(frame.get_column(c.name), c) for c in schema.columns}
                self.personal_real_[table] = real_values_to_avoid(frame, plan.keys_only)  # in memory, never saved
                log(f"table {table!r}: nothing to learn but its keys; {frame.height:,} rows")
                continue
            plan.native_context = generator.supports_context
            if plan.context and not generator.supports_context:
                frame, schema, plan.context = self._fallback_context(frame, schema, plan)
            log(f"table {table!r}: fitting {generator!r} on {frame.height:,} rows × {len(schema.learned)} learned "
                f"columns" + (f" ({len(plan.context)} of context)" if plan.context else ""))
            context = context_for(table)
            # Copies are judged on the table's own columns, as the checks see them: the same child row under
            # another parent is still a copy, and a count of children is no part of the row. So the fit protects
            # nothing (its calibration sees the model's own rows), and the protection follows on those columns.
            generator.fit(frame, schema, replace(context, protect_rows_below=0))
            own = self._source_columns(table)
            generator.protect_rows(frame.select([c for c in own if c in frame.columns]),
                                   below=context.protect_rows_below)
            self.generators_[table] = generator
            relation = self.relations.parent(table)
            if relation is not None and relation.sequence_by:
                self.sequence_hashes_[table] = _sequence_hashes(
                    full, plan.own, generator.schema_, _PARENT_INDEX).unique()
                # A sequence's rows hold the order column only once it is rebuilt: their copies are found then.
                if context.protect_rows_below:
                    self.rare_rows_[table] = rare_row_hashes(frames[table].select(own), context.protect_rows_below)
        return self

    def _inherited(self, table: str, frames: dict[str, pl.DataFrame],
                   schemas: dict[str, Schema]) -> dict[str, dict[str, str]]:
        """The table's regenerated personal columns that hold, in every row, the value of a personal column of the
        row its foreign key names: written from that row's fake value, so one person has one name everywhere."""
        found: dict[str, dict[str, str]] = {}
        frame = frames[table]
        for relation in (r for r in self.relations.relations if r.child == table):
            parent, key = frames[relation.parent], self.relations.primary_keys[relation.parent]
            candidates = [c for c in schemas[relation.parent].columns if c.personal and c.name in parent.columns
                          and c.kind == ColumnKind.identifier]
            for column in schemas[table].columns:
                if (column.name in found or not column.personal or column.kind != ColumnKind.identifier
                        or column.name not in frame.columns or relation.column not in frame.columns):
                    continue
                for source in (c for c in candidates if c.personal == column.personal):
                    joined = frame.select(pl.col(relation.column).alias("__key"), pl.col(column.name).alias("__own")) \
                        .join(parent.select(pl.col(key).alias("__key"), pl.col(source.name).alias("__theirs")),
                              on="__key", how="inner").drop_nulls(["__own", "__theirs"])
                    if joined.height and (joined.get_column("__own") == joined.get_column("__theirs")).all():
                        found[column.name] = {"via": relation.column, "parent": relation.parent,
                                              "column": source.name}
                        break
        return found

    def _source_columns(self, table: str) -> list[str]:
        """The table's learned columns as its source has them, keys left out."""
        keys = set(self.relations.keys(table))
        return [c.name for c in self.schemas_[table].learned if c.name not in keys]

    def _training_frame(self, table: str, frames: dict[str, pl.DataFrame], fitted: dict[str, pl.DataFrame],
                        changes: bool = True) -> tuple[pl.DataFrame, TablePlan]:
        """The table as its generator learns it (keys kept, for its children to join on): counts, starts,
        context, gaps and references in. ``fitted`` holds the training frames of the tables before it."""
        relations = self.relations
        frame = frames[table]
        primary = relations.primary_keys[table]
        plan = TablePlan(table, frame.height, frame.columns, own=self._source_columns(table))
        if primary is not None:
            plan.key = _key_plan(frame.get_column(primary))
        learned = frame

        def with_count(relation: Relation, name: str) -> pl.DataFrame:
            """``learned`` with how many rows of ``relation``'s child hold each row's key (0 for none)."""
            counts = frames[relation.child].group_by(relation.column).len("__n") \
                .with_columns(pl.col(relation.column).cast(frame.schema[primary], strict=False))
            return learned.join(counts.rename({relation.column: primary}), on=primary, how="left") \
                .with_columns(pl.col("__n").fill_null(0).cast(pl.Int64).alias(name)).drop("__n")

        for child in relations.children(table):
            name = f"{ROWS}{child.child}"
            learned = with_count(child, name)
            plan.counts[child.child] = name
            if child.sequence_by:
                starts = frames[child.child].group_by(child.column).agg(pl.col(child.sequence_by).min().alias("__s")) \
                    .with_columns(pl.col(child.column).cast(frame.schema[primary], strict=False))
                name = f"{START}{child.child}"
                learned = learned.join(starts.rename({child.column: primary}), on=primary, how="left") \
                    .rename({"__s": name})
                plan.starts[child.child] = name
        for referring in [r for r in relations.relations if r.parent == table and not r.primary]:
            # How often each row is referred to is learned with its attributes: an airport's traffic, say.
            name = f"{REFERRED}{referring.child}.{referring.column}"
            learned = with_count(referring, name)
            plan.referred[f"{referring.child}.{referring.column}"] = name
        for reference in relations.references(table):
            parent_key = relations.primary_keys[reference.parent]
            attributes = [c for c in self.plans_[reference.parent].own
                          if self.schemas_[reference.parent][c].kind.learned]
            named = {c: f"{reference.column}{REFERENCE}{c}" for c in attributes}
            lookup = frames[reference.parent].select(pl.col(parent_key).cast(frame.schema[reference.column],
                                                                              strict=False), *attributes).rename(named)
            learned = learned.join(lookup.rename({parent_key: "__key"}), left_on=reference.column,
                                   right_on="__key", how="left", maintain_order="left")
            plan.references[reference.column] = list(named.values())
        relation = relations.parent(table)
        if relation is not None:
            parent = fitted[relation.parent]
            parent_key = relations.primary_keys[relation.parent]
            parent_plan = self.plans_[relation.parent]
            shown = [*parent_plan.own, *parent_plan.counts.values(), *parent_plan.starts.values()]
            shown = [c for c in shown if c in self.generators_[relation.parent].encoder_.columns] \
                if relation.parent in self.generators_ else []
            named = {c: f"{relation.parent}.{c}" for c in shown}
            context = parent.select(pl.col(parent_key).cast(frame.schema[relation.column], strict=False).alias("__key"),
                                    *[pl.col(c).alias(n) for c, n in named.items()])
            learned = learned.with_row_index("__order").join(
                context, left_on=relation.column, right_on="__key", how="left").sort("__order").drop("__order")
            learned = learned.with_columns(pl.col(relation.column).rank("dense").cast(pl.Int64).alias(_PARENT_INDEX))
            plan.context = list(named.values())
            if relation.sequence_by:
                learned, plan = self._as_sequence(learned, plan, relation, changes)
        # Context first: an autoregressive model then learns p(context) p(row | context), sampled in that order.
        rest = [c for c in learned.columns if c not in plan.context]
        return learned.select(*plan.context, *rest), plan

    def _as_sequence(self, frame: pl.DataFrame, plan: TablePlan, relation: Relation,
                     changes: bool) -> tuple[pl.DataFrame, TablePlan]:
        """A sequence as its rows are learned: the order as gaps, each row beside its position and the row
        before; with ``changes`` (the generator's ``sequence_changes``), a number that moves smoothly along the
        sequence (consecutive values correlated above CHANGE_CORRELATION) as its first value and its changes."""
        order = relation.sequence_by
        assert order is not None
        dtype = frame.schema[order]
        plan.order_number = "date" if dtype == pl.Date else "datetime" if isinstance(dtype, pl.Datetime) else "number"
        gap = f"{GAP}{order}"
        frame = frame.sort(_PARENT_INDEX, order, maintain_order=True)
        number = _order_number(pl.col(order), plan.order_number)
        frame = frame.with_columns(
            (number - number.shift(1).over(_PARENT_INDEX)).fill_null(0).alias(gap),
            pl.int_range(pl.len()).over(_PARENT_INDEX).cast(pl.Int64).alias(POSITION),
        ).drop(order)
        plan.own = [gap if c == order else c for c in plan.own]
        plan.history = list(plan.own)
        frame = frame.with_columns(pl.col(c).shift(1).over(_PARENT_INDEX).alias(f"{PREVIOUS}{c}") for c in plan.own)
        plan.context = [*plan.context, POSITION, *(f"{PREVIOUS}{c}" for c in plan.own)]
        if changes:
            spec = self.schemas_[relation.child]
            plan.changed = [c for c in plan.own if c != gap and spec[c].kind.value in ("continuous", "integer")
                            and spec[c].null_rate == 0 and _lag_correlation(frame, c) > CHANGE_CORRELATION]
            # A positive number over orders of magnitude (a population) changes by a factor: its log changes.
            plan.relative = [c for c in plan.changed if (spec[c].minimum or 0) > 0
                             and (spec[c].maximum or 0) > RELATIVE_RANGE * spec[c].minimum]
            frame = frame.with_columns(
                *(pl.when(pl.col(POSITION) == 0).then(pl.col(c)).alias(f"{FIRST}{c}") for c in plan.changed),
                *(pl.when(pl.col(POSITION) > 0).then(_change(pl.col(c), pl.col(f"{PREVIOUS}{c}"), c in plan.relative))
                  .alias(f"{CHANGE}{c}") for c in plan.changed)).drop(plan.changed)
            plan.own = [part for c in plan.own for part in
                        ((f"{FIRST}{c}", f"{CHANGE}{c}") if c in plan.changed else (c,))]
            # A model may still draw a (rare) null where the value was always there: no change, the usual start.
            plan.first_fill = {c: float(frame.get_column(f"{FIRST}{c}").median() or 0.0) for c in plan.changed}
        return frame, plan

    def _table_schema(self, table: str, frame: pl.DataFrame, plan: TablePlan) -> Schema:
        """The training frame's schema: the source's specs for its own columns, copies for their shadows."""
        source = self.schemas_[table]
        keys = set(self.relations.keys(table))
        specs: dict[str, ColumnSpec] = {c.name: c for c in source.columns if c.name not in keys}
        relation = self.relations.parent(table)
        if relation is not None and relation.parent in self.generators_:
            parent_schema = self.generators_[relation.parent].schema_
            for column in plan.context:
                if column.startswith(f"{relation.parent}."):
                    specs[column] = _renamed(parent_schema[column.removeprefix(f"{relation.parent}.")], column, frame)
        for key, columns in plan.references.items():
            referenced = self.schemas_[next(r.parent for r in self.relations.references(table) if r.column == key)]
            for column in columns:
                specs[column] = _renamed(referenced[column.split(REFERENCE, 1)[1]], column, frame)
        made = [c for c in frame.columns if c not in specs and c != _PARENT_INDEX
                and not c.startswith((PREVIOUS, FIRST))]
        if made:
            # A count with many values (flights per airport) is a measurement: as categories of integers its large,
            # rare values would be pooled into common ones, and the busiest rows would lose their traffic.
            counts = {c: ColumnOverride(kind=ColumnKind.integer if c == POSITION or frame.get_column(c).n_unique()
                                        <= MAX_COUNT_VALUES else ColumnKind.continuous)
                      for c in made if c.startswith((ROWS, REFERRED)) or c == POSITION}
            inferred = infer_schema(frame.select(made), counts, max_categories=10**9) \
                if any(frame.get_column(c).drop_nulls().len() for c in made) else Schema(columns=[])
            specs |= {c.name: c for c in inferred.columns}
        for column in frame.columns:
            if column.startswith(PREVIOUS):
                specs[column] = _renamed(specs[column.removeprefix(PREVIOUS)], column, frame)
            elif column.startswith(FIRST):
                # A value of its column, learned as a measurement however few sequences there are (a hundred
                # populations would be learned as a hundred categories of integers, pooled as rare).
                specs[column] = _renamed(source[column.removeprefix(FIRST)], column, frame).model_copy(
                    update={"kind": ColumnKind.continuous, "dtype": "Float64"})
        columns = [specs[c] for c in frame.columns if c in specs]
        rules = [r for r in source.constraints if set(r.columns()) <= set(frame.columns)]
        return Schema(columns=columns, constraints=rules)

    def _fallback_context(self, frame: pl.DataFrame, schema: Schema,
                          plan: TablePlan) -> tuple[pl.DataFrame, Schema, list[str]]:
        """A generator without per-row context is conditioned on the parent's few-valued categories only."""
        kept = [c for c in plan.context if c in schema and schema[c].kind in (ColumnKind.categorical,
                ColumnKind.boolean) and schema[c].n_unique <= MAX_CONTEXT_CATEGORIES]
        dropped = [c for c in plan.context if c not in kept]
        return (frame.drop(dropped), Schema(columns=[c for c in schema.columns if c.name not in dropped],
                                            constraints=schema.constraints), kept)

    # --- sampling -------------------------------------------------------------------------------

    def sample(self, rows: int | None = None, seed: int = 0,
               key_offset: int | dict[str, int] = 0) -> dict[str, pl.DataFrame]:
        """A synthetic database: ``rows`` rows of the first root table with children (the main entity; default:
        as many as the real one), the other roots scaled alike, children as learned. ``key_offset`` starts the new
        keys further on, for every table or per table (a partition or a batch of a larger database)."""
        first = self.main_table
        scale = 1.0 if rows is None else rows / max(self.plans_[first].rows, 1)
        internal: dict[str, pl.DataFrame] = {}
        output: dict[str, pl.DataFrame] = {}
        for table in self.relations.order():
            plan = self.plans_[table]
            table_seed = derive_seed(seed, "table", table)
            relation = self.relations.parent(table)
            if relation is None:
                n = rows if table == first and rows is not None else round(plan.rows * scale)
                frame, parents = self._sample_root(table, n, table_seed), None
            else:
                frame, parents = self._sample_children(table, relation, internal[relation.parent], table_seed)
            internal[table] = frame = _calibrated_counts(frame, plan.count_distribution, list(plan.counts.values()),
                                                         table_seed)
            offset = key_offset.get(table, 0) if isinstance(key_offset, dict) else key_offset
            output[table] = self._with_keys(table, frame, parents, internal, output, offset, table_seed)
        return output

    @property
    def main_table(self) -> str:
        """The table whose rows a sample is counted in: the first root with children."""
        return (self.relations.entity_roots() or self.relations.roots)[0]

    def sample_batches(self, rows: int | None = None, batch_rows: int = 100_000,
                       seed: int = 0) -> Iterator[dict[str, pl.DataFrame]]:
        """The database of :meth:`sample` in sub-databases of ``batch_rows`` main rows, each with all its children
        (and its share of the other roots), keys continuing from batch to batch: memory stays that of one batch."""
        total = self.plans_[self.main_table].rows if rows is None else rows
        offsets: dict[str, int] = {}
        for index, start in enumerate(range(0, max(total, 1), batch_rows)):
            tables = self.sample(min(batch_rows, total - start), seed=seed if total <= batch_rows
                                 else derive_seed(seed, "batch", index), key_offset=dict(offsets))
            for name, frame in tables.items():
                offsets[name] = offsets.get(name, 0) + frame.height
            yield tables

    def _sample_root(self, table: str, n: int, seed: int) -> pl.DataFrame:
        if table not in self.generators_:
            return self._regenerated(table, n, seed)
        generator = self.generators_[table]
        return to_internal(generator.sample(n, seed=seed), generator.schema_)

    def _regenerated(self, table: str, n: int, seed: int) -> pl.DataFrame:
        """A table with nothing learned: its rows (``_ROW`` keeps their number) with regenerated columns."""
        rng = np.random.default_rng(seed)
        return pl.DataFrame([pl.Series(_ROW, np.arange(n, dtype=np.int64)),
                             *regenerate_columns(self.plans_[table].keys_only, n, rng,
                                                 avoid=getattr(self, "personal_real_", {}).get(table))])

    def _sample_children(self, table: str, relation: Relation, parents: pl.DataFrame,
                         seed: int) -> tuple[pl.DataFrame, np.ndarray]:
        """Each synthetic parent's rows; and, per row, the index of its parent."""
        plan = self.plans_[table]
        counts = parents.get_column(self.plans_[relation.parent].counts[table]).fill_null(0) \
            .clip(0).round().cast(pl.Int64).to_numpy()
        parent_index = np.repeat(np.arange(parents.height), counts)
        if table not in self.generators_:
            return self._regenerated(table, len(parent_index), seed), parent_index
        generator = self.generators_[table]
        shown = {c: c.removeprefix(f"{relation.parent}.") for c in plan.context if c.startswith(f"{relation.parent}.")}
        given = parents.select(pl.col(source).alias(name) for name, source in shown.items())[parent_index] \
            .with_columns(pl.Series(_ROW, np.arange(len(parent_index), dtype=np.int64)))
        if not relation.sequence_by:
            return self._draw_given(generator, given, seed), parent_index
        position = np.concatenate([np.arange(count) for count in counts if count]) if counts.any() \
            else np.zeros(0, dtype=np.int64)
        starts = parents.get_column(self.plans_[relation.parent].starts[table])
        return self._sample_sequences(table, relation, given, parent_index, position.astype(np.int64), starts,
                                      seed), parent_index

    @staticmethod
    def _draw_given(generator: Generator, given: pl.DataFrame, seed: int) -> pl.DataFrame:
        """``generator``'s rows given ``given`` (which keeps ``_ROW``), in internal form, ``_ROW`` kept."""
        context = given.drop(_ROW)
        drawn = generator.sample_given(context, seed=seed) if context.width else generator.sample(given.height,
                                                                                                  seed=seed)
        return to_internal(drawn, generator.schema_).with_columns(given.get_column(_ROW))

    def _sample_sequences(self, table: str, relation: Relation, given: pl.DataFrame, parent_index: np.ndarray,
                          position: np.ndarray, starts: pl.Series, seed: int) -> pl.DataFrame:
        """Rows position by position, every sequence at once, then the order rebuilt; a sequence equal to a real
        one, or holding a copy of a rare real row, is drawn again whole."""
        generator = self.generators_[table]
        plan = self.plans_[table]
        todo = np.ones(len(parent_index), dtype=bool)
        frame = raw = pl.DataFrame()
        bad = np.zeros(0, dtype=bool)
        known = self.sequence_hashes_.get(table, pl.Series([], dtype=pl.UInt64))
        rare = self.rare_rows_.get(table)
        for attempt in range(MAX_SEQUENCE_REDRAWS + 1):
            drawn = self._draw_sequences(generator, plan, given.filter(pl.Series(todo)), parent_index[todo],
                                         position[todo], derive_seed(seed, "attempt", attempt))
            raw = drawn if attempt == 0 else pl.concat([raw.filter(~pl.Series(todo)), drawn]).sort(_ROW)
            frame = self._rebuild_order(raw, plan, relation, starts, parent_index, seed)
            indexed = frame.with_columns(pl.Series(_PARENT_INDEX, parent_index))
            bad = _sequence_hashes(indexed, plan.own, generator.schema_, _PARENT_INDEX).is_in(known.implode()) \
                .to_numpy() if known.len() else np.zeros(len(np.unique(parent_index)), dtype=bool)
            if rare is not None and frame.height:
                copies = matching_rows(frame, rare)
                holding = indexed.filter(copies).get_column(_PARENT_INDEX).unique().to_numpy()
                bad = bad | np.isin(np.unique(parent_index), holding)
            if not bad.any():
                return frame
            if attempt == MAX_SEQUENCE_REDRAWS:
                break
            parents_with = np.unique(parent_index)[bad]
            todo = np.isin(parent_index, parents_with)
            self.sequences_redrawn_ += len(parents_with)
        raise ModelError(f"table {table!r}: the generator keeps reproducing real sequences or rare real rows "
                         f"({int(bad.sum())} sequences still copied after {MAX_SEQUENCE_REDRAWS} fresh draws), so it "
                         f"has memorised them; train it for fewer epochs or with more regularisation.")

    def _draw_sequences(self, generator: Generator, plan: TablePlan, given: pl.DataFrame, parent_index: np.ndarray,
                        position: np.ndarray, seed: int) -> pl.DataFrame:
        if not plan.native_context or given.height == 0:
            # The fallback has no history: a sequence's rows are drawn independently given the parent.
            return self._draw_given(generator, given, seed)
        parts: list[pl.DataFrame] = []
        last: pl.DataFrame | None = None
        last_parent = np.zeros(0, dtype=np.int64)
        history = plan.history
        previous = [f"{PREVIOUS}{c}" for c in history]
        source = self.schemas_[self.relations.parent(plan.name).child]
        for step in range(int(position.max()) + 1):
            at = np.flatnonzero(position == step)
            context = given[at].with_columns(pl.lit(step, dtype=pl.Int64).alias(POSITION))
            if last is None:
                before = pl.DataFrame([pl.Series(name, [None] * len(at), dtype=generator.schema_[name].polars_dtype)
                                       for name in previous])
            else:
                row_of = dict(zip(last_parent.tolist(), range(len(last_parent)), strict=True))
                before = last.select(pl.col(c).alias(n) for c, n in zip(history, previous, strict=True))[
                    [row_of[p] for p in parent_index[at].tolist()]]
            drawn = self._draw_given(generator, pl.concat([context, before], how="horizontal"),
                                     derive_seed(seed, step))
            drawn = drawn.with_columns(  # a smooth number: its first value, then the row before's plus its change
                _within(pl.col(f"{FIRST}{c}").fill_null(plan.first_fill[c]) if step == 0 else _changed(
                    pl.lit(before.get_column(f"{PREVIOUS}{c}")), pl.col(f"{CHANGE}{c}").fill_null(0),
                    c in plan.relative), source[c]).alias(c) for c in plan.changed)
            parts.append(drawn)
            last, last_parent = drawn, parent_index[at]
        return pl.concat(parts, how="vertical_relaxed").sort(_ROW)

    def _rebuild_order(self, frame: pl.DataFrame, plan: TablePlan, relation: Relation, starts: pl.Series,
                       parent_index: np.ndarray, seed: int) -> pl.DataFrame:
        """The order column as each sequence's start plus the running sum of its learned gaps (never < 0)."""
        order = relation.sequence_by
        assert order is not None
        gap = pl.col(f"{GAP}{order}").cast(pl.Float64).clip(0).fill_null(0)
        known = starts.drop_nulls()
        if starts.null_count() and known.len():  # a parent with children but no start: another parent's start
            fill = known.sample(starts.len(), with_replacement=True, seed=derive_seed(seed, "starts") % 2**31)
            starts = starts.fill_null(fill)
        numbers = pl.select(_order_number(pl.lit(starts), plan.order_number)).to_series().cast(pl.Float64)
        frame = frame.drop(order, strict=False).sort(_ROW).with_columns(
            pl.Series(_PARENT_INDEX, parent_index, dtype=pl.Int64),
            pl.Series("__start", numbers.to_numpy()[parent_index] if len(parent_index) else [], dtype=pl.Float64))
        frame = frame.with_columns(
            (pl.col("__start") + gap.cum_sum().over(_PARENT_INDEX) - gap.first().over(_PARENT_INDEX)).alias("__order"))
        restored = _from_order_number(frame.get_column("__order"), plan.order_number,
                                      self.schemas_[relation.child][order])
        return frame.with_columns(restored.alias(order)).drop("__order", "__start", _PARENT_INDEX)

    def _with_keys(self, table: str, frame: pl.DataFrame, parent_index: np.ndarray | None,
                   internal: dict[str, pl.DataFrame], output: dict[str, pl.DataFrame], key_offset: int,
                   seed: int) -> pl.DataFrame:
        """The table in its source's columns: new primary keys, foreign keys to the new parents' keys."""
        plan = self.plans_[table]
        relations = self.relations
        primary = relations.primary_keys[table]
        columns: dict[str, pl.Series] = {}
        if primary is not None and plan.key is not None:
            keys = _new_keys(plan.key, frame.height, key_offset, self.schemas_[table][primary])
            columns[primary] = keys
            internal[table] = frame.with_columns(keys)
        relation = relations.parent(table)
        if relation is not None and parent_index is not None:
            parent_keys = output[relation.parent].get_column(relations.primary_keys[relation.parent])
            columns[relation.column] = parent_keys[parent_index].alias(relation.column)
        for reference in relations.references(table):
            columns[reference.column] = self._choose_references(table, reference, frame, internal, output, seed)
        frame = frame.with_columns(columns.values())
        for name, source in plan.inherited.items():  # a parent's person, as that parent's synthetic row has them
            if name not in frame.columns or source["via"] not in frame.columns or source["parent"] not in output:
                continue
            parent = output[source["parent"]]
            key = relations.primary_keys[source["parent"]]
            lookup = parent.select(pl.col(key).alias("__key"), pl.col(source["column"]).alias("__value"))
            values = frame.select(pl.col(source["via"]).alias("__key")).join(
                lookup, on="__key", how="left", maintain_order="left").get_column("__value")
            frame = frame.with_columns(values.alias(name))
        schema = self.schemas_[table]
        present = [c for c in plan.columns if c in frame.columns and c in schema.output_names]
        return to_source(frame.select(present), schema)

    def _choose_references(self, table: str, reference: Relation, frame: pl.DataFrame,
                           internal: dict[str, pl.DataFrame], output: dict[str, pl.DataFrame],
                           seed: int) -> pl.Series:
        """Each row's reference: the synthetic referenced row nearest to the attributes the row drew."""
        from synthforge.checks.metrics import DistanceEncoder

        plan = self.plans_[table]
        keys = output[reference.parent].get_column(self.relations.primary_keys[reference.parent])
        attributes = plan.references[reference.column]
        rng = np.random.default_rng(derive_seed(seed, "references", reference.column))
        if keys.len() == 0:
            return pl.Series(reference.column, [None] * frame.height, dtype=keys.dtype)
        referenced = internal[reference.parent]
        capacity = self._capacities(reference, referenced, frame.height, rng)
        if not attributes:  # nothing to match on: each referenced row takes its capacity, in a random order
            return keys[rng.permutation(np.repeat(np.arange(keys.len()), capacity))].alias(reference.column)
        source_names = [a.split(REFERENCE, 1)[1] for a in attributes]
        candidates = referenced.select(source_names)
        drawn = frame.select(pl.col(a).alias(s) for a, s in zip(attributes, source_names, strict=True))
        schema = Schema(columns=[self.schemas_[reference.parent][s] for s in source_names])
        encoder = DistanceEncoder(candidates, schema)
        nearest = _nearest_rows(encoder.encode(drawn), encoder.encode(candidates), capacity, rng)
        chosen = keys[nearest].alias(reference.column)
        # A row whose attributes are all null stood for a null reference (a flight without a known plane).
        all_null = drawn.select(pl.all_horizontal(pl.all().is_null())).to_series()
        return chosen.set(all_null, None) if all_null.any() else chosen

    def _capacities(self, reference: Relation, referenced: pl.DataFrame, rows: int,
                    rng: np.random.Generator) -> np.ndarray:
        """How many of ``rows`` references each synthetic referenced row takes: its learned count, on the count's
        learned distribution (:func:`_stratified_counts`), adding up to ``rows``."""
        plan = self.plans_[reference.parent]
        column = plan.referred.get(f"{reference.child}.{reference.column}")
        counts = referenced.get_column(column).fill_null(0).clip(0).cast(pl.Float64).to_numpy() \
            if column is not None and column in referenced.columns else np.zeros(referenced.height)
        inverse = _count_inverse(plan.count_distribution, column) if column is not None else None
        if inverse is not None and rows:
            counts = np.maximum(_stratified_counts(counts, inverse, rng, total=rows), 0)
        if counts.sum() == 0:  # no popularity learned: every row alike
            counts = np.ones(referenced.height)
        # Largest remainders: the capacities add up to exactly ``rows``, so every row's learned share is filled.
        share = counts * rows / counts.sum()
        capacity = np.floor(share).astype(np.int64)
        capacity[np.argsort(capacity - share)[: rows - int(capacity.sum())]] += 1
        return capacity

    def write_batches(self, folder: Path, extension: str, sink_for: Callable[[Path], Any], rows: int | None,
                      batch_rows: int, seed: int) -> tuple[dict[str, int], dict[str, pl.DataFrame]]:
        """Stream :meth:`sample_batches` into one file per table in ``folder`` (``sink_for(path)`` opens one);
        return the rows written per table and the first batch (a whole sub-database, for checks)."""
        sinks = {name: sink_for(folder / f"{name}.{extension}") for name in self.relations.tables}
        written: dict[str, int] = {}
        first: dict[str, pl.DataFrame] = {}
        try:
            for tables in self.sample_batches(rows, batch_rows, seed=seed):
                first = first or tables
                for name, frame in tables.items():
                    sinks[name].write(frame)
                    written[name] = written.get(name, 0) + frame.height
        finally:
            for sink in sinks.values():
                sink.close()
        return written, first

    # --- saving ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        directory = model_directory(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for table, generator in self.generators_.items():
            generator.save(directory / table)
        state = {"format": "synthforge-database", "format_version": 1, "relations": self.relations.as_json(),
                 "schemas": {t: s.model_dump(mode="json") for t, s in self.schemas_.items()},
                 "plans": {t: asdict(p) for t, p in self.plans_.items()},
                 "generators": {t: g.name for t, g in self.generators_.items()}}
        (directory / DATABASE_FILE).write_text(json.dumps(state, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path, pm: SynthForgePluginManager) -> DatabaseGenerator:
        """A saved database generator; reads JSON and safetensors only. As a saved flat model, it keeps no hash of
        real rows or sequences, so it protects none (the run that trained it did)."""
        directory = Path(directory)
        state = json.loads((directory / DATABASE_FILE).read_text())
        if state.get("format") != "synthforge-database":
            raise ModelError(f"{directory} does not hold a related-tables model ({DATABASE_FILE}).")
        relations = Relations.from_json(state["relations"])
        model = cls(relations, lambda table: pm.get_generator(state["generators"][table])())
        model.schemas_ = {t: Schema.model_validate(s) for t, s in state["schemas"].items()}
        model.plans_ = {t: TablePlan(**p) for t, p in state["plans"].items()}
        model.generators_ = {t: pm.get_generator(name).load(directory / t) for t, name in state["generators"].items()}
        model.sequence_hashes_, model.rare_rows_, model.sequences_redrawn_ = {}, {}, 0
        return model


def is_database_model(directory: str | Path) -> bool:
    return (Path(directory) / DATABASE_FILE).exists()


# --- helpers ----------------------------------------------------------------------------------------

_PARENT_INDEX = "__parent__"
_ROW = "__row__"


def _renamed(spec: ColumnSpec, name: str, frame: pl.DataFrame) -> ColumnSpec:
    """``spec`` for a copy of its column named ``name``, with that copy's null rate (dates already parsed)."""
    series = frame.get_column(name)
    return spec.model_copy(update={"name": name, "null_rate": series.null_count() / max(series.len(), 1),
                                   "format": None, "note": None, "pii": False, "personal": None, "locale": None})


def _count_distribution(frame: pl.DataFrame, columns: list[str]) -> dict[str, Any]:
    """The distribution of each count column as a number's quantile encoder learns it (flat across a count many
    rows share, interpolated between rare ones), for :func:`_calibrated_counts`; JSON, saved with the plan."""
    from synthforge.data.encoder import EncoderConfig, TableEncoder

    present = [c for c in columns if c in frame.columns]
    if not present or frame.height == 0:
        return {}
    counts = frame.select(pl.col(c).fill_null(0).cast(pl.Float64) for c in present)
    schema = infer_schema(counts, {c: ColumnOverride(kind=ColumnKind.continuous) for c in present})
    encoder = TableEncoder(EncoderConfig(numeric="quantile")).fit(counts, schema)
    return {"schema": schema.model_dump(mode="json"), "encoder": encoder.state()}


def _count_inverse(distribution: dict[str, Any], column: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The learned quantile function (share of rows → count) of a count column, or None if none was learned."""
    from scipy.special import ndtri

    from synthforge.data.encoder import TableEncoder

    if not distribution:
        return None
    encoder = TableEncoder.from_state(distribution["encoder"], Schema.model_validate(distribution["schema"]))
    if column not in encoder.columns:
        return None
    transformer = encoder.transformer(column)
    return lambda shares: transformer.inverse(ndtri(np.clip(shares, 1e-9, 1 - 1e-9))[:, None]).to_numpy()


def _stratified_counts(sampled: np.ndarray, inverse: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator,
                       total: int | None = None) -> np.ndarray:
    """Sampled counts mapped, rank for rank, onto their learned distribution.

    The generator's counts say which rows have many children (or are referred to often), jointly with their
    attributes; their distribution may drift from the real one (a 16-row table's popularity, binned into two
    tokens; a long tail). Each row's rank, ties broken at random, is placed within its own stratum of ``n``
    equal shares and read off the learned quantile function, so the counts follow the learned distribution to
    within one row in ``n`` and keep the generator's order, and, drawn inside their strata, are not the real
    counts themselves. With ``total`` (the references to share out) every row's point in its stratum moves by
    the same shift, the one at which the counts add up to ``total``; where none does, they are scaled to it.
    """
    n = len(sampled)
    rank = np.empty(n)
    rank[np.lexsort((rng.random(n), sampled))] = np.arange(n)
    offset = rng.random(n)

    def counts_at(shift: float) -> np.ndarray:
        return inverse((rank + np.clip(offset + shift, 0, 1)) / n)

    if total is None:
        return counts_at(0.0)
    low, high = -1.0, 1.0
    if counts_at(low).sum() <= total <= counts_at(high).sum():
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (middle, high) if counts_at(middle).sum() < total else (low, middle)
    counts = counts_at((low + high) / 2)
    return counts * total / counts.sum() if counts.sum() > 0 else counts


def _calibrated_counts(frame: pl.DataFrame, distribution: dict[str, Any], columns: list[str],
                       seed: int) -> pl.DataFrame:
    """``frame`` with its sampled counts of children (``columns``) on their learned distribution
    (:func:`_stratified_counts`), whole numbers."""
    rng = np.random.default_rng(derive_seed(seed, "counts"))
    calibrated = []
    for name in columns:
        inverse = _count_inverse(distribution, name)
        if inverse is None or name not in frame.columns or frame.height == 0:
            continue
        counts = _stratified_counts(frame.get_column(name).fill_null(0).cast(pl.Float64).to_numpy(), inverse, rng)
        calibrated.append(pl.Series(name, np.rint(counts)).cast(frame.schema[name]))
    return frame.with_columns(calibrated)


def _key_plan(keys: pl.Series) -> dict[str, Any]:
    if keys.dtype.is_integer():
        return {"integer_above": int(keys.max() or 0)}  # type: ignore[arg-type]
    text = keys.cast(pl.String)
    prefix, counter = "syn_", 0
    while text.str.starts_with(prefix).any():
        counter += 1
        prefix = f"syn{counter}_"
    return {"prefix": prefix}


def _new_keys(plan: dict[str, Any], n: int, offset: int, spec: ColumnSpec) -> pl.Series:
    """``n`` new primary keys, never a real one: integers above the largest real key, or prefixed text."""
    numbers = np.arange(offset, offset + n, dtype=np.int64) + 1  # offset: a partition's own range
    if "integer_above" in plan:
        return pl.Series(spec.name, numbers + plan["integer_above"], dtype=pl.Int64)
    return pl.Series(spec.name, [f"{plan['prefix']}{number:07d}" for number in numbers], dtype=pl.String)


def _order_number(expression: pl.Expr, kind: str | None) -> pl.Expr:
    if kind == "date":
        return expression.cast(pl.Date).cast(pl.Int64)
    if kind == "datetime":
        return expression.dt.epoch("us")
    return expression.cast(pl.Float64)


def _from_order_number(values: pl.Series, kind: str | None, spec: ColumnSpec) -> pl.Series:
    if kind == "date":
        return values.round().cast(pl.Int64).cast(pl.Date)
    if kind == "datetime":
        return pl.from_epoch(values.round().cast(pl.Int64), time_unit="us").cast(spec.polars_dtype, strict=False)
    target = spec.polars_dtype
    return (values.round() if target.is_integer() else values).cast(target, strict=False)


def _lag_correlation(frame: pl.DataFrame, column: str) -> float:
    """Pearson correlation of a number with its value in the row before, within sequences."""
    pairs = frame.select(pl.col(column).cast(pl.Float64), pl.col(f"{PREVIOUS}{column}").cast(pl.Float64)).drop_nulls()
    if pairs.height < 3:
        return 0.0
    value = pairs.select(pl.corr(column, f"{PREVIOUS}{column}")).item()
    return 0.0 if value is None or np.isnan(value) else float(value)


def _change(value: pl.Expr, before: pl.Expr, relative: bool) -> pl.Expr:
    return (value.cast(pl.Float64).log() - before.cast(pl.Float64).log()) if relative else value - before


def _changed(before: pl.Expr, change: pl.Expr, relative: bool) -> pl.Expr:
    return before.cast(pl.Float64) * change.cast(pl.Float64).exp() if relative else before + change


def _within(expression: pl.Expr, spec: ColumnSpec) -> pl.Expr:
    """A rebuilt number kept inside its column's training range, decimals and type."""
    if spec.minimum is not None and spec.maximum is not None:
        expression = expression.clip(spec.minimum, spec.maximum)
    if spec.decimals is not None and not spec.polars_dtype.is_integer():
        expression = expression.round(spec.decimals)
    return (expression.round() if spec.polars_dtype.is_integer() else expression).cast(spec.polars_dtype,
                                                                                       strict=False)


def _sequence_hashes(frame: pl.DataFrame, columns: list[str], schema: Schema, group: str) -> pl.Series:
    """One hash per sequence (per ``group`` value, in order of first appearance) of its rows on ``columns``,
    each column cast to its type in ``schema`` so that training and sampled rows hash alike."""
    rows = frame.select(pl.col(c).cast(schema[c].polars_dtype, strict=False) for c in columns)
    hashed = frame.select(pl.col(group), rows.hash_rows(seed=0).alias("__h"))
    return hashed.group_by(group, maintain_order=True).agg(pl.col("__h")).get_column("__h").hash(seed=0)


def _nearest_rows(queries: np.ndarray, candidates: np.ndarray, capacity: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Each query's nearest candidate row that still has room (``capacity`` references per row), queries taken
    in a random order block by block, so popular rows are chosen as often as they were learned to be.

    Within a block, a candidate picked by more queries than it has room for keeps the first of them; the others
    take their nearest candidate with room left, so no row is referred to more often than its capacity (a block
    overshooting a 16-row table's capacities had let the busiest rows take what was left at the end).
    """
    chosen = np.empty(len(queries), dtype=np.int64)
    left = capacity.astype(np.int64).copy()
    norms = np.einsum("ij,ij->i", candidates, candidates)
    jitter = rng.random(len(candidates)) * 1e-9
    order = rng.permutation(len(queries))
    for start in range(0, len(queries), 64):
        rows = order[start : start + 64]
        distances = norms[None, :] - 2 * queries[rows] @ candidates.T + jitter[None, :]
        pending = np.arange(len(rows))
        while len(pending):
            room = left > 0
            if room.any():
                distances[:, ~room] = np.inf
            picked = distances[pending].argmin(axis=1)
            accepted = _within_room(picked, left) if room.any() else np.ones(len(picked), dtype=bool)
            chosen[rows[pending[accepted]]] = picked[accepted]
            np.subtract.at(left, picked[accepted], 1)
            pending = pending[~accepted]
    return chosen


def _within_room(picked: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Which picks fit: the first ``left[c]`` of the picks of each candidate ``c``, in the order given."""
    by_candidate = np.argsort(picked, kind="stable")
    sorted_picks = picked[by_candidate]
    rank = np.empty(len(picked), dtype=np.int64)
    rank[by_candidate] = np.arange(len(picked)) - np.searchsorted(sorted_picks, sorted_picks)
    return rank < left[picked]
