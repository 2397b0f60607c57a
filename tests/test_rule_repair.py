"""Issue 40, item 1: rules between flags and chains of dates hold by construction, for every generator.

The table is shaped like a criminal-justice record (ProPublica's COMPAS table, where the issue met
``two_year_recid <= is_recid`` failing a run): three 0/1 flags ordered by meaning, a count, and a chain
of dates each strictly after the one before.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

import synthforge
from synthforge.baseline import GaussianCopula
from synthforge.constraints import Constraint
from synthforge.data.schema import infer_schema, to_internal
from synthforge.engine import run
from synthforge.rule_repair import plan_repairs

RULES = ["two_year_recid <= is_recid", "is_violent_recid <= is_recid", "arrested < booked < released",
         "booked <= screened", "released <= '2016-12-31'", "0 <= priors_count <= 30"]


def records(n: int = 800, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    is_recid = (rng.random(n) < 0.45).astype(np.int64)
    arrested = [dt.date(2013, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 700, n)]
    booked = [a + dt.timedelta(days=int(d)) for a, d in zip(arrested, rng.geometric(0.5, n), strict=True)]
    released = [b + dt.timedelta(days=int(d)) for b, d in zip(booked, rng.geometric(0.04, n), strict=True)]
    screened = [b + dt.timedelta(days=int(d)) for b, d in zip(booked, rng.integers(0, 3, n), strict=True)]
    return pl.DataFrame({
        "age": rng.integers(18, 70, n), "priors_count": np.minimum(rng.poisson(1 + 3 * is_recid), 30),
        "is_recid": is_recid, "two_year_recid": is_recid * (rng.random(n) < 0.7).astype(np.int64),
        "is_violent_recid": is_recid * (rng.random(n) < 0.25).astype(np.int64),
        "sex": rng.choice(["Male", "Female"], n, p=[0.8, 0.2]),
        "arrested": arrested, "booked": booked, "released": released, "screened": screened})


def _schema(table: pl.DataFrame):
    rules = [Constraint.model_validate(r) for r in RULES]
    assert all(rule.holds(table).all() for rule in rules)  # the real table keeps every rule
    return infer_schema(table).model_copy(update={"constraints": rules})


def _share(table: pl.DataFrame, column: str, value: int) -> float:
    return float((table[column] == value).mean())


@pytest.mark.parametrize("generator", ["copula", "autoregressive"])
def test_flags_and_a_chain_of_dates_hold_in_every_row_without_redraws(generator):
    table = records()
    schema = _schema(table)
    assert sorted(plan_repairs(schema).kept) == sorted(RULES)  # each of them mended, none left to redraws
    cls = synthforge.get_plugin_manager().get_generator(generator)
    params = {"epochs": 1} if generator != "copula" else {}
    free = to_internal(cls(params).fit(table, infer_schema(table)).sample(1500, seed=1), schema)
    assert min(Constraint.model_validate(r).holds(free).mean() for r in RULES) < 0.99  # not for free
    model = cls(params).fit(table, schema)
    synthetic = to_internal(model.sample(1500, seed=1), schema)
    for rule in schema.constraints:
        assert rule.holds(synthetic).all(), rule.describe()
    assert model.constraint_redrawn_ == 0
    # mending moves a column only where a row broke a rule: the flags keep their real shares
    for flag in ("is_recid", "two_year_recid", "is_violent_recid"):
        assert abs(_share(synthetic, flag, 1) - _share(table, flag, 1)) < 0.08, flag
    gap = (synthetic["released"] - synthetic["booked"]).dt.total_days()
    assert gap.min() >= 1 and (gap == 1).mean() < 0.15  # a stay's length (4% of real ones are 1 day), no spike


def test_a_held_column_moves_the_other_side_of_the_rule():
    table = records()
    model = GaussianCopula().fit(table, _schema(table))
    synthetic = to_internal(model.sample(400, conditions={"is_recid": 0}, seed=2), model.schema_)
    assert (synthetic["is_recid"] == 0).all()
    assert (synthetic["two_year_recid"] == 0).all() and (synthetic["is_violent_recid"] == 0).all()
    assert model.constraint_redrawn_ == 0


def test_rules_that_cannot_be_mended_by_moving_one_column_are_left_to_redraws():
    table = records()
    rules = [Constraint.model_validate(r) for r in
             ("is_recid <= two_year_recid + 1", "age != 17", "age <= priors_count", "priors_count <= age")]
    plan = plan_repairs(infer_schema(table).model_copy(update={"constraints": rules}))
    assert plan.kept == []  # arithmetic, !=, and a cycle (age == priors_count)


def test_a_profiled_recipe_runs_and_every_written_row_keeps_every_rule(tmp_path):
    table = records()
    table.write_csv(tmp_path / "records.csv")
    result = run({"name": "records", "seed": 0, "source": {"path": str(tmp_path / "records.csv")},
                  "generator": {"name": "copula"}, "constraints": RULES,
                  "output": {"path": str(tmp_path / "out"), "format": "csv"}})
    written = to_internal(pl.read_csv(result.dataset_path, try_parse_dates=True), result.generator.schema_)
    assert all(Constraint.model_validate(r).holds(written).all() for r in RULES)
    checks = {c.name: c for c in result.checks}
    assert checks["constraints"].passed
