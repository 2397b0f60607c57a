"""Files a teammate can read, nothing left behind by a killed run, and the CLI's small promises."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

import synthforge
from synthforge.data.io import abandoned_staging, process_alive, staging_path
from synthforge.engine import run
from synthforge.jobs.store import JobStore
from synthforge.jobs.worker import abandoned_result_files

from .conftest import DATA, ROOT, basic_recipe


@pytest.fixture()
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not process_alive(process.pid)
    return process.pid


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # the environment as os.environ has it: a library imported by the suite leaves COLUMNS=80 in the C environment
    # a bare subprocess inherits, and the CLI honours $COLUMNS when piped
    return subprocess.run([sys.executable, "-m", "synthforge.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ))


def test_outputs_and_models_get_the_users_umask_like_any_file(write_recipe, pm, tmp_path, umask_022):
    run(write_recipe(basic_recipe(rows=300)), pm=pm)
    out = tmp_path / "out"
    for name in ("data.csv", "manifest.json", "report.html", "model/config.json", "model/weights.safetensors"):
        assert _mode(out / name) == 0o644, name
    done = _cli("sample", str(out / "model"), "-n", "50", "--out", str(tmp_path / "more.parquet"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "more.parquet") == 0o644


def test_a_bad_output_extension_names_the_file_asked_for_not_a_hidden_one(tmp_path):
    synthforge.fit(pl.read_csv(DATA / "adult_4k.csv").head(500), "copula", seed=0).save(tmp_path / "model")
    done = _cli("sample", str(tmp_path / "model"), "-n", "5", "--out", str(tmp_path / "rows.xlsx"), cwd=tmp_path)
    assert done.returncode == 2
    assert "rows.xlsx" in done.stderr and ".partial" not in done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "model"], "nothing is left behind"


def test_a_pandas_frame_fitted_saved_and_loaded_comes_back_as_pandas(tmp_path):
    frame = pl.read_csv(DATA / "adult_4k.csv").head(500).to_pandas()
    synthforge.fit(frame, "copula", seed=0).save(tmp_path / "model")
    assert type(synthforge.load(tmp_path / "model").sample(10, seed=1)).__module__.startswith("pandas")
    done = _cli("sample", str(tmp_path / "model"), "-n", "20", "--out", str(tmp_path / "rows.csv"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert pl.read_csv(tmp_path / "rows.csv").height == 20


def test_staging_folders_of_dead_owners_are_found_and_live_ones_kept(tmp_path):
    output = tmp_path / "out"
    mine = staging_path(output)
    mine.mkdir()
    host = socket.gethostname()
    dead = tmp_path / f".out.tmp-0123456789ab-{_dead_pid()}@{host}"
    dead.mkdir()
    elsewhere = tmp_path / f".out.tmp-0123456789ac-{_dead_pid()}@another-host"
    elsewhere.mkdir()
    old_style = tmp_path / ".out.tmp-0123456789ad"
    old_style.mkdir()
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    fresh_old_style = tmp_path / ".out.tmp-0123456789ae"
    fresh_old_style.mkdir()
    (tmp_path / ".other.tmp-0123456789af-1@x").mkdir()
    assert abandoned_staging(output) == sorted([dead, old_style])


def test_jobs_gc_removes_what_killed_jobs_left_and_nothing_else(write_recipe, tmp_path):
    store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    JobStore(store_url).submit(write_recipe(basic_recipe()))
    host = socket.gethostname()
    left = tmp_path / f".out.tmp-0123456789ab-{_dead_pid()}@{host}"
    left.mkdir()
    (left / "data.csv").write_text("a\n1\n")
    live = staging_path(tmp_path / "out")
    live.mkdir()
    result = Path(tempfile.gettempdir()) / f"synthforge-job-00000000-7-1-{_dead_pid()}@{host}.json"
    result.write_text("")
    assert result in abandoned_result_files()
    done = _cli("jobs", "gc", "--store", store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not left.exists() and not result.exists() and live.exists()
    assert f"removed {left}" in done.stdout and "leftover(s) removed" in done.stdout


def test_jobs_list_shows_a_schedules_next_run_in_its_own_labelled_time_zone(write_recipe, tmp_path):
    store_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    recipe = write_recipe(basic_recipe())
    done = _cli("jobs", "submit", str(recipe), "--schedule", "0 2 * * *", "--timezone", "Europe/Paris",
                "--store", store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert " 02:00:00 CE" in done.stdout  # CET or CEST, labelled
    listing = _cli("jobs", "list", "--store", store_url, cwd=tmp_path)
    assert listing.returncode == 0 and " 02:00:00 CE" in listing.stdout, listing.stdout


def test_gitignore_covers_the_job_store_and_outputs():
    ignored = subprocess.run(["git", "check-ignore", "synthforge-jobs.db", "synthforge-jobs.db-wal", "out/x.csv",
                              "recipes/out/x"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == ["synthforge-jobs.db", "synthforge-jobs.db-wal", "out/x.csv", "recipes/out/x"]


def test_messages_keep_their_square_brackets(tmp_path):
    (tmp_path / "recipe.yaml").write_text("source: {path: data.csv}\noutput: {path: out}\nbogus: [a]\n")
    done = _cli("validate", str(tmp_path / "recipe.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    (tmp_path / "recipe.yaml").write_text("source: {path: data.csv, drop: [x]}\noutput: {path: out}\n"
                                          "checks: [{name: nope}]\n")
    done = _cli("validate", str(tmp_path / "recipe.yaml"), cwd=tmp_path)
    assert "checks[0]" in done.stderr, done.stderr


def test_plugins_piped_into_another_program_prints_full_names(tmp_path):
    done = _cli("plugins", cwd=tmp_path)
    assert done.returncode == 0
    assert "synthforge.checks.builtin" in done.stdout and "…" not in done.stdout
