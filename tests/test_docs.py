from __future__ import annotations

import re
from pathlib import Path

from synthforge.hookspecs import hook_names, render_hook_reference

DOCS = Path(__file__).parent.parent / "docs" / "plugins.md"


def test_every_hook_has_an_entry_in_the_plugin_author_docs():
    text = DOCS.read_text()
    for name in hook_names():
        assert f"### `{name}`" in text, f"docs/plugins.md lacks an entry for {name}"


def test_the_hook_reference_is_generated_from_the_hookspecs():
    section = re.search(r"<!-- hooks:start -->\n(.*)<!-- hooks:end -->", DOCS.read_text(), re.S)
    assert section and section.group(1) == render_hook_reference(), (
        "docs/plugins.md is out of date: run `python -m synthforge.hookspecs docs/plugins.md`")


def test_every_hook_is_documented_in_its_spec():
    from synthforge.hookspecs import describe_hooks

    for hook in describe_hooks():
        assert len(hook["doc"]) > 80, f"{hook['name']} needs a real docstring"


def test_the_recipe_snippets_of_the_scale_guide_are_valid_recipes(tmp_path):
    """Every YAML block of docs/scale.md, completed to a recipe where it shows only a part, validates: its keys
    are the recipe's (a renamed key fails here before a reader copies it)."""
    import yaml

    from synthforge.recipe import load_recipe

    guide = (Path(__file__).parent.parent / "docs" / "scale.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        recipe = {"name": "snippet", "source": {"path": "data.parquet"}, "generator": {"name": "autoregressive"},
                  "output": {"mode": "synthesize", "path": "out"}, **yaml.safe_load(block)}
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        load_recipe(tmp_path / "recipe.yaml")
