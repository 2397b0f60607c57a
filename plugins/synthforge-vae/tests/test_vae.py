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
    model = ConditionalVAE({**FAST, "epochs": 5, "numeric_encoding": "quantile"})
    model.fit(conformance_table().head(500), conformance_schema(), FitContext(seed=0))
    assert model.encoder_.transformer("age").method == "quantile" and len(model.encoder_.spans_of("age")) == 1
    # 5 epochs take 8-9% off both losses (seeds 0, 1); a model that does not learn (learning rate 1e-12) keeps them
    # within 1.5%, its KL term and dropout alone moving them
    first, last = model.history_.epochs[0], model.history_.epochs[-1]
    assert last["loss"] < 0.96 * first["loss"] and last["val_loss"] < 0.96 * first["val_loss"], model.history_.epochs
    assert model.sample(50, seed=0).height == 50


@pytest.mark.parametrize("output", recipe_modes(ConditionalVAE), ids=lambda output: output["mode"])
def test_every_recipe_mode_runs_by_name(tmp_path: Path, output):
    check_recipe_mode("vae", {**FAST, "epochs": 3}, output, tmp_path)


def test_the_calibration_is_raked_on_rows_as_a_run_emits_them(monkeypatch):
    """Six categorical Adult columns, where most combinations are rare: copy protection draws a fifth of the
    rows again, from the common part of the table, and the offsets fitted on raw draws no longer hold."""
    import numpy as np
    import polars as pl

    import synthforge.nn.generator
    from synthforge.data.encoder import RARE

    table = pl.read_csv(Path(__file__).parents[3] / "tests" / "data" / "adult_4k.csv").select(
        ["workclass", "education", "marital-status", "race", "sex", "income"])

    def mean_distance(model) -> float:
        synthetic = model.sample(4000, seed=1)
        distances = []
        for column in table.columns:
            shares = table.get_column(column).value_counts(normalize=True).join(
                synthetic.get_column(column).value_counts(normalize=True), on=column, how="full", coalesce=True,
                nulls_equal=True).fill_null(0)
            distances.append(float((shares["proportion"] - shares["proportion_right"]).abs().sum() / 2))
        return float(np.mean(distances))

    raked = ConditionalVAE(FAST).fit(table, context=FitContext(seed=0))
    monkeypatch.setattr(synthforge.nn.generator, "EMITTED_ROUNDS", 0)
    raw = ConditionalVAE(FAST).fit(table, context=FitContext(seed=0))
    assert raw.sample(4000, seed=1).height == 4000 and raw.copies_redrawn_ > 400
    assert mean_distance(raked) < 0.6 * mean_distance(raw)  # measured: 0.026 raw, 0.010 raked
    assert raked.calibration_.emitted_targets is None, "the training shares are for the fit only, never saved"
    pooled = [span.start + categories.index(RARE) for span in raked.encoder_.spans_
              if span.kind == "onehot" and span.role == "value"
              and RARE in (categories := getattr(raked.encoder_.transformer(span.column), "categories_", []))]
    assert len(pooled) == 2  # workclass and marital-status pool values held by fewer than 5 rows
    # the pool of rare values is never emitted: its offset stays where the fit on raw draws put it
    assert (raked.calibration_.logit_offset_[pooled] == raw.calibration_.logit_offset_[pooled]).all()
