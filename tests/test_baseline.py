from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from synthforge.baseline import GaussianCopula
from synthforge.generator import FitContext
from synthforge.testing import conformance_checks


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_copula_conformance(check):
    check(GaussianCopula)


@pytest.fixture(scope="module")
def copula(adult):
    return GaussianCopula().fit(adult, context=FitContext(seed=0))


def test_correlations_are_learned(copula, adult):
    sample = copula.sample(20_000, seed=1)
    real = adult.select(pl.corr("age", "education-num", method="spearman")).item()
    synthetic = sample.select(pl.corr("age", "education-num", method="spearman")).item()
    married = adult.select(pl.corr(pl.col("relationship") == "Husband", pl.col("sex") == "Male")).item()
    assert abs(synthetic - real) < 0.05
    assert married > 0.3 and sample.select(pl.corr(pl.col("relationship") == "Husband",
                                                   pl.col("sex") == "Male")).item() > 0.2


def test_category_conditions_shift_the_rest_like_the_real_conditional(copula, adult):
    rich = copula.sample(5000, conditions={"income": ">50K"}, seed=2)
    everyone = copula.sample(5000, seed=2)
    real_rich = adult.filter(pl.col("income") == ">50K")["education-num"].mean()
    assert rich["education-num"].mean() > everyone["education-num"].mean() + 1.0
    assert abs(rich["education-num"].mean() - real_rich) < 1.0


def test_numeric_conditions_are_exact_and_move_correlated_columns(copula):
    old = copula.sample(3000, conditions={"age": 70}, seed=3)
    young = copula.sample(3000, conditions={"age": 18}, seed=3)
    assert (old["age"] == 70).all() and (young["age"] == 18).all()
    assert (old["relationship"] == "Own-child").mean() < (young["relationship"] == "Own-child").mean()


def test_two_category_conditions_at_once(copula):
    sample = copula.sample(2000, conditions={"sex": "Female", "race": "Black", "workclass": None}, seed=4)
    assert (sample["sex"] == "Female").all() and (sample["race"] == "Black").all()
    assert sample["workclass"].null_count() == 2000


def test_rare_combinations_are_conditioned_natively_without_rejection(copula, monkeypatch):
    def rejected(*args, **kwargs):
        raise AssertionError("the copula fell back to rejection sampling")

    monkeypatch.setattr(copula, "_sample_by_rejection", rejected)
    sample = copula.sample(500, conditions={"native-country": "Mexico", "education": "Doctorate"}, seed=5)
    assert sample.height == 500
    assert (sample["native-country"] == "Mexico").all() and (sample["education"] == "Doctorate").all()


def test_fits_and_samples_a_200k_row_table():
    rows = 200_000
    rng = np.random.default_rng(0)
    table = pl.DataFrame({"a": rng.normal(size=rows), "b": rng.integers(0, 5, rows).astype(str),
                          "c": rng.exponential(size=rows)})
    model = GaussianCopula().fit(table, context=FitContext(seed=0))
    assert model.sample(100_000, seed=0).height == 100_000
