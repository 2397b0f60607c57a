"""Rules kept by construction in every sampled frame, whatever the generator: mend, don't redraw.

A generator draws whole rows, and a rule between two columns (``two_year_recid <= is_recid``, both 0/1; a
chain of dates ``booked <= arrived <= left``) holds in a row only by chance. Redrawing the rows that break
it works while the rules are few; with tens of rules a row must keep all of them at once, and a run stopped
on a rule that every training row keeps (issue 40: a 51-column table with 37 rules). So :func:`repair`
mends a broken row before any row is judged, changing one column of the rule, given the others:

* comparisons (``a <= b``, ``a < b``, ``0 <= x <= 100``) between numbers, or dates of one type, and numbers
  or dates: the columns are visited in an order where every column comes after the columns it must not fall
  below (topological over the rules), and a column that falls below its bound (or above a constant upper
  bound) is drawn again above it. A column with few values (a flag, a count of a few) takes the value of a
  row of the same frame that keeps its rules and has the same bound, its *conditional* given the other
  column (``is_recid`` given ``two_year_recid = 1`` is 1); any other takes the bound plus the gap of such a
  row (a stay's length, a release's delay), so a mended column has the shape of the kept ones, not a spike
  at the bound;
* ``fixed: [a, …, z]``: ``z`` is drawn from the rows of the frame that keep the rule with the same
  ``a, …`` (else from the combinations seen in training), when those are among the rule's combinations.

Donors are rows of the frame the generator drew, never training rows: a model keeps no rows, a saved one
needs none, and under a privacy budget nothing else is read. Visiting the columns in rule order means a
column is changed only after every column it is compared with from below is final; a change can break
only rules with columns still to visit. What cannot be mended this way (arithmetic, ``==``, a column held by
the caller's conditions, a cycle of rules, ``null_together``, ``unique``) is left to the redraws in
:meth:`synthforge.Generator.sample`.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synthforge.constraints import FEW_VALUES, Constraint, parse_comparison
from synthforge.data.schema import ColumnKind, Schema, as_number, from_number

_NUMBERS = (ColumnKind.continuous, ColumnKind.integer)


@dataclass(frozen=True)
class _Bound:
    """One side of a column's range in a row: another column's value or a constant, on as_number's scale."""

    column: str | None
    constant: float | None
    strict: bool


@dataclass
class RepairPlan:
    """The columns to mend, in the order to mend them, with their bounds; and the ``fixed`` rules to mend."""

    order: list[str] = field(default_factory=list)
    lower: dict[str, list[_Bound]] = field(default_factory=dict)
    upper: dict[str, list[_Bound]] = field(default_factory=dict)
    fixed: list[Constraint] = field(default_factory=list)
    #: the rules (as written) every mended frame keeps
    kept: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.order or self.fixed)


def plan_repairs(schema: Schema, pinned: set[str] | frozenset[str] = frozenset()) -> RepairPlan:
    """What :func:`repair` mends for ``schema``'s rules when the columns in ``pinned`` may not change (a
    condition's, a context's, a derived column's)."""
    pinned = set(pinned) | {r.columns()[0] for r in schema.constraints if r.derive is not None}
    edges: dict[str, list[tuple[str, _Bound, _Bound | None]]] = {}  # rule -> [(column, bound, None)]
    for rule in schema.constraints:
        if rule.check is not None:
            found = _comparison_bounds(rule.check, schema, pinned)
            if found is not None:
                edges[rule.describe()] = found
    plan = RepairPlan()
    while True:  # a cycle of rules (a <= b, b <= a) is left to the redraws; the others are mended
        graph: dict[str, set[str]] = {}
        for bounds in edges.values():
            for column, bound, upper in bounds:
                graph.setdefault(column, set())
                for other in (bound.column, upper.column if upper is not None else None):
                    if other is not None:
                        graph[column].add(other)
        try:
            order = list(graphlib.TopologicalSorter(graph).static_order())
            break
        except graphlib.CycleError as error:
            cycle = set(error.args[1])
            edges = {rule: bounds for rule, bounds in edges.items()
                     if not any(c in cycle and (b.column in cycle or (u is not None and u.column in cycle))
                                for c, b, u in bounds)}
    for bounds in edges.values():
        for column, bound, upper in bounds:
            if upper is None:
                plan.lower.setdefault(column, []).append(bound)
            else:
                plan.upper.setdefault(column, []).append(upper)
    plan.order = [c for c in order if c in plan.lower or c in plan.upper]
    plan.kept = list(edges)
    for rule in schema.constraints:
        if rule.fixed is not None and rule.allowed_ and rule.fixed[-1] not in pinned:
            plan.fixed.append(rule)
            plan.kept.append(rule.describe())
    return plan


def _comparison_bounds(text: str, schema: Schema,
                       pinned: set[str]) -> list[tuple[str, _Bound, _Bound | None]] | None:
    """The bounds a comparison sets, as (moved column, lower bound, None) or (moved column, _, upper bound);
    None when it cannot be mended by moving one column past another (arithmetic, ==, !=, mixed types, or
    both sides held)."""
    _, ops, operands = parse_comparison(text)
    if any(o[0] not in ("col", "num", "str") for o in operands) or any(op not in ("<", "<=", ">", ">=")
                                                                    for op in ops):
        return None
    columns = [o[1] for o in operands if o[0] == "col"]
    if not columns or any(c not in schema for c in columns):
        return None
    kinds = {(schema[c].kind, schema[c].dtype if schema[c].kind == ColumnKind.datetime else None) for c in columns}
    families = {"number" if kind in _NUMBERS else (kind, dtype) for kind, dtype in kinds}
    if len(families) != 1 or not all(k in _NUMBERS or k == ColumnKind.datetime for k, _ in kinds):
        return None
    like = schema[columns[0]]
    values = [_constant(o, like) for o in operands]
    if any(o[0] != "col" and v is None for o, v in zip(operands, values, strict=True)):
        return None
    found: list[tuple[str, _Bound, _Bound | None]] = []
    for index, op in enumerate(ops):
        low, high = (index, index + 1) if op in ("<", "<=") else (index + 1, index)
        strict = op in ("<", ">")
        low_op, high_op = operands[low], operands[high]
        if high_op[0] == "col" and high_op[1] not in pinned:  # the higher side moves up past the lower one
            bound = _Bound(low_op[1], None, strict) if low_op[0] == "col" else _Bound(None, values[low], strict)
            found.append((high_op[1], bound, None))
        elif low_op[0] == "col" and low_op[1] not in pinned:  # or the lower side down, below a held one
            ceiling = _Bound(high_op[1], None, strict) if high_op[0] == "col" else _Bound(None, values[high], strict)
            found.append((low_op[1], _Bound(None, None, strict), ceiling))
        elif low_op[0] == "col" or high_op[0] == "col":
            return None
    return found


def _constant(operand: tuple, like: Any) -> float | None:
    if operand[0] == "num":
        return float(operand[1]) if like.kind in _NUMBERS else None
    if operand[0] == "str":
        if like.kind != ColumnKind.datetime:
            return None
        dtype = like.polars_dtype
        try:
            text = pl.Series([operand[1]])
            parsed = text.str.to_date() if dtype == pl.Date else text.str.to_datetime().cast(dtype)
        except pl.exceptions.PolarsError:
            return None
        return float(as_number(parsed)[0])
    return None


def repair(frame: pl.DataFrame, plan: RepairPlan, schema: Schema, rng: np.random.Generator) -> pl.DataFrame:
    """``frame`` with the rows that break a rule of ``plan`` mended (see the module's docstring)."""
    if frame.height == 0 or not plan:
        return frame
    for rule in plan.fixed:
        frame = _repair_fixed(frame, rule, rng)
    for column in plan.order:
        if column in frame.columns:
            frame = _repair_column(frame, column, plan.lower.get(column, []), plan.upper.get(column, []),
                                   schema, rng)
    return frame


def _repair_column(frame: pl.DataFrame, column: str, lower: list[_Bound], upper: list[_Bound], schema: Schema,
                   rng: np.random.Generator) -> pl.DataFrame:
    spec = schema[column]
    series = frame.get_column(column)
    x = as_number(series).cast(pl.Float64).to_numpy().astype(np.float64)
    present = ~np.isnan(x)
    ok = np.ones(frame.height, dtype=bool)
    unit = _unit(spec)
    base = np.full(frame.height, -np.inf)  # the highest lower bound of each row, its lowest upper one
    ceiling = np.full(frame.height, np.inf)
    for bound in lower:
        value = _bound_values(frame, bound)
        known = ~np.isnan(value)  # a comparison with a null holds
        ok &= ~known | ((x > value) if bound.strict else (x >= value))
        base = np.where(known, np.maximum(base, value + (unit if bound.strict else 0.0)), base)
    for bound in upper:
        value = _bound_values(frame, bound)
        known = ~np.isnan(value)
        ok &= ~known | ((x < value) if bound.strict else (x <= value))
        ceiling = np.where(known, np.minimum(ceiling, value - (unit if bound.strict else 0.0)), ceiling)
    broken = present & ~ok
    if not broken.any():
        return frame
    donors = present & ok
    new = x.copy()
    if spec.kind == ColumnKind.integer and 0 < spec.n_unique <= FEW_VALUES:
        # by value: the column given its bounds, in the rows that keep its rules (is_recid given two_year_recid)
        for low, high in {(a, b) for a, b in zip(base[broken], ceiling[broken], strict=True)}:
            rows = np.flatnonzero(broken & (base == low) & (ceiling == high))
            pool = x[donors & (base == low) & (ceiling == high)]
            if not pool.size:
                pool = x[donors & (x >= low) & (x <= high)]
            new[rows] = rng.choice(pool, size=rows.size) if pool.size else (low if np.isfinite(low) else high)
    else:
        # by gap: the bound plus (or minus) the gap a kept row has to its own bound
        for rows, edge, sign, kept in (
                (np.flatnonzero(broken & np.isfinite(base)), base, 1.0, donors & np.isfinite(base)),
                (np.flatnonzero(broken & ~np.isfinite(base) & np.isfinite(ceiling)), ceiling, -1.0,
                 donors & np.isfinite(ceiling))):
            if rows.size:
                gaps = sign * (x[kept] - edge[kept])
                new[rows] = edge[rows] + sign * (rng.choice(gaps, size=rows.size) if gaps.size else 0.0)
    new = np.where(broken, np.minimum(new, ceiling), new)
    if spec.kind in _NUMBERS and spec.minimum is not None and spec.maximum is not None:
        new = np.where(broken, np.clip(new, spec.minimum, spec.maximum), new)
    mended = pl.Series(column, new)
    if spec.kind == ColumnKind.datetime:
        mended = from_number(mended.round(0), series.dtype)
    elif spec.kind == ColumnKind.integer:
        mended = mended.round(0).cast(series.dtype)
    else:
        mended = (mended.round(spec.decimals) if spec.decimals is not None else mended).cast(series.dtype)
    return frame.with_columns(pl.when(pl.Series(broken)).then(mended).otherwise(series).alias(column))


def _bound_values(frame: pl.DataFrame, bound: _Bound) -> np.ndarray:
    if bound.column is None:
        return np.full(frame.height, float(bound.constant))  # type: ignore[arg-type]
    return as_number(frame.get_column(bound.column)).cast(pl.Float64).to_numpy().astype(np.float64)


def _unit(spec: Any) -> float:
    """The smallest step above a bound: one day, microsecond or whole number; a 10^-decimals otherwise."""
    if spec.kind in (ColumnKind.integer, ColumnKind.datetime):
        return 1.0
    return 10.0 ** -spec.decimals if spec.decimals is not None else 1e-9


def _repair_fixed(frame: pl.DataFrame, rule: Constraint, rng: np.random.Generator) -> pl.DataFrame:
    """The last column of a broken ``fixed`` row drawn from the rows (else the combinations) with its others."""
    columns = list(rule.fixed or [])
    if any(c not in frame.columns for c in columns):
        return frame
    held = rule.holds(frame).to_numpy()
    if held.all():
        return frame
    *given, last = columns
    keys = frame.select(given).rows()
    values = frame.get_column(last).to_list()
    choices: dict[tuple, list[Any]] = {}
    for key, value, keeps in zip(keys, values, held, strict=True):
        if keeps:
            choices.setdefault(key, []).append(value)
    seen: dict[tuple, list[Any]] = {}
    for combination in rule.allowed_ or []:
        seen.setdefault(tuple(combination[:-1]), []).append(combination[-1])
    mended = list(values)
    for row in np.flatnonzero(~held):
        pool = choices.get(keys[row]) or seen.get(keys[row])
        if pool:
            mended[row] = pool[int(rng.integers(len(pool)))]
    return frame.with_columns(pl.Series(last, mended, dtype=frame.schema[last]))
