"""The shipped Adult recipes, end to end on the full 32,561-row table (seconds each with the baseline)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from synthforge.engine import run
from synthforge.recipe import load_recipe

RECIPES = Path(__file__).parent.parent / "recipes"


def run_shipped(name: str, tmp_path: Path, pm):
    recipe = load_recipe(RECIPES / name, pm=pm)
    recipe.output.path = tmp_path / "out"
    return run(recipe, pm=pm)


@pytest.mark.slow
def test_adult_synthesize_meets_the_quality_and_privacy_bar(tmp_path, pm):
    result = run_shipped("adult-synthesize.yaml", tmp_path, pm)
    scores = {c.name: c for c in result.checks}
    assert scores["column_shapes"].score >= 0.97
    assert scores["exact_copies"].details["copies"] == 0
    data = pl.read_csv(result.dataset_path)
    assert data.height == 32_561


@pytest.mark.slow
def test_adult_rebalance_reaches_fifty_fifty(tmp_path, pm):
    result = run_shipped("adult-rebalance.yaml", tmp_path, pm)
    data = pl.read_csv(result.dataset_path)
    assert abs((data["income"] == ">50K").mean() - 0.5) <= 0.02
    assert data.filter(~pl.col("is_synthetic")).height == 32_561


@pytest.mark.slow
def test_adult_augment_adds_labelled_rows(tmp_path, pm):
    result = run_shipped("adult-augment.yaml", tmp_path, pm)
    data = pl.read_parquet(result.dataset_path)
    assert data.height == 32_561 + 16_000 and data["is_synthetic"].sum() == 16_000


def test_the_seattle_weather_recipe_keeps_its_dates_and_its_rule(tmp_path, pm):
    result = run_shipped("seattle-weather.yaml", tmp_path, pm)
    data = pl.read_csv(result.dataset_path)
    assert data["date"].str.contains(r"^\d{4}/\d\d/\d\d$").all() and (data["temp_min"] <= data["temp_max"]).all()


@pytest.mark.parametrize("name", ["adult-synthesize.yaml", "adult-augment.yaml", "adult-rebalance.yaml",
                                  "seattle-weather.yaml"])
def test_shipped_recipes_need_nothing_outside_the_repository(name):
    recipe = load_recipe(RECIPES / name)
    for path in (recipe.source.path, recipe.holdout.path):
        if path is not None:
            resolved = recipe.resolve(path)
            assert resolved.exists() and RECIPES in resolved.parents


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adult-autoregressive.yaml", "adult-impute.yaml", "adult-vae.yaml",
                                  "adult-gan.yaml", "adult-diffusion.yaml"])
def test_the_neural_recipes_run_end_to_end_with_one_epoch(name, tmp_path):
    from synthforge.plugins import get_plugin_manager

    pm = get_plugin_manager()
    recipe = load_recipe(RECIPES / name, pm=pm, overrides={"generator.params.epochs": 1})
    if recipe.output.mode != "impute":
        recipe.output.rows = 2000
    recipe.output.path = tmp_path / "out"
    result = run(recipe, pm=pm)
    assert result.dataset_path.exists() and (tmp_path / "out" / "model" / "weights.safetensors").exists()
    assert result.privacy_off == []
