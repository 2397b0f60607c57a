"""The plugin guide's worked example is what `new-plugin --family numpy` writes, and it works as a plugin."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synthforge.engine import run
from synthforge.plugins import get_plugin_manager
from synthforge.scaffold import model_source, new_plugin
from synthforge.testing import conformance_checks, recipe_modes

from .conftest import basic_recipe

GUIDE = Path(__file__).parent.parent / "docs" / "plugins.md"


def _worked_example() -> str:
    found = re.search(r"<!-- worked-example:start -->\n```python\n(.*?)```\n<!-- worked-example:end -->",
                      GUIDE.read_text(), re.S)
    assert found, "docs/plugins.md lost its worked example"
    return found.group(1)


def _hook_block() -> str:
    found = re.search(r"```python\n(import synthforge\nfrom synthforge_mixture.*?)```", GUIDE.read_text(), re.S)
    assert found, "docs/plugins.md lost the worked example's __init__.py"
    return found.group(1)


def test_the_worked_example_is_the_numpy_template_and_under_a_hundred_lines():
    example = _worked_example()
    assert example == model_source("numpy", "mixture", "MixtureGenerator")
    assert len(example.splitlines()) < 100
    assert "import torch" not in example


@pytest.mark.slow
def test_the_worked_example_builds_installs_runs_a_recipe_and_passes_its_tests(tmp_path, plugin_site, write_recipe):
    root = new_plugin("mixture", "numpy", tmp_path / "build")
    (root / "src" / "synthforge_mixture" / "model.py").write_text(_worked_example())
    (root / "src" / "synthforge_mixture" / "__init__.py").write_text(_hook_block())
    assert "torch" not in (root / "pyproject.toml").read_text()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(plugin_site), str(root)], check=True)
    importlib.invalidate_caches()
    pm = get_plugin_manager()
    generator = pm.get_generator("mixture")
    assert "torch" not in sys.modules or generator.uses_torch is False
    recipe = basic_recipe()
    recipe["generator"] = {"name": "mixture", "params": {"components": 8}}
    result = run(write_recipe(recipe), pm=pm)
    assert result.rows["synthetic"] == 1000
    assert {c.name: c.passed for c in result.checks}["exact_copies"]
    column_shapes = next(c for c in result.checks if c.name == "column_shapes")
    assert column_shapes.score > 0.9, column_shapes.summary
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), *sys.path])}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                           capture_output=True, text=True, env=environment, cwd=root)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert f"{len(conformance_checks()) + len(recipe_modes(generator))} passed" in tests.stdout
