"""Differential privacy: the accountant against Opacus's, the budget never exceeded, DP releases, recipes, runs."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import yaml
from scipy.special import ndtr

from synthforge.errors import RecipeError
from synthforge.privacy.accountant import (
    ORDERS,
    Accountant,
    BudgetExceeded,
    epsilon_from_rdp,
    gaussian_rdp,
    subsampled_gaussian_rdp,
)
from synthforge.privacy.marginals import release_marginals, selection_threshold

opacus = pytest.importorskip("opacus")


@pytest.mark.parametrize(("sample_rate", "noise", "steps"), [
    (0.01, 1.0, 1_000), (0.016, 0.7, 3_000), (0.001, 2.5, 50_000), (0.1, 5.0, 100), (0.02, 1.3, 1), (0.5, 10.0, 10),
    (1.0, 3.0, 20),
])
def test_the_accountant_agrees_with_opacus(sample_rate: float, noise: float, steps: int) -> None:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    theirs = RDPAccountant()
    theirs.history = [(noise, sample_rate, steps)]
    for delta in (1e-5, 1e-7):
        ours = epsilon_from_rdp(subsampled_gaussian_rdp(sample_rate, noise, steps), delta)[0]
        expected = theirs.get_epsilon(delta, alphas=list(ORDERS))
        assert ours == pytest.approx(expected, rel=1e-6)
    curve = subsampled_gaussian_rdp(sample_rate, noise, steps)
    reference = np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise, steps=steps, orders=list(ORDERS)))
    # A fractional order whose series falls only polynomially (q = 0.5 with much noise) is left out (inf: a sound
    # bound that the minimum over orders skips); Opacus sums it for millions of terms.
    finite = np.isfinite(reference) & np.isfinite(curve)
    assert np.allclose(curve[finite], reference[finite], rtol=1e-6)
    assert finite.sum() >= len(ORDERS) - (10 if sample_rate >= 0.5 else 0)


def test_a_gaussian_release_costs_what_the_closed_form_says() -> None:
    # one Gaussian mechanism with sensitivity 1 and σ: RDP α/2σ², the same as DP-SGD with q = 1 and 1 step
    assert np.allclose(gaussian_rdp(4.0), subsampled_gaussian_rdp(1.0, 4.0, 1))
    assert np.allclose(gaussian_rdp(4.0), np.asarray(ORDERS) / 32)


@pytest.mark.parametrize("seed", range(6))
def test_the_budget_is_never_exceeded(seed: int) -> None:
    """Whatever the budget and the training's shape: the planned epochs fit, one more is refused before it runs."""
    rng = np.random.default_rng(seed)
    epsilon = float(rng.choice([0.3, 1.0, 3.0, 10.0]))
    accountant = Accountant(epsilon, 1e-6, {"preprocessing": float(rng.uniform(0.05, 0.5)), "model": 0.0})
    accountant.shares["model"] = 1 - accountant.shares["preprocessing"]
    weight = float(rng.integers(1, 40))
    sigma = accountant.gaussian_noise_for(weight)
    accountant.spend("histograms", "preprocessing", weight * gaussian_rdp(sigma))
    assert accountant.stage_spent("preprocessing") <= epsilon * accountant.shares["preprocessing"] * (1 + 1e-6)
    sample_rate, epochs = float(rng.uniform(0.005, 0.2)), int(rng.integers(1, 30))
    per_epoch = max(1, round(1 / sample_rate))
    noise = accountant.noise_multiplier_for(sample_rate, epochs * per_epoch)
    for _ in range(epochs):
        accountant.spend("DP-SGD", "model", subsampled_gaussian_rdp(sample_rate, noise, per_epoch), steps=per_epoch)
        assert accountant.spent()[0] <= epsilon * (1 + 1e-9)
    assert accountant.ledger[-1].detail["steps"] == epochs * per_epoch  # one entry, its steps added up
    before = accountant.spent()
    with pytest.raises(BudgetExceeded):
        accountant.spend("DP-SGD", "model", subsampled_gaussian_rdp(sample_rate, noise, per_epoch), steps=per_epoch)
    assert accountant.spent() == before, "a refused mechanism charges nothing"
    # the noise found is the smallest that fits: 1% less would not
    assert epsilon_from_rdp(accountant.rdp_ - subsampled_gaussian_rdp(sample_rate, noise, epochs * per_epoch)
                            + subsampled_gaussian_rdp(sample_rate, noise * 0.99, epochs * per_epoch),
                            accountant.rdp_delta)[0] > epsilon


def test_a_value_in_one_row_passes_the_selection_threshold_with_probability_delta() -> None:
    for sigma, delta in ((10.0, 1e-6), (150.0, 3e-7), (2.0, 1e-3)):
        threshold = selection_threshold(sigma, delta)
        assert 1 - ndtr((threshold - 1) / sigma) == pytest.approx(delta, rel=1e-6)


def _frame(rows: int = 4_000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["Lyon", "Oslo", "Pune", "Lima"], size=rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    city[:3] = "Zanzibar"  # 3 rows: must never be released
    amount = np.where(rng.random(rows) < 0.3, 0.0, rng.lognormal(6, 1, rows)).round(2)
    amount[7] = 9_876_543.21  # one row far out: must not set the bound
    age = rng.integers(18, 80, rows)
    return pl.DataFrame({"city": city.tolist(), "amount": amount, "age": age, "flag": rng.random(rows) < 0.3,
                         "score": (rng.normal(50, 10, rows) + age / 4).round(3)}).with_columns(
        pl.when(pl.int_range(rows) % 10 == 0).then(None).otherwise(pl.col("age")).alias("age"))


def test_released_marginals_hold_no_rare_value_and_keep_the_shapes() -> None:
    from synthforge.data.schema import infer_schema

    frame = _frame()
    accountant = Accountant(4.0, 1e-6)
    released = release_marginals(frame, infer_schema(frame), accountant, np.random.default_rng(0),
                                 discrete_integer_max=128)
    share = accountant.shares["preprocessing"]
    assert accountant.spent()[0] <= 4.0 * share * (1 + 1e-6)
    assert accountant.stage_spent("preprocessing") <= 4.0 * share * (1 + 1e-6)
    assert set(released["city"].categories) == {"Lyon", "Oslo", "Pune", "Lima"}
    amount = released["amount"]
    assert amount.high < 1_000_000 and amount.low <= 0.0
    assert any(value == 0.0 for value, _ in amount.points), "the zero most rows hold is a point mass"
    assert 0.05 < released["age"].null_rate < 0.15
    # the noisy counts below the median add up to about σ√31 ≈ 200 of 3,600 rows: ±3.5 years of a uniform age
    assert abs(released["age"].median() - frame.get_column("age").median()) < 7
    assert set(released["flag"].categories) == {True, False}


def _recipe(tmp_path, generator: dict, privacy: dict | None, **more) -> object:
    _frame(3_000).write_csv(tmp_path / "data.csv")
    recipe = {"seed": 3, "source": {"path": "data.csv"}, "generator": generator,
              "output": {"mode": "synthesize", "path": "out", "rows": 1_000}, **more}
    if privacy is not None:
        recipe["privacy"] = privacy
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_generator_without_privacy_fails_validation_naming_those_with_it(tmp_path) -> None:
    from synthforge import get_plugin_manager
    from synthforge.recipe import load_recipe

    pm = get_plugin_manager()
    if "gan" not in pm.generators():
        pytest.skip("the gan plugin is not installed")
    with pytest.raises(RecipeError, match=r"'gan' cannot train with differential privacy.*copula"):
        load_recipe(_recipe(tmp_path, {"name": "gan"}, {"epsilon": 1}), pm=pm)


@pytest.mark.parametrize(("privacy", "more", "message"), [
    ({"epsilon": 1, "shares": {"preprocessing": 0.5, "model": 0.6}}, {}, "add up to 1"),
    ({"epsilon": 0}, {}, "greater than 0"),
    ({"epsilon": 1}, {"output": {"mode": "augment", "path": "out", "rows": 10}}, "no budget covers"),
    ({"epsilon": 1}, {"constraints": [{"fixed": ["city", "flag"]}]}, "keeps the combinations"),
])
def test_bad_privacy_recipes_are_refused(tmp_path, privacy, more, message) -> None:
    from synthforge.recipe import load_recipe

    path = _recipe(tmp_path, {"name": "copula"}, privacy, **more)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_a_private_run_writes_its_budget_everywhere_a_user_looks(tmp_path) -> None:
    from typer.testing import CliRunner

    from synthforge.cli import app

    path = _recipe(tmp_path, {"name": "copula"}, {"epsilon": 4, "seeded_noise": True},
                   checks=[{"name": "detection", "on_fail": "warn"}])
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "differential privacy: spent ε =" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    budget = manifest["differential_privacy"]
    assert budget["requested"] == {"epsilon": 4, "delta": pytest.approx(min(1e-5, 0.1 / 2_400))}
    assert 3.9 < budget["spent"]["epsilon"] <= 4 and budget["spent"]["delta"] <= budget["requested"]["delta"]
    assert {"preprocessing", "model"} <= set(budget["stages"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Differential privacy" in html and "Empirical, not covered" in html
    data = pl.read_csv(tmp_path / "out" / "data.csv")
    assert "Zanzibar" not in data.get_column("city").to_list()
    model = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert model["privacy"]["spent"]["epsilon"] == budget["spent"]["epsilon"]
    assert model["schema"]["columns"][1]["maximum"] < 1_000_000  # no real maximum in the saved model


def test_seeded_noise_reproduces_and_secret_noise_does_not(tmp_path) -> None:
    from synthforge.generator import FitContext
    from synthforge.plugins import get_plugin_manager

    copula = get_plugin_manager().get_generator("copula")
    frame = _frame(2_000)

    def fit(seeded: bool) -> pl.DataFrame:
        context = FitContext(seed=1, privacy=Accountant(4.0, 1e-6), seeded_noise=seeded)
        return copula().fit(frame, context=context).sample(500, seed=4)

    assert fit(True).equals(fit(True))
    assert not fit(False).equals(fit(False))


def test_the_autoregressive_model_trains_with_dp_sgd_within_budget() -> None:
    from synthforge.generator import FitContext
    from synthforge.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if "autoregressive" not in pm.generators():
        pytest.skip("the autoregressive plugin is not installed")
    frame = _frame(3_000)
    accountant = Accountant(3.0, 1e-6)
    context = FitContext(seed=0, privacy=accountant, seeded_noise=True)
    generator = pm.get_generator("autoregressive")(epochs=3, batch_size=256).fit(frame, context=context)
    training = context.private_training
    assert training.epochs_charged == 3 and training.noise_multiplier > 0.3
    dp_sgd = next(m for m in accountant.ledger if m.name == "DP-SGD")
    assert dp_sgd.detail["steps"] == 3 * training.steps_per_epoch
    assert accountant.spent()[0] <= 3.0 * (1 + 1e-9)
    drawn = generator.sample(1_000, seed=0)
    # the pool of rare values is never written: drawn again, or null where the budget released too few values
    assert set(drawn.get_column("city").drop_nulls()) <= {"Lyon", "Oslo", "Pune", "Lima"}
    assert drawn.get_column("amount").max() < 1_000_000
    assert math.isfinite(generator.history_.epochs[-1]["loss"])


def test_training_stops_before_an_epoch_the_budget_cannot_pay_for() -> None:
    from synthforge.generator import FitContext
    from synthforge.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if "autoregressive" not in pm.generators():
        pytest.skip("the autoregressive plugin is not installed")
    accountant = Accountant(2.0, 1e-6)

    def spend_the_rest(epoch: int, metrics: dict) -> None:
        if epoch == 1:  # something else takes what the next epochs were planned to spend
            noise = accountant.noise_for(gaussian_rdp) * 1.001
            accountant.spend("elsewhere", "model", gaussian_rdp(noise))

    context = FitContext(seed=0, privacy=accountant, seeded_noise=True, on_epoch_end=spend_the_rest)
    generator = pm.get_generator("autoregressive")(epochs=4, batch_size=256).fit(_frame(1_500), context=context)
    assert len(generator.history_.epochs) == 1 and generator.history_.out_of_budget
    assert context.private_training.epochs_charged == 1
    assert accountant.spent()[0] <= 2.0 * (1 + 1e-9)
    with pytest.raises(BudgetExceeded):  # and nothing more can be charged
        accountant.spend("more", "model", gaussian_rdp(50.0))
