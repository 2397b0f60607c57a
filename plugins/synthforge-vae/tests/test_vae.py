"""The vae plugin: SynthForge's conformance suite plus what a CVAE must do."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthforge_vae import ConditionalVAE

from synthforge.errors import ConditionError
from synthforge.generator import FitContext
from synthforge.testing import (
    check_conditionals_learned,
    check_recipe_mode,
    conformance_checks,
    conformance_schema,
    conformance_table,
    fitted,
    recipe_modes,
)

FAST = {"epochs": 25, "batch_size": 100, "hidden_dim": 64, "latent_dim": 16}


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_conformance(check):
    check(ConditionalVAE, params=FAST)


def test_training_reduces_the_loss():
    model = fitted(ConditionalVAE, FAST)
    losses = [epoch["loss"] for epoch in model.history_.epochs]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_conditions_come_from_the_learned_conditional_not_rejection():
    check_conditionals_learned(fitted(ConditionalVAE, {**FAST, "epochs": 60, "hidden_dim": 128, "patience": 0}))


def test_numeric_conditions_are_refused_with_a_pointer_to_the_copula():
    with pytest.raises(ConditionError, match="categorical columns only.*'age'.*copula"):
        fitted(ConditionalVAE, FAST).sample(10, conditions={"age": 40}, seed=1)


def test_quantile_encoding_also_trains():
    model = ConditionalVAE({**FAST, "epochs": 3, "numeric_encoding": "quantile"})
    model.fit(conformance_table().head(500), conformance_schema(), FitContext(seed=0))
    assert model.sample(50, seed=0).height == 50


@pytest.mark.parametrize("output", recipe_modes(ConditionalVAE), ids=lambda output: output["mode"])
def test_every_recipe_mode_runs_by_name(tmp_path: Path, output):
    check_recipe_mode("vae", {**FAST, "epochs": 3}, output, tmp_path)
