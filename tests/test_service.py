"""The service: the API end to end with real workers (SQLite and PostgreSQL), accounts, and its security."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
import yaml

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from synthforge.jobs.store import MIGRATIONS, JobStore, schema_migrations
from synthforge.service.accounts import Accounts
from synthforge.service.app import ServiceConfig, create_app
from synthforge.service.folders import Folders

from .conftest import DATA
from .test_jobs import TEST_PLUGIN, start_worker, wait_for, write_recipe

PASSWORD = "correct horse battery"


def make_service(root: Path, url: str) -> tuple[TestClient, dict[str, str], Folders]:
    """A service over ``url`` with a recipes folder (4k Adult rows, the slow copula plugin), and one user of each
    role with an API token."""
    recipes = root / "recipes"
    (root / "plugins").mkdir(exist_ok=True)
    (root / "plugins" / "slow_copula.py").write_text(TEST_PLUGIN)
    recipes.mkdir(exist_ok=True)
    (recipes / "adult.csv").write_bytes((DATA / "adult_4k.csv").read_bytes())
    write_recipe(recipes, "job")
    write_recipe(recipes, "slow", fit_seconds=60.0)
    folders = Folders(recipes, root / "data", recipes / "out")
    app = create_app(ServiceConfig(store=url, folders=folders, plugins_dir=root / "plugins",
                                   login_attempts_per_minute=5))
    accounts = Accounts(app.state.store)
    tokens = {}
    for name, role in (("ada", "admin"), ("mia", "member"), ("vic", "viewer")):
        accounts.add_user(name, role, PASSWORD)
        tokens[role] = accounts.create_token(name, "tests")[1]
    return TestClient(app, base_url="https://testserver"), tokens, folders


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def service(tmp_path: Path):
    client, tokens, folders = make_service(tmp_path, f"sqlite:///{tmp_path / 'jobs.db'}")
    with client:
        yield client, tokens, folders, tmp_path


def test_submit_run_report_download_cancel_and_a_killed_worker_through_the_api(tmp_path: Path, store_url: str):
    client, tokens, _folders = make_service(tmp_path, store_url)
    member, viewer = bearer(tokens["member"]), bearer(tokens["viewer"])
    answer = client.post("/api/v1/jobs", json={"recipe": "job", "params": {"output.rows": 1500}}, headers=member)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job"]["id"]
    assert answer.json()["job"] | {"status": "queued", "submitted_by": "mia", "recipe": "job.yaml"} == \
        answer.json()["job"]

    worker = start_worker(store_url, tmp_path, "--lease", "2", "--plugins-dir", str(tmp_path / "plugins"))
    try:
        def status(job: int) -> str:
            return client.get(f"/api/v1/jobs/{job}", headers=viewer).json()["status"]

        wait_for(lambda: status(job_id) == "succeeded", timeout=240, what="the job to succeed")
        job = client.get(f"/api/v1/jobs/{job_id}", headers=viewer).json()
        assert {c["name"] for c in job["checks"]} >= {"column_shapes", "exact_copies"}
        assert all(c["passed"] for c in job["checks"]) and job["rows"]["synthetic"] == 1500
        # The run hooks fed the job's progress while it ran: the worker stored each stage as it began.
        progress = JobStore(store_url).get(job_id).progress
        assert progress is not None and progress["stage"] in ("report", "save") and progress["stage_started_at"]

        files = {f["path"]: f for f in job["files"]}
        assert {"report.html", "report.json", "manifest.json", "data.parquet"} <= set(files)
        assert any(path.startswith("model/") for path in files)
        data = client.get(f"/api/v1/jobs/{job_id}/files/data.parquet", headers=viewer)
        assert data.status_code == 200 and pl.read_parquet(io.BytesIO(data.content)).height == 1500
        report = client.get(f"/api/v1/jobs/{job_id}/files/report.html", headers=viewer)
        assert report.status_code == 200 and "sandbox" in report.headers["content-security-policy"]
        preview = client.get(f"/api/v1/jobs/{job_id}/preview?rows=5", headers=viewer).json()
        assert len(preview["rows"]) == 5 and "age" in preview["columns"]
        with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=viewer) as stream:
            events = "".join(stream.iter_text())
        assert "event: log" in events and "claimed by" in events and events.rstrip().endswith(
            'data: {"status": "succeeded"}')
        logs = client.get(f"/api/v1/jobs/{job_id}/logs", headers=viewer).json()["lines"]
        assert any("fitting" in line["line"] for line in logs)
        assert not any(line["line"].startswith("@synthforge-progress") for line in logs)

        # Cancel a running job.
        slow = client.post("/api/v1/jobs", json={"recipe": "slow"}, headers=member).json()["job"]["id"]
        wait_for(lambda: status(slow) == "running", timeout=120, what="the slow job to start")
        assert client.post(f"/api/v1/jobs/{slow}/cancel", headers=member).json()["status"] == "cancelling"
        wait_for(lambda: status(slow) == "cancelled", timeout=60, what="the slow job to be cancelled")
        assert client.get("/api/v1/jobs?status=cancelled", headers=viewer).json()["jobs"][0]["id"] == slow

        # A worker killed mid-job: its job is queued again once the lease runs out, and the API says so.
        retried = client.post(f"/api/v1/jobs/{slow}/retry", headers=member).json()
        assert retried["status"] == "queued"
        wait_for(lambda: status(slow) == "running", timeout=120, what="the retried job to start")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker = start_worker(store_url, tmp_path, "--lease", "2", "--plugins-dir", str(tmp_path / "plugins"))
        wait_for(lambda: any("lease of" in line["line"] and "expired" in line["line"] for line in
                             client.get(f"/api/v1/jobs/{slow}/logs", headers=viewer).json()["lines"]),
                 timeout=60, what="the killed worker's job to be re-queued")
        wait_for(lambda: client.get(f"/api/v1/jobs/{slow}", headers=viewer).json()["attempts"] == 2, timeout=60,
                 what="the re-queued job to be claimed again")
        client.post(f"/api/v1/jobs/{slow}/cancel", headers=member)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def test_every_route_needs_an_account_and_roles_are_enforced(service):
    client, tokens, _folders, _root = service
    assert client.get("/health").json()["status"] == "ok"
    schema = client.get("/api/v1/openapi.json", headers=bearer(tokens["viewer"])).json()
    checked = 0
    for path, methods in schema["paths"].items():
        if path.endswith("/health"):
            continue
        concrete = path.replace("{job_id}", "1").replace("{schedule_id}", "1").replace("{token_id}", "1") \
            .replace("{name}", "x")
        for method in methods:
            answer = client.request(method.upper(), concrete)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert client.request(method.upper(), concrete, headers=bearer("sf_not-a-real-token")).status_code == 401
            checked += 1
    assert checked >= 25
    for page in ("/", "/jobs/1", "/schedules", "/recipes/new", "/plugins", "/account"):
        answer = client.get(page, headers={"Accept": "text/html"}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), page

    viewer, member = bearer(tokens["viewer"]), bearer(tokens["member"])
    assert client.post("/api/v1/jobs", json={"recipe": "job"}, headers=viewer).status_code == 403
    assert client.get("/api/v1/users", headers=member).status_code == 403
    assert client.get("/api/v1/audit", headers=member).status_code == 403
    assert client.post("/api/v1/tokens", json={"user": "ada"}, headers=member).status_code == 403
    assert client.get("/api/v1/users", headers=bearer(tokens["admin"])).status_code == 200

    # A revoked token stops at once; a disabled user's tokens too.
    made = client.post("/api/v1/tokens", json={"name": "ci"}, headers=viewer).json()
    assert client.get("/api/v1/me", headers=bearer(made["token"])).json()["name"] == "vic"
    assert client.delete(f"/api/v1/tokens/{made['id']}", headers=viewer).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(made["token"])).status_code == 401
    client.patch("/api/v1/users/mia", json={"disabled": True}, headers=bearer(tokens["admin"]))
    assert client.get("/api/v1/me", headers=member).status_code == 401

    # Every state change is in the audit log with who made it.
    entries = client.get("/api/v1/audit", headers=bearer(tokens["admin"])).json()["entries"]
    actions = [(e["actor"], e["action"], e["outcome"]) for e in entries]
    assert ("vic", "POST /api/v1/jobs", 403) in actions and ("ada", "PATCH /api/v1/users/mia", 200) in actions
    assert (None, "POST /api/v1/jobs", 401) in actions


def test_paths_in_recipes_and_downloads_cannot_leave_the_folders(service):
    client, tokens, folders, root = service
    member = bearer(tokens["member"])
    recipe = yaml.safe_load((folders.recipes / "job.yaml").read_text())

    def submit(**changes) -> tuple[int, str]:
        text = yaml.safe_dump({**recipe, **changes})
        answer = client.post("/api/v1/jobs", json={"recipe_yaml": text}, headers=member)
        return answer.status_code, answer.json().get("detail", "")

    (root / "secret.csv").write_text("a,b\n1,2\n")
    assert submit(source={"path": "../secret.csv"})[0] == 403
    assert submit(source={"path": "/etc/passwd"})[0] == 403
    (folders.recipes / "escape").symlink_to(root)  # a symlink inside the folder, pointing out of it
    code, detail = submit(source={"path": "escape/secret.csv"})
    assert code == 403 and "outside the service's folders" in detail
    assert submit(output={**recipe["output"], "path": "../../elsewhere"})[0] == 403
    assert submit(output={**recipe["output"], "path": "adult.csv-out"})[0] == 403  # not in the outputs folder
    overrides = {"recipe": "job", "params": {"source.path": "../secret.csv"}}
    assert client.post("/api/v1/jobs", json=overrides, headers=member).status_code == 403
    assert client.post("/api/v1/jobs", json={"recipe": "../job"}, headers=member).status_code == 403
    verdict = client.post("/api/v1/recipes/validate", json={"recipe_yaml": yaml.safe_dump(
        {**recipe, "source": {"path": "../secret.csv"}})}, headers=member).json()
    assert not verdict["valid"] and "outside" in verdict["error"]
    assert client.post("/api/v1/uploads", files={"file": ("../x.csv", b"a\n1\n")}, headers=member).json()[
        "path"].endswith("uploads/mia/x.csv")
    assert not (folders.data / "x.csv").exists()

    # Downloads: a finished job's output folder with a symlink planted in it, and a '..' in the name.
    store = JobStore(client.app.state.store.url)
    output = folders.outputs / "done"
    output.mkdir(parents=True)
    (output / "report.html").write_text("<p>report</p>")
    (output / "leak.csv").symlink_to(root / "secret.csv")
    job = store.submit(folders.recipes / "job.yaml")
    store.claim("test", 60)
    store.complete(store.get(job), "test", {"output_path": str(output), "dataset_path": str(output / "data.csv")})
    viewer = bearer(tokens["viewer"])
    assert client.get(f"/api/v1/jobs/{job}/files/report.html", headers=viewer).status_code == 200
    assert client.get(f"/api/v1/jobs/{job}/files/leak.csv", headers=viewer).status_code == 403
    assert client.get(f"/api/v1/jobs/{job}/files/..%2F..%2Fsecret.csv", headers=viewer).status_code in (403, 404)
    assert client.get(f"/api/v1/jobs/{job}/files/%2Fetc%2Fpasswd", headers=viewer).status_code in (403, 404)
    outside = store.submit(folders.recipes / "job.yaml")
    store.claim("test", 60)
    store.complete(store.get(outside), "test", {"output_path": str(root), "dataset_path": str(root / "secret.csv")})
    assert client.get(f"/api/v1/jobs/{outside}/files/secret.csv", headers=viewer).status_code == 403


def test_browser_login_needs_csrf_is_rate_limited_and_tokens_are_stored_hashed(service, tmp_path: Path):
    client, tokens, _folders, _root = service
    login_page = client.get("/login")
    token = login_page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"username": "mia", "password": PASSWORD, "next": "/"}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 403  # no CSRF token
    signed_in = client.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)
    assert signed_in.status_code == 303 and "synthforge_session" in signed_in.cookies
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    page = client.get("/recipes/new?start=job.yaml")
    assert page.status_code == 200 and "slow_copula" in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    # A form post on the session without its CSRF token is refused; with it, the job is submitted.
    recipe_text = (client.app.state.config.folders.recipes / "job.yaml").read_text()
    assert client.post("/jobs", data={"recipe_yaml": recipe_text}, follow_redirects=False).status_code == 403
    assert client.post("/api/v1/recipes/validate", json={"recipe_yaml": recipe_text}).status_code == 403
    assert client.post("/api/v1/recipes/validate", json={"recipe_yaml": recipe_text},
                       headers={"X-CSRF-Token": csrf}).json()["valid"]
    submitted = client.post("/jobs", data={"recipe_yaml": recipe_text, "csrf_token": csrf}, follow_redirects=False)
    assert submitted.status_code == 303 and submitted.headers["location"].startswith("/jobs/")

    # Only digests of tokens and sessions are stored: no secret is anywhere in the database file.
    database = (tmp_path / "jobs.db").read_bytes() + (tmp_path / "jobs.db-wal").read_bytes() \
        if (tmp_path / "jobs.db-wal").exists() else (tmp_path / "jobs.db").read_bytes()
    for secret in [*tokens.values(), signed_in.cookies["synthforge_session"], PASSWORD]:
        assert secret.encode() not in database

    # A flood of logins is limited (5 a minute here), right password or not.
    fresh = TestClient(client.app, base_url="https://testserver")
    answers = []
    for _ in range(8):
        token = fresh.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        answers.append(fresh.post("/login", data={"username": "ada", "password": "wrong password",
                                                  "csrf_token": token}, follow_redirects=False).status_code)
    assert answers[:4] == [303] * 4 and 429 in answers[4:]


def test_schedules_pause_resume_by_owner_or_admin(service):
    client, tokens, _folders, _root = service
    member, admin, viewer = bearer(tokens["member"]), bearer(tokens["admin"]), bearer(tokens["viewer"])
    made = client.post("/api/v1/jobs", json={"recipe": "job", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
                       headers=member)
    assert made.status_code == 201, made.text
    schedule = made.json()["schedule"]
    assert schedule["enabled"] and schedule["created_by"] == "mia"
    assert client.post(f"/api/v1/schedules/{schedule['id']}/pause", headers=viewer).status_code == 403
    assert client.post(f"/api/v1/schedules/{schedule['id']}/pause", headers=member).json()["enabled"] is False
    other = Accounts(client.app.state.store)
    other.add_user("max", "member", PASSWORD)
    stranger = bearer(other.create_token("max")[1])
    assert client.post(f"/api/v1/schedules/{schedule['id']}/resume", headers=stranger).status_code == 403
    assert client.post(f"/api/v1/schedules/{schedule['id']}/resume", headers=admin).json()["enabled"] is True
    assert client.post("/api/v1/jobs", json={"recipe": "job", "cron": "bad cron"}, headers=member).status_code == 400


def test_a_version_1_store_migrates_in_place(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        schema_migrations.create(connection)
        MIGRATIONS[0](connection)
        connection.execute(schema_migrations.insert().values(version=1, applied_at=0.0))
        connection.exec_driver_sql("INSERT INTO jobs (recipe, params, status, attempts, max_attempts, run_after, "
                                   "cancel_requested, created_at) VALUES ('old.yaml', '{}', 'queued', 0, 3, 0, 0, 0)")
    store = JobStore(url)
    assert store.migrate() == 3
    assert store.get(1).recipe == "old.yaml" and store.get(1).submitted_by is None
    Accounts(store).add_user("ada", "admin", PASSWORD)


def test_the_users_and_tokens_commands_bootstrap_an_admin(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from synthforge.cli import app

    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    runner = CliRunner()
    monkeypatch.setenv("SYNTHFORGE_PASSWORD", PASSWORD)
    assert runner.invoke(app, ["users", "add", "ada", "--role", "admin", "--store", store]).exit_code == 0
    refused = runner.invoke(app, ["users", "add", "bob", "--role", "root", "--store", store])
    assert refused.exit_code != 0 and "unknown role 'root'" in str(refused.exception)
    made = runner.invoke(app, ["tokens", "create", "ada", "--name", "ci", "--store", store])
    secret = made.stdout.strip().splitlines()[-1]
    assert made.exit_code == 0 and secret.startswith("sf_")
    accounts = Accounts(JobStore(store))
    assert accounts.authenticate_token(secret).name == "ada"
    assert accounts.authenticate_password("ada", PASSWORD).role == "admin"
    listed = runner.invoke(app, ["tokens", "list", "--store", store]).stdout
    assert "ci" in listed and secret not in listed
    assert runner.invoke(app, ["tokens", "revoke", "1", "--store", store]).exit_code == 0
    assert accounts.authenticate_token(secret) is None
    assert runner.invoke(app, ["users", "set", "ada", "--disable", "--store", store]).exit_code == 0
    assert accounts.authenticate_password("ada", PASSWORD) is None


def test_the_jobs_page_shows_a_requeued_job_as_such_and_pages_on(service):
    client, _tokens, folders, _root = service
    store = JobStore(client.app.state.store.url)
    requeued = store.submit(folders.recipes / "job.yaml")
    job = store.claim("vm:1:dead", 60)
    store.fail(job, "vm:1:dead", "lease of vm:1:dead expired: the worker stopped heartbeating", retry=True,
               retry_delay=0)
    for _ in range(105):
        store.submit(folders.recipes / "job.yaml")
    signed = TestClient(client.app, base_url="https://testserver")
    token = signed.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    signed.post("/login", data={"username": "vic", "password": PASSWORD, "csrf_token": token})
    first = signed.get("/fragments/jobs")
    assert first.status_code == 200 and "Older jobs" in first.text and f'data-job="{requeued}"' not in first.text
    older = signed.get("/?before=7")
    assert older.status_code == 200 and "queued again after attempt 1: lease of vm:1:dead expired" in older.text
    assert signed.get("/?status=queued").status_code == 200
