"""Nothing lost: a run, a sample or an evaluation replaces only what SynthForge wrote (issue 38)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from synthforge.data.ownership import MARK, OutputRefused
from synthforge.engine import run

from .conftest import DATA


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def synthforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthforge.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A user's folder: a small real table, a recipe beside it and an unrelated file."""
    pl.read_csv(DATA / "adult_4k.csv").head(400).write_csv(tmp_path / "adult.csv")
    (tmp_path / "notes.txt").write_text("my notes, not SynthForge's\n")
    return tmp_path


def recipe(folder: Path, path: str, **output: object) -> Path:
    file = folder / "recipe.yaml"
    file.write_text(yaml.safe_dump({"seed": 1, "source": {"path": "adult.csv"}, "generator": {"name": "copula"},
                                    "output": {"path": path, "format": "csv", "rows": 200, **output}}))
    return file


def test_an_output_path_of_dot_leaves_the_users_folder_as_it_was(project):
    recipe(project, ".")
    before = snapshot(project)
    result = synthforge("run", "recipe.yaml", cwd=project)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "holds the recipe" in result.stderr and "recipe.yaml" in result.stderr
    assert snapshot(project) == before


def test_an_output_folder_holding_the_source_is_refused(project):
    (project / "data").mkdir()
    (project / "adult.csv").rename(project / "data" / "adult.csv")
    file = project / "recipe.yaml"
    file.write_text(yaml.safe_dump({"seed": 1, "source": {"path": "data/adult.csv"}, "generator": {"name": "copula"},
                                    "output": {"path": "data", "rows": 100}}))
    before = snapshot(project)
    with pytest.raises(OutputRefused, match="holds the source"):
        run(file)
    assert snapshot(project) == before


def test_a_folder_of_someone_elses_files_is_never_replaced(project):
    (project / "results").mkdir()
    (project / "results" / "thesis.tex").write_text("two years of work")
    file = recipe(project, "results")
    before = snapshot(project)
    with pytest.raises(OutputRefused, match="thesis.tex"):
        run(file)
    assert snapshot(project) == before


def test_an_existing_file_at_the_output_path_is_refused(project):
    with pytest.raises(OutputRefused, match="is a file"):
        run(recipe(project, "notes.txt"))
    assert (project / "notes.txt").read_text() == "my notes, not SynthForge's\n"


def test_a_previous_output_is_replaced_but_not_with_a_users_file_in_it(project):
    file = recipe(project, "out")
    run(file)
    assert json.loads((project / "out" / MARK).read_text())["written_by"] == "synthforge"
    first = (project / "out" / "data.csv").read_bytes()
    run(recipe(project, "out", rows=150))  # a rerun replaces what SynthForge wrote
    assert (project / "out" / "data.csv").read_bytes() != first
    (project / "out" / "analysis.ipynb").write_text("{}")
    before = snapshot(project)
    with pytest.raises(OutputRefused, match="analysis.ipynb"):
        run(file)
    assert snapshot(project) == before


def test_an_output_from_before_the_mark_is_recognised_by_its_manifest(project):
    run(recipe(project, "out"))
    (project / "out" / MARK).unlink()  # as a version before the mark wrote it
    run(recipe(project, "out"))
    (project / "out" / MARK).unlink()
    (project / "out" / "manifest.json").write_text("{}")  # not a manifest of ours: the folder is not ours
    with pytest.raises(OutputRefused):
        run(recipe(project, "out"))


def test_a_failed_gate_never_replaces_a_foreign_failed_folder(project):
    (project / "out.failed").mkdir()
    (project / "out.failed" / "keep.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="keep.txt"):
        run(recipe(project, "out"))
    assert not (project / "out").exists()


def test_sample_replaces_an_existing_file_only_when_told(project):
    run(recipe(project, "out"))
    model = project / "out" / "model"
    (project / "mine.csv").write_text("a,b\n1,2\n")
    result = synthforge("sample", str(model), "--rows", "10", "--out", "mine.csv", cwd=project)
    assert result.returncode == 2 and "--overwrite" in result.stderr, result.stderr
    assert (project / "mine.csv").read_text() == "a,b\n1,2\n"
    result = synthforge("sample", str(model), "--rows", "10", "--out", "adult.csv", "--overwrite",
                        "--protect-rows-of", "adult.csv", cwd=project)
    assert result.returncode == 2 and "--protect-rows-of" in result.stderr, result.stderr
    result = synthforge("sample", str(model), "--rows", "10", "--out", "more.csv", cwd=project)
    assert result.returncode == 0, result.stderr
    result = synthforge("sample", str(model), "--rows", "12", "--out", "more.csv", "--overwrite", cwd=project)
    assert result.returncode == 0, result.stderr
    assert pl.read_csv(project / "more.csv").height == 12


def test_evaluate_never_writes_its_reports_over_a_users_folder(project):
    run(recipe(project, "out"))
    before = snapshot(project)
    result = synthforge("evaluate", "adult.csv", "out/data.csv", "--out", ".", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert snapshot(project) == before
    result = synthforge("evaluate", "adult.csv", "out/data.csv", "--out", "report", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "report" / "report.html").exists()
