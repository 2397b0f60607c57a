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
    # piped (no terminal): each check's line as it ends, and no table repeating them
    assert result.stdout.count("column_shapes") == 1 and result.stdout.count("exact_copies") == 1


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


# --- small things a new user meets first ------------------------------------------------------------------------


def test_version_prints_the_packages_version():
    from synthforge import __version__

    result = synthforge("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"synthforge {__version__}"


def test_plugins_in_an_80_column_terminal_cuts_no_name():
    import os

    names = [p["name"] for p in json.loads(synthforge("plugins", "--json").stdout)["plugins"]]
    result = subprocess.run([sys.executable, "-m", "synthforge.cli", "plugins"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "80"})
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and max(len(line) for line in lines) <= 80
    for name in names:
        assert any(f" {name} " in line for line in lines), name


def test_users_add_offers_no_password_once():
    help_text = synthforge("users", "add", "--help").stdout
    assert "--no-password" in help_text and "--no-no-password" not in help_text


def test_sample_names_its_own_format_option_and_writes_csv_to_standard_output(write_recipe, tmp_path):
    assert synthforge("run", str(write_recipe(basic_recipe())), "-q").returncode == 0
    model = str(tmp_path / "out" / "model")
    unknown = synthforge("sample", model, "-n", "5", "--out", str(tmp_path / "x.txt"))
    assert unknown.returncode == 2 and "--format" in unknown.stderr and "format:" not in unknown.stderr
    assert not (tmp_path / "x.txt").exists()
    chosen = synthforge("sample", model, "-n", "5", "--out", str(tmp_path / "x.txt"), "--format", "ndjson")
    assert chosen.returncode == 0, chosen.stderr
    assert pl.read_ndjson(tmp_path / "x.txt").height == 5
    piped = synthforge("sample", model, "-n", "7", "-c", "sex=Female", "--out", "-")
    assert piped.returncode == 0, piped.stderr
    rows = pl.read_csv(piped.stdout.encode())
    assert rows.height == 7 and (rows["sex"] == "Female").all() and "wrote 7 rows" in piped.stderr


def test_quiet_run_prints_the_result_without_the_checks_table(write_recipe, tmp_path):
    result = synthforge("run", str(write_recipe(basic_recipe())), "-q")
    assert result.returncode == 0, result.stderr
    assert "column_shapes" not in result.stdout and "checks" not in result.stdout
    assert "done" in result.stdout and f"dataset: {tmp_path / 'out' / 'data.csv'}" in result.stdout


def test_a_run_whose_quality_gate_warned_says_so_in_its_last_line_and_its_report(write_recipe, tmp_path):
    recipe = basic_recipe()
    recipe["checks"] = [{"name": "column_shapes", "min": 1.01, "on_fail": "warn"}, {"name": "pair_trends"}]
    result = synthforge("run", str(write_recipe(recipe)))
    assert result.returncode == 0, result.stderr
    assert "1 quality gate warned (column_shapes: see the report)" in " ".join(result.stdout.split())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["passed"] and report["warnings"] == ["column_shapes"]
