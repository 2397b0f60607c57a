from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from synthforge.plugins import get_plugin_manager

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def adult() -> pl.DataFrame:
    """4,000 real UCI Adult training rows (CC BY 4.0), shipped with the tests."""
    return pl.read_csv(DATA / "adult_4k.csv")


@pytest.fixture()
def plugin_site(tmp_path: Path):
    """A folder on sys.path to ``pip install --target`` a plugin into; its modules are forgotten afterwards."""
    import importlib
    import sys

    target = tmp_path / "site"
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    importlib.invalidate_caches()
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(target)):
            del sys.modules[name]


@pytest.fixture()
def pm():
    """A fresh plugin manager with the built-in plugins only (no installed entry points)."""
    return get_plugin_manager(entry_points=False)


@pytest.fixture()
def write_recipe(tmp_path: Path):
    """Write a recipe dict as YAML into tmp_path, with the 4k Adult rows beside it."""

    def write(recipe: dict[str, Any], name: str = "recipe.yaml", text: str | None = None) -> Path:
        data = tmp_path / "adult.csv"
        if not data.exists():
            data.write_bytes((DATA / "adult_4k.csv").read_bytes())
        path = tmp_path / name
        path.write_text(text if text is not None else yaml.safe_dump(recipe, sort_keys=False))
        return path

    return write


def basic_recipe(**output: Any) -> dict[str, Any]:
    return {
        "seed": 3,
        "source": {"path": "adult.csv"},
        "holdout": 0.25,
        "generator": {"name": "copula"},
        "output": {"mode": "synthesize", "rows": 1000, "path": "out", **output},
    }
