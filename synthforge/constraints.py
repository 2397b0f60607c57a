"""Business rules every output row keeps: a recipe's ``constraints:``.

Five kinds, each a small data object (a :class:`Constraint`)::

    constraints:
      - released >= booked                  # a comparison between columns and numbers (or dates as text)
      - 0 <= score <= 100                   # chained: a range
      - total == price * quantity + fee     # any arithmetic of + - * / ( ) abs min max round
      - fixed: [city, state]                # only (city, state) pairs seen in training
      - null_together: [release_date, release_reason]
      - derive: total = price * quantity    # computed, never sampled
      - unique: booking_ref

Expressions are *parsed* by the small grammar below into polars expressions, never evaluated
as Python. A column name that is not a plain word is written in backticks
(`` `capital-gain` >= 0 ``). A comparison is true when a column it reads is null (as in SQL's
CHECK), so nulls stay a matter for ``null_together``.

How each is kept: ``derive`` by construction (the column is computed from the sampled ones
after decoding); ``a <= b`` between two columns by construction too (the model learns ``b - a >= 0``
in place of ``b``: :func:`orderings_by_construction`); the other comparisons of columns and constants
(chains of dates, flags) and ``fixed`` by mending the one column that breaks them in each sampled row
(:mod:`synthforge.rule_repair`); what is left by drawing the rows that break them again, with the same
conditions, inside :meth:`synthforge.Generator.sample`, so every generator, first- or third-party,
keeps them. A model that keeps breaking a rule after a bounded
number of fresh draws is an error that names the rule and how often it held. The
``constraints`` check reports, per rule, the share of output rows that hold it (1.0 required) and
the real table's own share.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthforge.errors import RecipeError

#: an integer column with at most this many values is a flag or a small count: its rules are kept by value
FEW_VALUES = 20
KINDS = ("check", "fixed", "null_together", "derive", "unique")
FUNCTIONS = {"abs": 1, "min": 2, "max": 2, "round": 2}
_TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|<|>|=|\+|-|\*|/|\(|\)|,)
)""", re.VERBOSE)
_COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")


class Constraint(BaseModel):
    """One rule; exactly one of its kind fields is set. ``allowed_`` is fitted (for ``fixed``)."""

    model_config = ConfigDict(extra="forbid")

    check: str | None = Field(None, description="A comparison, e.g. 'released >= booked' or '0 <= x <= 1'.")
    fixed: list[str] | None = Field(None, description="Columns whose combinations must be ones seen in training.")
    null_together: list[str] | None = Field(None, description="Columns null in the same rows.")
    derive: str | None = Field(None, description="'column = expression': computed from the others.")
    unique: str | None = Field(None, description="A column with no repeated value in one sampling call.")
    #: the combinations of a ``fixed`` rule seen in training (each in at least ``MIN_ROWS`` rows)
    allowed_: list[list[Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"check": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> Constraint:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"a constraint is exactly one of {', '.join(KINDS)}; this one gives "
                             f"{', '.join(given) or 'none'}")
        if self.check is not None:
            parse_comparison(self.check)
        if self.derive is not None:
            parse_derivation(self.derive)
        for columns in (self.fixed, self.null_together):
            if columns is not None and len(columns) < 2:
                raise ValueError("fixed and null_together name at least two columns")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    def describe(self) -> str:
        """The rule as a recipe writes it."""
        value = getattr(self, self.kind)
        if self.kind == "check":
            return str(value)
        return f"{self.kind}: {', '.join(value) if isinstance(value, list) else value}"

    def columns(self) -> list[str]:
        if self.check is not None:
            return sorted(_names(parse_comparison(self.check)))
        if self.derive is not None:
            target, expression = parse_derivation(self.derive)
            return [target, *sorted(_names(expression))]
        value = getattr(self, self.kind)
        return list(value) if isinstance(value, list) else [value]

    def holds(self, frame: pl.DataFrame) -> pl.Series:
        """A boolean per row of ``frame`` (dates parsed): whether the row keeps this rule."""
        if self.check is not None:
            return frame.select(_compile(parse_comparison(self.check), frame.schema).fill_null(True)).to_series()
        if self.derive is not None:
            target, expression = parse_derivation(self.derive)
            computed = frame.select(_compile(expression, frame.schema)).to_series()
            actual = frame.get_column(target).cast(pl.Float64, strict=False)
            close = (actual - computed.cast(pl.Float64, strict=False)).abs() <= 1e-6 * (computed.abs() + 1)
            return close.fill_null(actual.is_null() == computed.is_null())
        if self.null_together is not None:
            nulls = frame.select(pl.col(self.null_together).is_null())
            return nulls.select(pl.all_horizontal(pl.all()) | ~pl.any_horizontal(pl.all())).to_series()
        if self.fixed is not None:
            allowed = pl.DataFrame(self.allowed_ or [], schema=[(c, frame.schema[c]) for c in self.fixed],
                                   orient="row").with_columns(pl.lit(True).alias("__allowed__"))
            joined = frame.select(self.fixed).with_row_index("__row__").join(allowed, on=self.fixed, how="left",
                                                                             nulls_equal=True)
            return joined.sort("__row__").get_column("__allowed__").fill_null(False)
        column = frame.get_column(str(self.unique))
        return column.is_first_distinct() | column.is_null()

    def fit(self, table: pl.DataFrame, min_rows: int) -> Constraint:
        """The rule with what it learns from the training table (a ``fixed`` rule's combinations)."""
        if self.fixed is None:
            return self
        combos = table.group_by(self.fixed).len().filter(pl.col("len") >= min_rows).drop("len").sort(self.fixed)
        return self.model_copy(update={"allowed_": [list(row) for row in combos.rows()]})

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """A ``derive`` rule's column computed from ``frame``; other rules leave it as it is."""
        if self.derive is None:
            return frame
        target, expression = parse_derivation(self.derive)
        dtype = frame.schema[target]
        computed = _compile(expression, frame.schema)
        if dtype.is_float() or dtype.is_integer():  # an overflow is missing too, never ±inf
            computed = computed.cast(pl.Float64, strict=False)
            computed = pl.when(computed.is_finite()).then(computed)
        if dtype.is_integer():
            computed = computed.round(0)
        return frame.with_columns(computed.cast(dtype, strict=False).alias(target))


def check_constraints(constraints: list[Constraint], columns: list[str], where: str = "constraints") -> None:
    """Raise :class:`RecipeError` if a rule names a column the table lacks (every such rule in one message)."""
    problems = constraint_problems(constraints, columns, where)
    if problems:
        raise RecipeError("\n".join(problems))


def constraint_problems(constraints: list[Constraint], columns: list[str], where: str = "constraints") -> list[str]:
    """One line per rule that names a column the table lacks."""
    problems = []
    for constraint in constraints:
        missing = [c for c in constraint.columns() if c not in columns]
        if missing:
            problems.append(f"{where}: the rule {constraint.describe()!r} names {', '.join(map(repr, missing))}, "
                            f"not a learned column; the learned columns are: {', '.join(columns)}.")
    return problems


# --- the expression language ---------------------------------------------------------------
# comparison := sum (CMP sum)+      a chain a <= b <= c means a <= b and b <= c
# sum        := term (("+" | "-") term)*
# term       := unary (("*" | "/") unary)*
# unary      := "-" unary | atom
# atom       := NUMBER | STRING | NAME | `QUOTED NAME` | FUNCTION "(" sum ("," sum)* ")" | "(" sum ")"
# A node is a tuple: ("num", x) ("str", s) ("col", name) ("neg", a) ("bin", op, a, b) ("call", f, args)
# ("cmp", [ops], [operands]).


def parse_comparison(text: str) -> tuple:
    parser = _Parser(text)
    operands = [parser.sum()]
    ops = []
    while parser.peek() in _COMPARISONS:
        ops.append(parser.take())
        operands.append(parser.sum())
    parser.end()
    if not ops:
        raise ValueError(f"{text!r} is not a comparison: use <, <=, >, >=, == or != (e.g. 'end >= start')")
    return ("cmp", ops, operands)


def parse_derivation(text: str) -> tuple[str, tuple]:
    parser = _Parser(text)
    target = parser.atom()
    if target[0] != "col" or parser.take() != "=":
        raise ValueError(f"{text!r} is not a derivation: write 'column = expression' (e.g. 'total = a + b')")
    expression = parser.sum()
    parser.end()
    if target[1] in _names(expression):
        raise ValueError(f"{text!r} derives {target[1]!r} from itself")
    return target[1], expression


#: a rule is one line a person reads; these bound what a hostile one can make the parser do
MAX_RULE_LENGTH = 500
MAX_RULE_TOKENS = 200
MAX_RULE_DEPTH = 20


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_RULE_LENGTH:
            raise ValueError(f"the rule {text[:40]!r}… is {len(text):,} characters long; rules are limited to "
                             f"{MAX_RULE_LENGTH} (split it into several rules)")
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        self.depth = 0
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise ValueError(f"cannot read {text!r} at {text[position:].strip()!r}: a rule uses column names, "
                                 f"numbers, 'text', + - * / ( ) and comparisons")
            kind = match.lastgroup or "op"
            self.tokens.append((kind, match.group(kind)))
            if len(self.tokens) > MAX_RULE_TOKENS:
                raise ValueError(f"the rule {text[:40]!r}… has more than {MAX_RULE_TOKENS} names, numbers and "
                                 "operators; split it into several rules")
            position = match.end()
        self.index = 0

    def _nested(self) -> None:
        """One more level of parentheses, calls or signs; refused past :data:`MAX_RULE_DEPTH`."""
        self.depth += 1
        if self.depth > MAX_RULE_DEPTH:
            raise ValueError(f"the rule {self.text[:40]!r}… nests more than {MAX_RULE_DEPTH} levels of "
                             "parentheses, calls or signs; write it flatter")

    def peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def take(self) -> str:
        if self.index >= len(self.tokens):
            raise ValueError(f"{self.text!r} ends too early")
        self.index += 1
        return self.tokens[self.index - 1][1]

    def end(self) -> None:
        if self.index != len(self.tokens):
            raise ValueError(f"cannot read {self.text!r}: unexpected {self.peek()!r}")

    def sum(self) -> tuple:
        node = self.term()
        while self.peek() in ("+", "-"):
            node = ("bin", self.take(), node, self.term())
        return node

    def term(self) -> tuple:
        node = self.unary()
        while self.peek() in ("*", "/"):
            node = ("bin", self.take(), node, self.unary())
        return node

    def unary(self) -> tuple:
        if self.peek() == "-":
            self.take()
            self._nested()
            node = ("neg", self.unary())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> tuple:
        if self.index >= len(self.tokens):
            raise ValueError(f"{self.text!r} ends too early")
        kind, value = self.tokens[self.index]
        self.index += 1
        if kind == "number":
            return ("num", float(value))
        if kind == "string":
            return ("str", value[1:-1])
        if kind == "quoted":
            return ("col", value[1:-1])
        if kind == "name":
            if self.peek() == "(":
                if value not in FUNCTIONS:
                    raise ValueError(f"{self.text!r} calls {value}(), not one of {', '.join(FUNCTIONS)}")
                self.take()
                self._nested()
                args = [self.sum()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.sum())
                self.depth -= 1
                if self.take() != ")":
                    raise ValueError(f"{self.text!r}: {value}( is not closed")
                if len(args) != FUNCTIONS[value]:
                    raise ValueError(f"{self.text!r}: {value}() takes {FUNCTIONS[value]} argument(s)")
                return ("call", value, args)
            return ("col", value)
        if value == "(":
            self._nested()
            node = self.sum()
            self.depth -= 1
            if self.take() != ")":
                raise ValueError(f"{self.text!r}: a parenthesis is not closed")
            return node
        raise ValueError(f"cannot read {self.text!r}: unexpected {value!r}")


def _names(node: tuple) -> set[str]:
    if node[0] == "col":
        return {node[1]}
    children: list[Any] = []
    if node[0] == "neg":
        children = [node[1]]
    elif node[0] == "bin":
        children = [node[2], node[3]]
    elif node[0] == "call" or node[0] == "cmp":
        children = node[2]
    return set().union(*(_names(child) for child in children)) if children else set()


def _compile(node: tuple, schema: pl.Schema, like: pl.DataType | None = None) -> pl.Expr:
    """The polars expression of ``node``; a text literal beside a date column is read as a date."""
    kind = node[0]
    if kind == "num":
        return pl.lit(node[1])
    if kind == "str":
        literal = pl.lit(node[1])
        if like is not None and like.is_temporal():
            return literal.str.to_datetime().cast(like) if like != pl.Date else literal.str.to_date()
        return literal
    if kind == "col":
        if node[1] not in schema:
            raise RecipeError(f"a rule names column {node[1]!r}, not in the table")
        return pl.col(node[1])
    if kind == "neg":
        return -_compile(node[1], schema)
    if kind == "bin":
        left, right = _compile(node[2], schema), _compile(node[3], schema)
        if node[1] == "/":  # a quotient by zero is missing, as in SQL's NULLIF(b, 0): never ±inf in an output
            return pl.when(right != 0).then(left / right)
        return {"+": left + right, "-": left - right, "*": left * right}[node[1]]
    if kind == "call":
        args = [_compile(arg, schema) for arg in node[2]]
        if node[1] == "abs":
            return args[0].abs()
        if node[1] == "round":
            return args[0].round(int(node[2][1][1]) if node[2][1][0] == "num" else 0)
        return (pl.min_horizontal if node[1] == "min" else pl.max_horizontal)(*args)
    ops, operands = node[1], node[2]
    types = [schema[o[1]] if o[0] == "col" else None for o in operands]
    compiled = []
    for index, operand in enumerate(operands):
        neighbour = types[index - 1] if index and types[index - 1] is not None else (
            types[index + 1] if index + 1 < len(types) else None)
        compiled.append(_compile(operand, schema, like=neighbour))
    exact = any(t is not None and (t == pl.String or t.is_temporal()) for t in types) or any(
        o[0] == "str" for o in operands)
    parts = []
    for op, left, right in zip(ops, compiled, compiled[1:], strict=False):
        if op in ("==", "!=") and not exact:  # arithmetic in floats: equal to a millionth of a unit
            equal = (left - right).abs() <= 1e-6 * (right.abs() + 1)
            parts.append(equal if op == "==" else ~equal)
            continue
        parts.append({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right,
                      "==": left == right, "!=": left != right}[op])
    return pl.all_horizontal(parts)


# --- orderings kept by construction --------------------------------------------------------------
# A rule `a <= b` between two learned columns (numbers, or dates of one type) is learned as the difference
# d = b - a ≥ 0 in place of b, and b = a + d after decoding: every sampled row keeps it without a redraw, and the
# model learns the gap (a stay's length, a release's delay), which is what the data is about.


def orderings_by_construction(schema: Any) -> list[dict[str, Any]]:
    """The ``a <= b`` rules of ``schema`` learned as differences: [{"column": b, "base": a, "rule": text}].

    Only a plain comparison of two columns (``<=`` or ``>=``) whose base has no nulls (``b - a`` must not
    lose a ``b``), both numbers (not flags or small counts: ``FEW_VALUES``) or both dates of one type; each
    column changed once, and never a column another difference is built on, so that decoding can rebuild
    them in order. The rules left out are mended after sampling (:mod:`synthforge.rule_repair`).
    """
    from synthforge.data.schema import ColumnKind

    plans: list[dict[str, Any]] = []
    changed: set[str] = set()
    bases: set[str] = set()
    for rule in schema.constraints:
        pair = _plain_ordering(rule)
        if pair is None:
            continue
        low, high = pair
        if low not in schema or high not in schema:
            continue
        a, b = schema[low], schema[high]
        numbers = (ColumnKind.continuous, ColumnKind.integer)
        same_family = (a.kind in numbers and b.kind in numbers) or (
            a.kind == b.kind == ColumnKind.datetime and a.dtype == b.dtype)
        # Flags and small counts keep their rules by value instead (rule_repair): a 0/1 column learned as a
        # difference could no longer be conditioned on, and the sum of two learned flags can leave {0, 1}.
        few = any(s.kind == ColumnKind.integer and 0 < s.n_unique <= FEW_VALUES for s in (a, b))
        if not same_family or few or a.null_rate > 0 or high in changed or high in bases or low == high:
            continue
        plans.append({"column": high, "base": low, "rule": rule.describe()})
        changed.add(high)
        bases.add(low)
    return plans


def _plain_ordering(rule: Constraint) -> tuple[str, str] | None:
    if rule.check is None:
        return None
    _, ops, operands = parse_comparison(rule.check)
    if len(ops) != 1 or ops[0] not in ("<=", ">=") or any(o[0] != "col" for o in operands):
        return None
    left, right = operands[0][1], operands[1][1]
    return (left, right) if ops[0] == "<=" else (right, left)


def to_differences(frame: pl.DataFrame, plans: list[dict[str, Any]]) -> pl.DataFrame:
    """``frame`` with each planned ``b`` replaced by ``b - a`` (dates and times on the as_number scale)."""
    from synthforge.data.schema import as_number

    if not plans:
        return frame
    return frame.with_columns(
        (as_number(frame.get_column(p["column"])).cast(pl.Float64)
         - as_number(frame.get_column(p["base"])).cast(pl.Float64)).alias(p["column"])
        for p in plans if p["column"] in frame.columns and p["base"] in frame.columns)


def from_differences(frame: pl.DataFrame, plans: list[dict[str, Any]], schema: Any) -> pl.DataFrame:
    """The inverse of :func:`to_differences`, in plan order: ``b = a + max(d, 0)`` in ``b``'s own type."""
    from synthforge.data.schema import as_number, from_number

    for plan in plans:
        spec = schema[plan["column"]]
        base = as_number(frame.get_column(plan["base"])).cast(pl.Float64)
        value = base + frame.get_column(plan["column"]).cast(pl.Float64).clip(lower_bound=0.0)
        dtype = spec.polars_dtype
        if dtype.is_temporal():
            value = from_number(value.round(0), dtype)
        elif dtype.is_integer():
            value = value.round(0).cast(dtype)
        frame = frame.with_columns(value.alias(plan["column"]))
    return frame


def difference_schema(schema: Any, frame: pl.DataFrame, plans: list[dict[str, Any]]) -> Any:
    """``schema`` as the model sees it: each planned column described as its difference from its base."""
    from synthforge.data.schema import ColumnKind, ColumnSpec

    if not plans:
        return schema
    columns = []
    planned = {p["column"]: p for p in plans}
    for spec in schema.columns:
        if spec.name not in planned:
            columns.append(spec)
            continue
        base = schema[planned[spec.name]["base"]]
        values = frame.get_column(spec.name).drop_nulls()
        whole = all(s.kind in (ColumnKind.integer, ColumnKind.datetime) for s in (spec, base))
        decimals = None if whole else max((s.decimals for s in (spec, base) if s.decimals is not None), default=None)
        columns.append(ColumnSpec(
            name=spec.name, kind=ColumnKind.integer if whole else ColumnKind.continuous,
            dtype="Int64" if whole else "Float64", null_rate=spec.null_rate, n_unique=values.n_unique(),
            minimum=max(float(values.min() or 0.0), 0.0), maximum=float(values.max() or 0.0), decimals=decimals,
            note=f"learned as {spec.name} − {base.name} ≥ 0 ({planned[spec.name]['rule']})"))
    return schema.model_copy(update={"columns": columns})
