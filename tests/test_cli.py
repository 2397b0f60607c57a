from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from .conftest import DATA, basic_recipe


def synthforge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthforge.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_is_fast_and_imports_no_heavy_library():
    code = ("import sys, time; t = time.perf_counter(); sys.argv = ['synthforge', '--help']\n"
            "from synthforge.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'diffusers', 'polars', 'numpy', 'sklearn') if m in sys.modules]\n"
            "print('HEAVY', heavy, time.perf_counter() - t)")
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in output, output
    assert time.perf_counter() - started < 5  # a generous bound: the point is that nothing heavy is imported


def test_run_prints_where_the_dataset_and_report_are(write_recipe, tmp_path):
    result = synthforge("run", str(write_recipe(basic_recipe())))
    assert result.returncode == 0, result.stderr
    assert f"dataset: {tmp_path / 'out' / 'data.csv'}" in result.stdout and "report.html" in result.stdout
    assert "column_shapes" in result.stdout and "exact_copies" in result.stdout


def test_user_errors_exit_2_with_a_message_and_no_traceback(write_recipe):
    recipe = basic_recipe()
    recipe["generator"]["name"] = "nope"
    result = synthforge("run", str(write_recipe(recipe)))
    assert result.returncode == 2
    assert "unknown generator 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_validate_and_schema(write_recipe):
    result = synthforge("validate", str(write_recipe(basic_recipe())))
    assert result.returncode == 0 and "valid" in result.stdout
    schema = json.loads(synthforge("schema").stdout)
    assert schema["title"] == "SynthForge recipe"


def test_plugins_lists_builtins_as_json():
    result = synthforge("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    builtin = {p["name"]: p for p in listing["plugins"]}
    assert builtin["synthforge.baseline"]["generators"] == ["copula"]
    assert {"column_shapes", "exact_copies"} <= set(builtin["synthforge.checks.builtin"]["checks"])
    assert "errors" in listing
    assert "copula" in synthforge("plugins").stdout


def test_sample_from_a_saved_model_with_conditions(write_recipe, tmp_path):
    assert synthforge("run", str(write_recipe(basic_recipe()))).returncode == 0
    out = tmp_path / "more.parquet"
    result = synthforge("sample", str(tmp_path / "out" / "model"), "--rows", "2500", "-c", "sex=Female",
                        "-c", "age=44", "--out", str(out), "--batch-size", "1000")
    assert result.returncode == 0, result.stderr
    data = pl.read_parquet(out)
    assert data.height == 2500 and (data["sex"] == "Female").all() and (data["age"] == 44).all()
    bad = synthforge("sample", str(tmp_path / "out" / "model"), "--rows", "5", "-c", "sex=Martian", "--out",
                     str(tmp_path / "x.csv"))
    assert bad.returncode == 2 and "Martian" in bad.stderr and not (tmp_path / "x.csv").exists()


def test_evaluate_any_pair_of_tables(tmp_path):
    real = pl.read_csv(DATA / "adult_4k.csv")
    real.head(2000).write_csv(tmp_path / "real.csv")
    real.tail(2000).write_csv(tmp_path / "other.csv")
    result = synthforge("evaluate", str(tmp_path / "real.csv"), str(tmp_path / "other.csv"),
                        "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "eval" / "report.html").exists() and (tmp_path / "eval" / "report.json").exists()
    copy = synthforge("evaluate", str(tmp_path / "real.csv"), str(tmp_path / "real.csv"))
    assert copy.returncode == 3 and "exact_copies" in copy.stdout  # a failed gate, not bad input (2)


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_recipe_validates(recipe):
    result = synthforge("validate", str(recipe))
    assert result.returncode == 0, result.stderr
