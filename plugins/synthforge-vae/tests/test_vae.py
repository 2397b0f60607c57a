"""The vae plugin: SynthForge's conformance suite plus what a CVAE must do."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from synthforge_vae import ConditionalVAE

from synthforge.engine import run
from synthforge.errors import ConditionError
from synthforge.generator import FitContext
from synthforge.plugins import get_plugin_manager
from synthforge.testing import conformance_checks, conformance_schema, conformance_table, fitted

FAST = {"epochs": 25, "batch_size": 100, "hidden_dim": 64, "latent_dim": 16}


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_conformance(check):
    check(ConditionalVAE, params=FAST)


def test_training_reduces_the_loss():
    model = fitted(ConditionalVAE, FAST)
    losses = [epoch["loss"] for epoch in model.history_.epochs]
    assert losses[-1] < losses[0]


def test_conditions_come_from_the_learned_conditional_not_rejection():
    model = fitted(ConditionalVAE, {**FAST, "epochs": 60, "hidden_dim": 128, "patience": 0})
    husbands = model.sample(1000, conditions={"relationship": "Husband"}, seed=1)
    wives = model.sample(1000, conditions={"relationship": "Wife"}, seed=1)
    everyone = model.sample(1000, seed=1)
    assert (husbands["relationship"] == "Husband").all() and (wives["relationship"] == "Wife").all()
    # 5% of the 2,000 training rows are wives, all of them women; 33% of all rows are women.
    assert (husbands["sex"] == "Male").mean() > 0.85
    assert (wives["sex"] == "Female").mean() > 0.5 > (everyone["sex"] == "Female").mean()


def test_numeric_conditions_are_refused_with_a_pointer_to_the_copula():
    with pytest.raises(ConditionError, match="categorical columns only.*'age'.*copula"):
        fitted(ConditionalVAE, FAST).sample(10, conditions={"age": 40}, seed=1)


def test_quantile_encoding_also_trains():
    model = ConditionalVAE({**FAST, "epochs": 3, "numeric_encoding": "quantile"})
    model.fit(conformance_table().head(500), conformance_schema(), FitContext(seed=0))
    assert model.sample(50, seed=0).height == 50


@pytest.mark.parametrize("output", [
    {"mode": "synthesize", "rows": 300},
    {"mode": "augment", "rows": 200, "label_column": "is_synthetic"},
    {"mode": "rebalance", "column": "income", "shares": {"<=50K": 0.5, ">50K": 0.5}},
    {"mode": "conditions", "conditions": {"sex": "Female"}, "rows": 200},
])
def test_every_recipe_mode_runs_by_name(tmp_path: Path, output):
    conformance_table().drop("person_id", "interview_date").write_csv(tmp_path / "adult.csv")
    recipe = {"seed": 0, "source": {"path": "adult.csv"}, "holdout": 0.2,
              "generator": {"name": "vae", "params": {**FAST, "epochs": 3}},
              "output": {**output, "path": "out"}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run(tmp_path / "recipe.yaml", pm=get_plugin_manager())
    data = pl.read_csv(result.dataset_path)
    if output["mode"] == "rebalance":
        assert abs((data["income"] == ">50K").mean() - 0.5) < 0.02
    if output["mode"] == "conditions":
        assert (data["sex"] == "Female").all()
