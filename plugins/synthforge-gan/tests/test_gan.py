"""The gan plugin: SynthForge's conformance suite plus what a conditional GAN must do."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthforge_gan import ConditionalGAN

from synthforge.errors import ConditionError, DataError
from synthforge.generator import FitContext, ParamsError
from synthforge.testing import (
    check_conditionals_learned,
    check_recipe_mode,
    conformance_checks,
    conformance_schema,
    conformance_table,
    fitted,
    recipe_modes,
)

FAST = {"epochs": 20, "batch_size": 100, "generator_dim": 64, "critic_dim": 64, "noise_dim": 32}


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_conformance(check):
    check(ConditionalGAN, params=FAST)


def test_critic_learns_to_tell_real_from_fake_and_the_generator_meets_its_conditions():
    model = fitted(ConditionalGAN, FAST)
    first, last = model.history_.epochs[0], model.history_.epochs[-1]
    assert last["condition"] < 0.7 * first["condition"], (first, last)
    assert all(abs(epoch["wasserstein"]) < 100 for epoch in model.history_.epochs), "the critic diverged"


def test_training_by_sampling_asks_for_rare_categories_by_log_frequency():
    import torch

    from synthforge.nn import torch_generator

    model = ConditionalGAN({**FAST, "unconditional_rate": 0.0, "condition_keep_rate": 0.0})
    table = conformance_table()
    model.fit(table, conformance_schema(), FitContext(seed=0))
    # The sampler's tables are dropped after fit; rebuild them over the training rows and draw from them.
    data = torch.as_tensor(model.encoder_.encode(table), dtype=torch.float32)
    model.data_ = data
    model._category_sampler(data)
    batch = data.repeat(20_000 // len(data) + 1, 1)[:20_000]
    real, condition, given = model._training_rows(batch, torch_generator(3))
    spans = model.conditions_.spans
    index = [span.column for span in spans].index("relationship")
    wife = spans[index].start + model.encoder_.transformer("relationship").categories_.index("Wife")
    wives_asked = float(real[given[:, index] == 1, wife].mean())
    wives_in_table = float((table.get_column("relationship") == "Wife").mean())
    assert wives_asked > 2 * wives_in_table, (wives_asked, wives_in_table)
    # Where a column is given, the condition holds the real row's category; elsewhere it holds nothing.
    position = sum(span.width + 1 for span in spans[:index])
    shown = condition[:, position : position + spans[index].width]
    expected = real[:, spans[index].start : spans[index].stop] * given[:, index : index + 1]
    assert torch.equal(shown, expected)
    assert torch.equal(condition[:, position + spans[index].width], given[:, index])


@pytest.mark.slow
def test_conditions_come_from_the_learned_conditional_not_rejection():
    check_conditionals_learned(fitted(ConditionalGAN, {**FAST, "epochs": 60, "generator_dim": 128,
                                                       "critic_dim": 128}))


def test_numeric_conditions_are_refused_with_a_pointer_to_the_copula():
    with pytest.raises(ConditionError, match="categorical columns only.*'age'.*copula"):
        fitted(ConditionalGAN, FAST).sample(10, conditions={"age": 40}, seed=1)


def test_batch_must_hold_whole_packs():
    with pytest.raises(ParamsError, match="multiple of pac"):
        ConditionalGAN(batch_size=105, pac=10)


def test_a_table_smaller_than_a_pack_is_refused():
    with pytest.raises(DataError, match="pac=10"):
        ConditionalGAN(FAST).fit(conformance_table().head(7), conformance_schema(), FitContext(seed=0))


@pytest.mark.slow
def test_float32_training_meets_its_conditions_as_bfloat16_does():
    """``train_precision: auto`` trains in bfloat16 on a CPU that has it natively; float32 stays available and
    both learn: the generator's miss rate on given categories falls, the critic stays bounded."""
    for precision in ("float32", "bfloat16"):
        model = fitted(ConditionalGAN, {**FAST, "train_precision": precision})
        first, last = model.history_.epochs[0], model.history_.epochs[-1]
        assert last["condition"] < 0.7 * first["condition"], (precision, first, last)
        assert all(abs(epoch["wasserstein"]) < 100 for epoch in model.history_.epochs), precision


def test_quantile_encoding_and_several_critic_steps_fit_and_sample():
    model = ConditionalGAN({**FAST, "epochs": 2, "numeric_encoding": "quantile", "critic_steps": 2})
    model.fit(conformance_table().head(500), conformance_schema(), FitContext(seed=0))
    assert model.encoder_.transformer("age").method == "quantile" and len(model.encoder_.spans_of("age")) == 1
    assert len(model.history_.epochs) == 2
    assert model.sample(50, seed=0).height == 50


@pytest.mark.parametrize("output", recipe_modes(ConditionalGAN), ids=lambda output: output["mode"])
def test_every_recipe_mode_runs_by_name(tmp_path: Path, output):
    check_recipe_mode("gan", {**FAST, "epochs": 3}, output, tmp_path)


@pytest.mark.slow
def test_calibration_brings_the_marginals_to_the_training_ones():
    table = conformance_table()

    def distance(model, column):
        sample = model.sample(20_000, seed=2).get_column(column).fill_null("null").value_counts(normalize=True)
        real = table.get_column(column).fill_null("null").value_counts(normalize=True)
        joined = real.join(sample, on=column, how="full", coalesce=True).fill_null(0)
        return 0.5 * float((joined.get_column("proportion") - joined.get_column("proportion_right")).abs().sum())

    calibrated, raw = fitted(ConditionalGAN, FAST), fitted(ConditionalGAN, {**FAST, "calibrate": False})
    for column in ("education", "occupation", "marital-status"):
        # (what is left is the rare values, pooled as _RARE_ to protect them, and sampling noise)
        assert distance(calibrated, column) < min(0.03, 0.5 * distance(raw, column)), column
    ages = calibrated.sample(4_000, seed=2).get_column("age")
    assert abs(ages.median() - table.get_column("age").median()) <= 2
