"""``synthforge profile DATA``: what a table holds, the rules every row keeps, and a recipe to start from.

The profile is the inferred schema (kind, nulls, distinct values, date format, why a column is
not learned) and the relations that hold in *every* row of the table:

- ``a <= b`` between two numbers or two dates (only when values paired at random would often break it);
- ``fixed: [a, b]``: ``a`` determines ``b`` (city → state; Adult's education → education-num);
- ``null_together``: columns null in exactly the same rows;
- ``derive: c = a + b`` (or ``a - b``, ``a * b``): a number computed from two others.

Candidates are found on a sample of rows and confirmed on every row. The starter recipe is
YAML with the profile as comments and the relations as ``constraints:``, ready to run or edit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from synthforge.constraints import Constraint
from synthforge.data.schema import ColumnKind, ColumnOverride, Schema, as_number, infer_schema, to_internal

# Bounds that keep profiling a wide table quick: pairs of numeric columns looked at, and columns tried as
# sums and products of two others.
MAX_ORDERED_COLUMNS = 80
MAX_DERIVED_COLUMNS = 25
MAX_FIXED_RULES = 20
SAMPLE_ROWS = 2000
MIN_ROWS = 20
# a <= b is reported only if rows paired at random break it at least this often
MIN_RANDOM_BREAKS = 0.05


@dataclass
class Profile:
    path: str
    rows: int
    schema: Schema
    relations: list[Constraint] = field(default_factory=list)

    def columns_table(self) -> list[dict[str, Any]]:
        return [{"column": c.name, "kind": c.kind.value, "nulls": c.null_rate, "distinct": c.n_unique,
                 "format": c.format, "personal": c.personal, "locale": c.locale, "note": c.note}
                for c in self.schema.columns]


def profile_table(table: pl.DataFrame, *, path: str = "data.csv", overrides: dict[str, ColumnOverride] | None = None,
                  max_categories: int = 1000) -> Profile:
    schema = infer_schema(table, overrides, max_categories=max_categories)
    return Profile(path, table.height, schema, find_relations(to_internal(table, schema), schema))


def find_relations(table: pl.DataFrame, schema: Schema) -> list[Constraint]:
    """The rules that hold in every row of ``table`` (dates parsed), most useful first."""
    return [*_orderings(table, schema), *_derivations(table, schema), *_null_groups(table, schema),
            *_fixed_combinations(table, schema)]


def _name(column: str) -> str:
    return column if column.isidentifier() else f"`{column}`"


def _numeric_block(table: pl.DataFrame, names: list[str]) -> np.ndarray:
    return np.column_stack([as_number(table.get_column(n)).cast(pl.Float64).fill_null(np.nan).to_numpy()
                            for n in names]) if names else np.zeros((table.height, 0))


def _orderings(table: pl.DataFrame, schema: Schema) -> list[Constraint]:
    found = []
    dates = [c.name for c in schema.learned if c.kind == ColumnKind.datetime]
    families = [  # on as_number's scale a date counts days and a timestamp microseconds: compared apart
        [c.name for c in schema.learned if c.kind in (ColumnKind.continuous, ColumnKind.integer)],
        [n for n in dates if table.schema[n] == pl.Date],
        [n for n in dates if isinstance(table.schema[n], pl.Datetime)],
    ]
    for names in families:
        names = names[:MAX_ORDERED_COLUMNS]
        if len(names) < 2:
            continue
        values = _numeric_block(table, names)
        sample = values[: SAMPLE_ROWS]
        shuffled = sample[np.random.default_rng(0).permutation(len(sample))]
        for i, j in itertools.permutations(range(len(names)), 2):
            if not _holds_le(sample[:, i], sample[:, j]) or not _holds_le(values[:, i], values[:, j]):
                continue
            # A rule is news only if values paired at random would often break it: month <= temperature
            # holds on every day of a year only because temperatures are mostly above 12.
            with np.errstate(invalid="ignore"):
                broken_at_random = np.nanmean(np.where(np.isnan(sample[:, i]) | np.isnan(shuffled[:, j]), np.nan,
                                                       sample[:, i] > shuffled[:, j]))
            if not broken_at_random >= MIN_RANDOM_BREAKS:
                continue
            both = ~(np.isnan(values[:, i]) | np.isnan(values[:, j]))
            if both.sum() < MIN_ROWS or np.all(values[both, i] == values[both, j]):
                continue
            found.append(Constraint(check=f"{_name(names[i])} <= {_name(names[j])}"))
    return found


def _holds_le(a: np.ndarray, b: np.ndarray) -> bool:
    with np.errstate(invalid="ignore"):
        return bool(np.all((a <= b) | np.isnan(a) | np.isnan(b)))


def _derivations(table: pl.DataFrame, schema: Schema) -> list[Constraint]:
    numbers = [c for c in schema.learned if c.kind in (ColumnKind.continuous, ColumnKind.integer)]
    names = [c.name for c in numbers][:MAX_DERIVED_COLUMNS]
    if len(names) < 3:
        return []
    values = _numeric_block(table, names)
    found, derived = [], set()
    for target in range(len(names)):
        if numbers[target].n_unique <= 2:  # a flag is no sum
            continue
        for i, j in itertools.combinations([k for k in range(len(names)) if k != target], 2):
            for symbol, combine in (("+", np.add), ("*", np.multiply), ("-", np.subtract)):
                if names[target] in derived:
                    break
                if _derives(values, target, i, j, combine):
                    found.append(Constraint(derive=f"{_name(names[target])} = {_name(names[i])} {symbol} "
                                                   f"{_name(names[j])}"))
                    derived.add(names[target])
    return found


def _derives(values: np.ndarray, target: int, i: int, j: int, combine: Any) -> bool:
    for rows in (values[:SAMPLE_ROWS], values):
        computed = combine(rows[:, i], rows[:, j])
        present = ~np.isnan(computed) & ~np.isnan(rows[:, target])
        if present.sum() < MIN_ROWS or np.isnan(computed).sum() != np.isnan(rows[:, target]).sum():
            return False
        if not np.allclose(computed[present], rows[present, target], rtol=1e-9, atol=1e-9):
            return False
    return True


def _null_groups(table: pl.DataFrame, schema: Schema) -> list[Constraint]:
    masks: dict[bytes, list[str]] = {}
    for column in schema.learned:
        if 0 < column.null_rate < 1:
            masks.setdefault(np.packbits(table.get_column(column.name).is_null().to_numpy()).tobytes(),
                             []).append(column.name)
    return [Constraint(null_together=group) for group in masks.values() if len(group) > 1]


def _fixed_combinations(table: pl.DataFrame, schema: Schema) -> list[Constraint]:
    discrete = [c for c in schema.learned if c.kind in (ColumnKind.categorical, ColumnKind.boolean)
                and 2 <= c.n_unique <= 0.5 * table.height]
    if len(discrete) < 2:
        return []
    pairs = [(a.name, b.name) for a, b in itertools.permutations(discrete, 2) if a.n_unique >= b.n_unique]
    counts = table.select(pl.struct(a, b).n_unique().alias(str(k)) for k, (a, b) in enumerate(pairs)).row(0)
    distinct = {c.name: table.get_column(c.name).n_unique() for c in discrete}
    found, seen = [], set()
    for (a, b), count in zip(pairs, counts, strict=True):
        if count == distinct[a] and frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            found.append(Constraint(fixed=[a, b]))
    return found[:MAX_FIXED_RULES]


def starter_recipe(profile: Profile, *, generator: str = "copula") -> str:
    """A recipe (YAML) that runs as it is: the profile as comments, formats and relations spelled out."""
    lines = [f"# synthforge profile of {profile.path}: {profile.rows:,} rows × {len(profile.schema.columns)} columns",
             "#", "# column                         kind         nulls  distinct  format / note"]
    for row in profile.columns_table():
        detail = row["format"] or row["note"] or ""
        if row["personal"]:
            detail = f"[{row['personal']}, {row['locale']}] {detail}"
        if row["format"] and row["note"] and "written" not in row["note"]:
            detail += f"; {row['note']}"
        lines.append(f"#   {row['column'][:28]:<28} {row['kind']:<12} {row['nulls']:>5.1%}  {row['distinct']:>8,}  "
                     f"{detail}".rstrip())
    if profile.relations:
        lines += ["#", f"# {len(profile.relations)} relation(s) hold in every row: they are the constraints below;",
                  "# delete any that is a coincidence of this sample rather than a rule."]
    lines += ["#", "# Run it: synthforge run <this file>. Other generators: synthforge plugins.", ""]
    stem = Path(profile.path).stem
    columns: dict[str, Any] = {}
    locale = next((c.locale for c in profile.schema.columns if c.personal and c.personal != "iban"
                   and not c.kind.learned), None)
    for column in profile.schema.columns:
        if column.format:
            columns[column.name] = {"kind": "datetime", "format": column.format}
        elif not column.kind.learned and column.kind != ColumnKind.constant:
            columns[column.name] = {"kind": column.kind.value}
        if column.personal and not column.kind.learned:  # spelled out, so the recipe says what Faker writes
            columns[column.name] |= {"pii": column.personal} | (
                {"locale": column.locale} if column.locale and column.locale != locale else {})
    recipe: dict[str, Any] = {
        "version": 1, "name": stem, "seed": 0,
        "source": {"path": profile.path, **({"locale": locale} if locale else {}),
                   **({"columns": columns} if columns else {})},
        "holdout": 0.2,
        "generator": {"name": generator},
        "output": {"path": f"{stem}-synthetic", "format": Path(profile.path).suffix.lstrip(".") or "csv"},
    }
    if recipe["output"]["format"] not in ("csv", "parquet", "ndjson", "ipc"):
        recipe["output"]["format"] = "csv"
    if profile.relations:
        recipe["constraints"] = [_as_recipe(rule) for rule in profile.relations]
    return "\n".join(lines) + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=120)


def _as_recipe(rule: Constraint) -> Any:
    if rule.check is not None:
        return rule.check
    return {rule.kind: getattr(rule, rule.kind)}
