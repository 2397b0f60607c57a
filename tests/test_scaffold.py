from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from synthforge.engine import run
from synthforge.errors import SynthForgeError
from synthforge.plugins import get_plugin_manager
from synthforge.scaffold import new_plugin
from synthforge.testing import conformance_checks, recipe_modes

from .conftest import basic_recipe

pytest.importorskip("torch")


def install(root, target):
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(root)], check=True)


@pytest.mark.slow
def test_a_scaffolded_plugin_installs_shows_up_runs_a_recipe_and_passes_its_own_tests(tmp_path, plugin_site,
                                                                                     write_recipe):
    root = new_plugin("scaffolded_vae", "vae", tmp_path)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "src/synthforge_scaffolded_vae/__init__.py",
        "src/synthforge_scaffolded_vae/model.py", "tests/test_scaffolded_vae_conformance.py"]
    install(root, plugin_site)
    importlib.invalidate_caches()
    pm = get_plugin_manager()
    assert "scaffolded_vae" in pm.generators()
    recipe = basic_recipe()
    recipe["generator"] = {"name": "scaffolded_vae", "params": {"epochs": 5}}
    result = run(write_recipe(recipe), pm=pm)
    assert result.rows["synthetic"] == 1000
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), *sys.path])}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                           capture_output=True, text=True, env=environment, cwd=root)
    assert tests.returncode == 0, tests.stdout[-3000:]
    modes = len(recipe_modes(get_plugin_manager().get_generator("scaffolded_vae")))
    assert f"{len(conformance_checks()) + modes} passed" in tests.stdout, \
        "its test runs every conformance check and a recipe in every output mode"


@pytest.mark.parametrize("family", ["gan", "diffusion", "numpy"])
def test_every_family_template_trains_samples_and_round_trips(family, tmp_path, plugin_site):
    root = new_plugin(f"scaffolded_{family}", family, tmp_path)
    install(root, plugin_site)
    importlib.invalidate_caches()
    generator = get_plugin_manager().get_generator(f"scaffolded_{family}")
    from synthforge.testing import check_sample_shape_and_types, check_save_load_round_trip, check_seeds_reproduce

    params = {"iterations": 3} if family == "numpy" else {"epochs": 2}
    for check in (check_sample_shape_and_types, check_save_load_round_trip, check_seeds_reproduce):
        check(generator, params=params)


def test_bad_names_and_families_are_refused(tmp_path):
    with pytest.raises(SynthForgeError, match="lower-case"):
        new_plugin("My-Model", "vae", tmp_path)
    with pytest.raises(SynthForgeError, match="the templates are: vae, gan, diffusion, numpy"):
        new_plugin("mine", "flow", tmp_path)
    new_plugin("mine", "vae", tmp_path)
    with pytest.raises(SynthForgeError, match="already exists"):
        new_plugin("mine", "vae", tmp_path)
