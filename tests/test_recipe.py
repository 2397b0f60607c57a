from __future__ import annotations

import json

import pytest

from synthforge.errors import RecipeError
from synthforge.plugins import get_plugin_manager
from synthforge.recipe import load_recipe, recipe_json_schema

from .conftest import basic_recipe


def test_a_valid_recipe_loads_with_paths_relative_to_its_file(write_recipe, pm, tmp_path):
    recipe = load_recipe(write_recipe(basic_recipe()), pm=pm)
    assert recipe.resolve(recipe.source.path) == (tmp_path / "adult.csv").resolve()
    assert recipe.holdout.fraction == 0.25  # the `holdout: 0.25` shorthand


def test_a_typo_names_the_key_the_line_and_the_likely_key(write_recipe, pm):
    text = """seed: 1
source:
  path: adult.csv
output:
  mdoe: synthesize
  path: out
"""
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe({}, text=text), pm=pm)
    message = str(error.value)
    assert "recipe.yaml:5" in message and "output.mdoe" in message and "Did you mean 'mode'?" in message


def test_an_unknown_generator_lists_the_installed_ones(write_recipe, pm):
    recipe = basic_recipe()
    recipe["generator"] = {"name": "copla"}
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe(recipe), pm=pm)
    message = str(error.value)
    assert "unknown generator 'copla'" in message and "Installed generators: copula" in message
    assert "Did you mean 'copula'?" in message and "recipe.yaml:" in message


def test_bad_generator_params_name_the_param(write_recipe, pm):
    recipe = basic_recipe()
    recipe["generator"]["params"] = {"shrinkage": 3, "colour": "red"}
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe(recipe), pm=pm)
    assert "shrinkage" in str(error.value) and "colour" in str(error.value)


def test_yaml_syntax_errors_and_duplicate_keys_give_the_line(write_recipe):
    with pytest.raises(RecipeError, match=r"recipe.yaml:4: not valid YAML: .*on line 3"):
        load_recipe(write_recipe({}, text="seed: 1\nsource:\n  path: [unclosed\n"))
    with pytest.raises(RecipeError, match=r"recipe.yaml:3: key 'seed' appears twice \(first on line 1\)"):
        load_recipe(write_recipe({}, text="seed: 1\nsource: {path: a.csv}\nseed: 2\n"))


def test_recipes_are_data_not_code(write_recipe):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write_recipe({}, text="!!python/object/apply:os.system ['echo owned']\n"))


def test_mode_requirements_and_shares_are_checked(write_recipe):
    with pytest.raises(RecipeError, match="needs `column:`"):
        load_recipe(write_recipe(basic_recipe(mode="rebalance")))
    with pytest.raises(RecipeError, match="add up to 1"):
        load_recipe(write_recipe(basic_recipe(mode="rebalance", column="income", shares={"a": 0.7, "b": 0.7})))
    with pytest.raises(RecipeError, match="`impute_path` only applies to mode 'impute'"):
        load_recipe(write_recipe(basic_recipe(impute_path="other.csv")))
    with pytest.raises(RecipeError, match=r"'copula' cannot impute; generators that can:"):
        load_recipe(write_recipe(basic_recipe(mode="impute")), pm=get_plugin_manager(entry_points=False))
    with pytest.raises(RecipeError, match="output.path: this key is required"):
        load_recipe({"source": {"path": "x.csv"}, "output": {"mode": "synthesize"}})


def test_a_missing_recipe_file_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_json_schema_describes_every_section():
    schema = recipe_json_schema()
    assert {"source", "holdout", "generator", "output", "checks", "seed"} <= set(schema["properties"])
    json.dumps(schema)
