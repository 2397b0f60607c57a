from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from synthforge import hookimpl
from synthforge.baseline import GaussianCopula
from synthforge.engine import run
from synthforge.errors import PluginError
from synthforge.plugins import get_plugin_manager

from .conftest import basic_recipe

TINY = Path(__file__).parent / "plugins" / "synthforge-tiny"


@pytest.fixture(scope="module")
def installed_tiny(tmp_path_factory):
    """pip-install the tiny plugin distribution into a private folder and put it on sys.path."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(TINY)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("synthforge_tiny")]:
        del sys.modules[name]


def test_an_installed_entry_point_plugin_is_found_and_runs_a_recipe(installed_tiny, write_recipe, tmp_path):
    pm = get_plugin_manager()
    assert "tiny" in pm.generators()
    recipe = basic_recipe()
    recipe["generator"]["name"] = "tiny"
    result = run(write_recipe(recipe), pm=pm)
    assert result.rows["synthetic"] == 1000 and (tmp_path / "out" / "data.csv").exists()
    described = {p["name"]: p for p in pm.describe()["plugins"]}
    assert described["tiny"]["distribution"] == "synthforge-tiny" and described["tiny"]["version"] == "0.3.1"
    assert described["tiny"]["generators"] == ["tiny"] and described["tiny"]["hooks"] == ["synthforge_generators"]


def test_a_broken_plugin_is_reported_and_the_others_keep_working(installed_tiny):
    pm = get_plugin_manager()
    errors = {e.name: e for e in pm.load_errors}
    assert "tiny_broken" in errors and "ModuleNotFoundError" in errors["tiny_broken"].error
    assert errors["tiny_broken"].distribution == "synthforge-tiny"
    assert {"copula", "tiny"} <= set(pm.generators())
    with pytest.raises(PluginError, match=r"Plugins that failed to load: tiny_broken"):
        pm.get_generator("nope")


def test_plugins_can_be_disabled_by_name_or_all(installed_tiny, monkeypatch):
    monkeypatch.setenv("SYNTHFORGE_DISABLE_PLUGINS", "tiny_broken")
    pm = get_plugin_manager()
    assert not pm.load_errors and "tiny" in pm.generators()
    assert "tiny" not in get_plugin_manager(disabled=["all"]).generators()


def test_an_incompatible_plugin_is_warned_about_not_loaded(tmp_path, monkeypatch):
    package = tmp_path / "synthforge_future"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    info = tmp_path / "synthforge_future-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: synthforge-future\nVersion: 1.0\n"
                                   "Requires-Dist: synthforge>=99\n")
    (info / "entry_points.txt").write_text("[synthforge]\nfuture = synthforge_future\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    pm = get_plugin_manager()
    [error] = [e for e in pm.load_errors if e.name == "future"]
    assert error.kind == "incompatible" and "requires synthforge>=99" in error.error


def test_duplicate_generator_names_are_an_error():
    class Clash:
        @hookimpl
        def synthforge_generators(self):
            return [type("Other", (GaussianCopula,), {"name": "copula"})]

    pm = get_plugin_manager(entry_points=False, extra_plugins=[Clash()])
    with pytest.raises(PluginError, match="two plugins provide a generator named 'copula'"):
        pm.generators()


def test_a_misspelled_hook_is_an_error_not_silence():
    class Misspelled:
        @hookimpl
        def synthforge_generator(self):
            return []

    with pytest.raises(Exception, match="synthforge_generator"):
        get_plugin_manager(entry_points=False, extra_plugins=[Misspelled()])


def test_a_plugins_dir_file_is_loaded(tmp_path):
    (tmp_path / "local_copula.py").write_text(
        "import synthforge\nfrom synthforge.baseline import GaussianCopula\n"
        "class Local(GaussianCopula):\n    name = 'local'\n"
        "@synthforge.hookimpl\ndef synthforge_generators():\n    return [Local]\n")
    (tmp_path / "broken_local.py").write_text("raise ValueError('boom')\n")
    pm = get_plugin_manager(entry_points=False, plugins_dir=tmp_path)
    assert "local" in pm.generators()
    assert [e.name for e in pm.load_errors] == ["broken_local"] and "boom" in pm.load_errors[0].error


def test_fresh_managers_share_no_state():
    class Extra:
        @hookimpl
        def synthforge_generators(self):
            return [type("Extra", (GaussianCopula,), {"name": "extra"})]

    assert "extra" in get_plugin_manager(entry_points=False, extra_plugins=[Extra()]).generators()
    assert "extra" not in get_plugin_manager(entry_points=False).generators()
