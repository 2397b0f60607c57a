"""Fresh values for identifier and free-text columns, guaranteed never to be real ones.

Real identifiers are never learned and never stored in a saved model. What is kept
is only their *shape* with every letter and digit masked (``"AB-1234"`` becomes
``"AA-9999"``), plus a prefix chosen so that no real value starts with it: every
regenerated value carries that prefix, so none can equal a real value, whatever
the identifier space. Integer identifiers continue above the largest real one.

A personal column (names, e-mails, phones, addresses, IBANs: ``ColumnSpec.personal``) keeps only its kind and
locale, and is written by Faker (:mod:`synthforge.data.fake`): one person and one address per row across the
table's personal columns. Where the real values are at hand (the run that fitted the model), a fake value equal
to a real one of its column is drawn again (:func:`real_values_to_avoid`); nothing of them is saved.
"""

from __future__ import annotations

import re
import string
from typing import Any

import numpy as np
import polars as pl

from synthforge.data.fake import COMPONENT_KINDS, DEFAULT_LOCALE, Draws, fake_columns
from synthforge.data.schema import ColumnKind, ColumnSpec, _polars_dtype

_MAX_SHAPES = 20
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
          "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua")


def plan_identifier(series: pl.Series, spec: ColumnSpec, table: pl.DataFrame | None = None,
                    learned: list[ColumnSpec] | None = None) -> dict[str, Any]:
    """What is kept about an identifier column to regenerate it: shapes and a safe prefix, no real value.

    With the training ``table`` and its ``learned`` columns, a column null in some rows also keeps
    the learned column that best tells when it is null (a case number null whenever a flag is 0),
    so regenerated values are null in the rows where real ones would be.
    """
    if spec.kind == ColumnKind.constant:
        return {"constant": spec.value, "dtype": spec.dtype}
    values = series.drop_nulls()
    plan: dict[str, Any] = {"null_rate": spec.null_rate}
    if 0 < spec.null_rate < 1 and table is not None and learned:
        plan["null_given"] = _null_pattern(series.is_null(), table, learned)
    if values.dtype.is_integer():
        plan["integer_above"] = int(values.max()) if values.len() else 0  # type: ignore[arg-type]
        return plan
    if spec.personal is not None and spec.kind == ColumnKind.identifier:
        return plan | {"personal": spec.personal, "locale": spec.locale or DEFAULT_LOCALE}
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
    shapes = masked_shapes(text.head(10_000)).alias("value").value_counts(sort=True, name="count").head(_MAX_SHAPES)
    plan["shapes"] = shapes.get_column("value").to_list()
    plan["weights"] = shapes.get_column("count").to_list()
    return plan


def masked_shapes(series: pl.Series) -> pl.Series:
    """An identifier's values with every letter and digit masked (``AB-1234`` → ``AA-9999``)."""
    return (series.cast(pl.String).str.replace_all(r"[A-Z]", "A").str.replace_all(r"[a-z]", "a")
            .str.replace_all(r"[0-9]", "9"))


def private_identifier_plan(spec: ColumnSpec, released: Any | None) -> dict[str, Any]:
    """The plan of :func:`plan_identifier` from what a privacy budget released (a
    :class:`synthforge.privacy.marginals.PrivateColumn`), never from the values: integers above the released
    upper bound, text in the released shapes (``99999`` when none was), null as often as released.

    The prefix is fixed (``syn_``): choosing one no real value starts with would read the values. A real value
    can then only reappear if it starts with ``syn_`` or lies above the released bound; ``identifier_leak``
    looks for it in every run."""
    if spec.kind == ColumnKind.constant:
        return {"constant": spec.value, "dtype": spec.dtype}
    null_rate = released.null_rate if released is not None else 0.0
    if spec.personal is not None and spec.kind == ColumnKind.identifier:
        return {"null_rate": null_rate, "personal": spec.personal, "locale": spec.locale or DEFAULT_LOCALE}
    if released is not None and released.edges is not None:
        return {"null_rate": null_rate, "integer_above": int(max(released.high, 0))}
    if spec.kind == ColumnKind.free_text:
        return {"null_rate": null_rate, "prefix": "syn_", "words": [1, 5]}
    shapes = [(shape, count) for shape, count in zip(released.categories, released.counts, strict=True)
              if shape is not None] if released is not None else []
    shapes = shapes[:_MAX_SHAPES] or [("9999999999", 1.0)]
    return {"null_rate": null_rate, "prefix": "syn_", "shapes": [shape for shape, _ in shapes],
            "weights": [max(count, 1.0) for _, count in shapes]}


# A value of the column telling when an identifier is null is used only if this many training rows hold it:
# a rarer value is a real value too rare to keep.
MIN_ROWS_PER_VALUE = 5
MAX_PATTERN_VALUES = 50


def _null_pattern(nulls: pl.Series, table: pl.DataFrame, learned: list[ColumnSpec]) -> dict[str, Any] | None:
    """The discrete learned column whose values best predict ``nulls``, and the null rate given each value.

    "Best" is the lowest expected binary entropy of the null flag given the column; only a column that
    lowers it by at least a tenth is kept. Values held by fewer than MIN_ROWS_PER_VALUE rows are left out
    (their rows get the overall rate).
    """
    def entropy(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))

    overall = float(nulls.mean() or 0.0)
    best: tuple[float, dict[str, Any]] | None = None
    flags = nulls.alias("__null__")
    for spec in learned:
        if spec.kind not in (ColumnKind.categorical, ColumnKind.boolean, ColumnKind.integer) or \
                spec.name not in table.columns or not 2 <= spec.n_unique <= MAX_PATTERN_VALUES:
            continue
        groups = pl.DataFrame([table.get_column(spec.name), flags]).group_by(spec.name).agg(
            pl.len().alias("rows"), pl.col("__null__").mean().alias("rate"))
        rows, rates = groups.get_column("rows").to_numpy(), groups.get_column("rate").to_numpy()
        expected = float((rows * entropy(rates)).sum() / rows.sum())
        if best is None or expected < best[0]:
            kept = groups.filter((pl.col("rows") >= MIN_ROWS_PER_VALUE) & pl.col(spec.name).is_not_null())
            best = (expected, {"column": spec.name, "values": kept.get_column(spec.name).to_list(),
                               "rates": kept.get_column("rate").to_list()})
    if best is None or best[0] > 0.9 * float(entropy(np.array([overall]))[0]):
        return None
    return best[1]


def regenerate_columns(plans: dict[str, dict[str, Any]], n: int, rng: np.random.Generator,
                       frame: pl.DataFrame | None = None, avoid: dict[str, pl.Series] | None = None) -> list[pl.Series]:
    """``n`` fresh values for each column of ``plans``: the personal ones together, one person and one address per
    row (per locale), none equal to a value of ``avoid`` (:func:`real_values_to_avoid`); the others one by one."""
    out = {name: regenerate(name, plan, n, rng, frame) for name, plan in plans.items() if "personal" not in plan}
    locales: dict[str, dict[str, str]] = {}
    for name, plan in plans.items():
        if "personal" in plan:
            locales.setdefault(plan["locale"], {})[name] = plan["personal"]
    for locale, kinds in locales.items():
        values = _fake(kinds, locale, n, rng, avoid or {})
        for name, array in values.items():
            series = pl.Series(name, array, dtype=pl.String)
            if plans[name].get("null_rate", 0) > 0 and n:
                series = series.set(pl.Series(rng.random(n) < _null_rates(plans[name], n, frame)), None)
            out[name] = series
    return [out[name] for name in plans]


# A row whose fake value equals a real one is drawn again at most this many times (each time far rarer).
MAX_REDRAWS = 20


def _fake(kinds: dict[str, str], locale: str, n: int, rng: np.random.Generator,
          avoid: dict[str, pl.Series]) -> dict[str, np.ndarray]:
    seed = int(rng.integers(2**62))
    values = fake_columns(kinds, locale, Draws(n, rng=rng), seed)
    for _ in range(MAX_REDRAWS):
        again = np.zeros(n, dtype=bool)
        for key, real in avoid.items():
            if all(part in values for part in key.split("+")):
                again |= _row_keys(values, key).is_in(real.implode()).to_numpy()
        if not again.any():
            break
        fresh = fake_columns(kinds, locale, Draws(int(again.sum()), rng=rng), seed)
        for name in values:
            values[name][again] = fresh[name]
    return values


def _row_keys(values: dict[str, Any], key: str) -> pl.Series:
    parts = [pl.Series(values[part], dtype=pl.String) for part in key.split("+")]
    if len(parts) == 1:
        return parts[0]
    return pl.select(pl.concat_str([pl.lit(part) for part in parts], separator="\x1f")).to_series()


def real_values_to_avoid(frame: pl.DataFrame, plans: dict[str, dict[str, Any]]) -> dict[str, pl.Series]:
    """The real values a personal column's fake ones must never equal, by key: a column that names someone alone (a
    full name, an e-mail, a phone), and a first name with a last name together (``"given+family"``). Kept in memory
    for the run's own sampling, never saved."""
    avoid: dict[str, pl.Series] = {}
    for name, plan in plans.items():
        if "personal" in plan and plan["personal"] not in COMPONENT_KINDS and name in frame.columns:
            avoid[name] = frame.get_column(name).cast(pl.String).drop_nulls().unique()
    firsts = [n for n, p in plans.items() if p.get("personal") == "first_name" and n in frame.columns]
    lasts = [n for n, p in plans.items() if p.get("personal") == "last_name" and n in frame.columns]
    if firsts and lasts:
        key = f"{firsts[0]}+{lasts[0]}"
        avoid[key] = _row_keys({firsts[0]: frame.get_column(firsts[0]).to_numpy(),
                                lasts[0]: frame.get_column(lasts[0]).to_numpy()}, key).drop_nulls().unique()
    return avoid


def regenerate(name: str, plan: dict[str, Any], n: int, rng: np.random.Generator,
               frame: pl.DataFrame | None = None) -> pl.Series:
    """``n`` fresh values for the column described by ``plan``, with its null rate (given ``frame``'s rows)."""
    if "personal" in plan:
        return regenerate_columns({name: plan}, n, rng, frame)[0]
    if "constant" in plan:
        return pl.repeat(plan["constant"], n, eager=True).cast(_polars_dtype(plan["dtype"])).alias(name)
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
        series = series.set(pl.Series(rng.random(n) < _null_rates(plan, n, frame)), None)
    return series


def _null_rates(plan: dict[str, Any], n: int, frame: pl.DataFrame | None) -> np.ndarray | float:
    pattern = plan.get("null_given")
    if not pattern or frame is None or pattern["column"] not in frame.columns:
        return plan["null_rate"]
    given = frame.get_column(pattern["column"])
    rates = given.replace_strict(pattern["values"], pattern["rates"], default=plan["null_rate"],
                                 return_dtype=pl.Float64)
    return rates.fill_null(plan["null_rate"]).to_numpy()


_CLASSES = {"A": string.ascii_uppercase, "a": string.ascii_lowercase, "9": string.digits}


def _fill_shape(shape: str, rng: np.random.Generator) -> str:
    return re.sub(r"[Aa9]", lambda match: _CLASSES[match.group()][rng.integers(len(_CLASSES[match.group()]))], shape)
