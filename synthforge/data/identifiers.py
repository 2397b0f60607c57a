"""Fresh values for identifier and free-text columns, guaranteed never to be real ones.

Real identifiers are never learned and never stored in a saved model. What is kept
is only their *shape* with every letter and digit masked (``"AB-1234"`` becomes
``"AA-9999"``), plus a prefix chosen so that no real value starts with it: every
regenerated value carries that prefix, so none can equal a real value, whatever
the identifier space. Integer identifiers continue above the largest real one.
"""

from __future__ import annotations

import re
import string
from typing import Any

import numpy as np
import polars as pl

from synthforge.data.schema import ColumnKind, ColumnSpec

_MAX_SHAPES = 20
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
          "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua")


def plan_identifier(series: pl.Series, spec: ColumnSpec) -> dict[str, Any]:
    """What is kept about an identifier column to regenerate it: shapes and a safe prefix, no real value."""
    values = series.drop_nulls()
    plan: dict[str, Any] = {"null_rate": spec.null_rate}
    if values.dtype.is_integer():
        plan["integer_above"] = int(values.max()) if values.len() else 0  # type: ignore[arg-type]
        return plan
    text = values.cast(pl.String)
    prefix = "syn_"
    counter = 0
    while text.str.starts_with(prefix).any():
        counter += 1
        prefix = f"syn{counter}_"
    plan["prefix"] = prefix
    if spec.kind == ColumnKind.free_text:
        lengths = text.str.count_matches(r"\S+")
        plan["words"] = [int(lengths.quantile(0.1) or 1), int(lengths.quantile(0.9) or 5)]
        return plan
    shapes = (
        text.head(10_000)
        .str.replace_all(r"[A-Z]", "A")
        .str.replace_all(r"[a-z]", "a")
        .str.replace_all(r"[0-9]", "9")
        .value_counts(sort=True, name="count")
        .head(_MAX_SHAPES)
    )
    plan["shapes"] = shapes.get_column(series.name).to_list()
    plan["weights"] = shapes.get_column("count").to_list()
    return plan


def regenerate(name: str, plan: dict[str, Any], n: int, rng: np.random.Generator) -> pl.Series:
    """``n`` fresh values for the column described by ``plan``, with its null rate."""
    if "integer_above" in plan:
        # A wide range keeps values unique across batches in practice; Int64 holds it whatever the source type.
        start = plan["integer_above"] + 1
        series = pl.Series(name, rng.integers(start, start + 2**52, size=n, dtype=np.int64), dtype=pl.Int64)
    elif "words" in plan:
        low, high = plan["words"]
        counts = rng.integers(max(low, 1), max(high, low, 1) + 1, size=n)
        values = [plan["prefix"] + " ".join(rng.choice(_WORDS, size=count)) for count in counts]
        series = pl.Series(name, values, dtype=pl.String)
    else:
        weights = np.asarray(plan["weights"], dtype=np.float64)
        chosen = rng.choice(len(plan["shapes"]), size=n, p=weights / weights.sum())
        values = [plan["prefix"] + _fill_shape(plan["shapes"][index], rng) for index in chosen]
        series = pl.Series(name, values, dtype=pl.String)
    if plan.get("null_rate", 0) > 0 and n:
        series = series.set(pl.Series(rng.random(n) < plan["null_rate"]), None)
    return series


_CLASSES = {"A": string.ascii_uppercase, "a": string.ascii_lowercase, "9": string.digits}


def _fill_shape(shape: str, rng: np.random.Generator) -> str:
    return re.sub(r"[Aa9]", lambda match: _CLASSES[match.group()][rng.integers(len(_CLASSES[match.group()]))], shape)
