"""The job store and the worker against bad input (issue 38): a damaged store file is named with what to do
(exit 2, no traceback) by every command that opens it, and a recipe that cannot be read is a final failure, not
a crash retried."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from synthforge.jobs.store import JobStore

from .test_jobs import start_worker


def write_recipe(folder: Path, name: str, **changes: object) -> Path:
    """A small copula recipe over a two-column table in ``folder``."""
    (folder / "plugins").mkdir(exist_ok=True)
    (folder / "small.csv").write_text("age,income\n" + "".join(f"{20 + i % 50},{'low' if i % 3 else 'high'}\n"
                                                                 for i in range(200)))
    recipe = {"name": name, "seed": 1, "source": {"path": "small.csv"}, "generator": {"name": "copula"},
              "output": {"mode": "synthesize", "rows": 100, "path": f"out/{name}", "format": "csv"}, **changes}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def damaged_store(folder: Path, how: str) -> Path:
    """A store with jobs, logs and a user, then damaged as a full disk, a bad copy or a stray write leaves one."""
    database = folder / "jobs.db"
    store = JobStore(f"sqlite:///{database}")
    for i in range(200):
        job_id = store.submit(folder / "r.yaml", {"note": "x" * 200})
        store.log(job_id, 1, f"line {i} " * 50)
    store.engine.dispose()
    with sqlite3.connect(database) as connection:  # everything into the main file: no WAL to fall back on
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        (folder / f"jobs.db{suffix}").unlink(missing_ok=True)
    data = database.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "overwritten": b"\x00\x17garbage" * 4096,
               "zeroed": data[:4096] + b"\x00" * (len(data) - 4096)}[how]
    database.write_bytes(damaged)
    return database


@pytest.mark.parametrize("how", ["truncated", "overwritten", "zeroed"])
def test_every_command_names_a_damaged_store_and_exits_2(tmp_path: Path, how: str, monkeypatch, capsys):
    from synthforge.cli import main

    database = damaged_store(tmp_path, how)
    store = f"sqlite:///{database}"
    write_recipe(tmp_path, "job")
    monkeypatch.setenv("SYNTHFORGE_PASSWORD", "correct horse battery")
    commands = [["jobs", "list"], ["jobs", "show", "1"], ["jobs", "logs", "1"], ["jobs", "cancel", "1"],
                ["jobs", "retry", "1"], ["jobs", "gc"], ["jobs", "submit", str(tmp_path / "job.yaml")],
                ["jobs", "cancel", "1", "--schedule"], ["worker", "--drain"],
                ["serve", "--recipes", str(tmp_path), "--data", str(tmp_path / "d"), "--outputs",
                 str(tmp_path / "out")],
                ["users", "add", "ada", "--role", "admin"], ["users", "list"], ["tokens", "list"]]
    for command in commands:
        monkeypatch.setattr(sys, "argv", ["synthforge", *command, "--store", store])
        with pytest.raises(SystemExit) as exited:
            main()
        errors = capsys.readouterr().err
        assert exited.value.code == 2, (command, errors)
        assert "Traceback" not in errors and "damaged" in errors, (command, errors)
        assert str(database) in errors.replace("\n", "") and ".recover" in errors, (command, errors)


def test_a_recipe_too_deep_to_read_fails_once_and_is_not_retried(tmp_path: Path):
    write_recipe(tmp_path, "deep", constraints=["(" * 5000 + "age" + ")" * 5000 + " >= 0"])
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    job_id = store.submit(tmp_path / "deep.yaml", max_attempts=3)  # as a store written before submit checked it
    worker = start_worker(url, tmp_path, "--drain", "--retry-delay", "0.1")
    assert worker.wait(timeout=180) == 0, worker.stdout.read()
    job = store.get(job_id)
    assert job.status == "failed" and job.attempts == 1, (job.status, job.attempts, job.error)
    assert "RecursionError" not in (job.error or "") and "crashed" not in (job.error or "")
