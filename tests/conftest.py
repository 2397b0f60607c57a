from __future__ import annotations

import os
import subprocess
import time
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


def unavailable(reason: str, *, module: bool = False) -> None:
    """A test whose tool (a server, a browser, a library) is missing: skipped on a developer's machine, saying why,
    but a failure under CI (``CI=true``), whose ``.ci/run`` installs every tool, so CI never passes without it."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}; CI must run this test (.ci/run installs what it needs)", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def require_module(name: str) -> Any:
    """``importlib.import_module(name)``, or :func:`unavailable` at module level when it is not installed."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        unavailable(f"{name} is not installed ({error})", module=True)


# --- the stores: SQLite always, PostgreSQL where it can start ----------------------------------


def _postgres_url() -> tuple[str, list[str], Path]:
    """Start a throw-away PostgreSQL cluster on a unix socket (Debian's postgresql package)."""
    import glob
    import shutil

    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if initdb is None:
        unavailable("PostgreSQL is not installed (apt-get install postgresql); its tests did not run")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    import tempfile

    # Under /tmp itself, not pytest's root-only folder: the postgres user must be able to reach it.
    folder = Path(tempfile.mkdtemp(prefix="synthforge-pg-"))
    data, socket_dir = folder / "data", folder / "socket"
    socket_dir.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        shutil.chown(folder, "postgres")
        shutil.chown(socket_dir, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    steps = [[*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "synthforge", "--no-sync"],
             [*prefix, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "start",
              "-o", f"-k {socket_dir} -c listen_addresses='' -c fsync=off"]]
    for step in steps:
        completed = subprocess.run(step, capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            unavailable(f"PostgreSQL could not start ({' '.join(step[:1])}: {completed.stderr.strip()[:200]})")
    stop = [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
    return f"postgresql+psycopg://synthforge@/postgres?host={socket_dir}", stop, folder


@pytest.fixture(scope="module")
def postgres():
    import shutil

    url, stop, folder = _postgres_url()
    yield url
    subprocess.run(stop, capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    # A fresh database per test, so tests do not see each other's jobs.
    return fresh_database(request.getfixturevalue("postgres"))


def fresh_database(server: str) -> str:
    """The URL of a new, empty database on the throw-away PostgreSQL server at ``server``."""
    import sqlalchemy as sa

    name = f"t{os.getpid()}_{int(time.time() * 1e6)}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return server.replace("/postgres?", f"/{name}?")
