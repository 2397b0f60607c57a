"""The diffusion plugin: SynthForge's conformance suite plus schedulers, conditions and lazy diffusers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from synthforge_diffusion import TabularDiffusion
from synthforge_diffusion.model import DiffusionSampleParams

from synthforge.errors import ConditionError
from synthforge.testing import (
    check_conditionals_learned,
    check_recipe_mode,
    conformance_checks,
    conformance_table,
    fitted,
    recipe_modes,
)

FAST = {"epochs": 30, "batch_size": 128, "hidden_dim": 64, "blocks": 2, "validation_fraction": 0.1}


class FewSteps(DiffusionSampleParams):
    defaults: ClassVar[dict[str, Any]] = {"steps": 10}


class FastDiffusion(TabularDiffusion):
    """Ten denoising steps unless a call asks for others: a user's own sampling defaults, as a subclass."""

    SampleParams = FewSteps


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_conformance(check):
    check(FastDiffusion, params=FAST)


def test_training_reduces_the_loss():
    history = fitted(FastDiffusion, FAST).history_
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm_solver", "unipc", "euler"])
def test_every_scheduler_samples_from_the_same_weights(scheduler: str, tmp_path: Path):
    model = fitted(FastDiffusion, FAST)
    directory = model.save(tmp_path / "model")
    loaded = TabularDiffusion.load(directory)
    sample = loaded.sample(300, seed=2, scheduler=scheduler, steps=8)
    assert sample.height == 300 and sample["age"].null_count() == 0
    # A sane marginal from every scheduler: husbands are the largest relationship group in the data.
    assert 0.2 < (sample["relationship"] == "Husband").mean() < 0.65


@pytest.mark.slow
def test_conditions_come_from_the_learned_conditional_not_rejection():
    check_conditionals_learned(fitted(FastDiffusion, {**FAST, "epochs": 120, "hidden_dim": 128,
                                                         "batch_size": 64}))


def test_numeric_conditions_are_refused_with_a_pointer():
    with pytest.raises(ConditionError, match="categorical columns only.*'age'.*autoregressive"):
        fitted(FastDiffusion, FAST).sample(10, conditions={"age": 40}, seed=1)


def test_diffusers_is_not_imported_until_a_model_needs_it():
    code = ("import sys, synthforge_diffusion, synthforge; synthforge.get_plugin_manager().generators(); "
            "print('diffusers' in sys.modules, 'torch' in sys.modules)")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["False", "False"]


@pytest.mark.parametrize("output", recipe_modes(TabularDiffusion), ids=lambda output: output["mode"])
def test_every_recipe_mode_runs_by_name(tmp_path: Path, output):
    check_recipe_mode("diffusion", {**FAST, "epochs": 3}, {**output, "sampling": {"steps": 10}}, tmp_path)


def _category_shares(table, column: str) -> dict[str, float]:
    return dict(table.get_column(column).value_counts(normalize=True).iter_rows())


@pytest.mark.slow
def test_bfloat16_training_and_sampling_learn_what_float32_learns(tmp_path: Path):
    """Autocast bfloat16 (``auto`` picks it where the CPU multiplies it natively) trains the same denoiser
    to the same marginals as float32, and sampling in bfloat16 from float32 weights moves them by little."""
    exact = fitted(FastDiffusion, {**FAST, "train_precision": "float32"})
    half = fitted(FastDiffusion, {**FAST, "train_precision": "bfloat16"})
    assert half.history_.epochs[-1]["loss"] < 0.8 * half.history_.epochs[0]["loss"]
    final_half, final_exact = half.history_.epochs[-1]["loss"], exact.history_.epochs[-1]["loss"]
    assert abs(final_half - final_exact) < 0.1 * final_exact
    reference = _category_shares(exact.sample(2000, seed=3, precision="float32"), "relationship")
    exact_in_bfloat16 = TabularDiffusion.load(exact.save(tmp_path / "exact"))
    for model, precision in ((half, "bfloat16"), (exact_in_bfloat16, "bfloat16")):
        shares = _category_shares(model.sample(2000, seed=3, precision=precision), "relationship")
        assert max(abs(shares.get(k, 0.0) - v) for k, v in reference.items()) < 0.05, (shares, reference)


def test_discrete_integers_are_sampled_as_values_seen_in_training():
    model = fitted(FastDiffusion, {**FAST, "epochs": 10, "discrete_integer_max": 100})
    sample = model.sample(1000, seed=4)
    for column in ("education-num", "hours-per-week"):
        real = set(conformance_table().get_column(column).drop_nulls().to_list())
        assert set(sample.get_column(column).drop_nulls().to_list()) <= real, column
