"""The service against hostile-but-realistic members (issue 38): no job or upload touches another's files,
bodies are capped, the API schema needs an account, refusals name no server path, the client address is the
socket's unless a trusted proxy forwards it, and a failed run's reports reach its owner."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from synthforge.jobs.store import JobStore
from synthforge.service.accounts import Accounts
from synthforge.service.app import ServiceConfig, create_app
from synthforge.service.folders import Folders

from .test_jobs import cli
from .test_service import PASSWORD, bearer, make_service


@pytest.fixture()
def service(tmp_path: Path):
    client, tokens, folders = make_service(tmp_path, f"sqlite:///{tmp_path / 'jobs.db'}")
    with client:
        yield client, tokens, folders, tmp_path


def drain(root: Path, url: str) -> None:
    """Run every queued job with a worker that exits once none is left."""
    cli("worker", "--store", url, "--plugins-dir", str(root / "plugins"), "--poll", "0.2", "--retry-delay", "0.2",
        "--drain", cwd=root)


def test_each_job_writes_only_its_own_folder_whatever_output_path_it_names(service):
    client, tokens, folders, root = service
    member, viewer = bearer(tokens["member"]), bearer(tokens["viewer"])
    recipe = yaml.safe_load((folders.recipes / "job.yaml").read_text())

    def submit(output_path: str, **changes) -> int:
        text = yaml.safe_dump({**recipe, "output": {**recipe["output"], "path": output_path}, **changes})
        answer = client.post("/api/v1/jobs", json={"recipe_yaml": text, "params": {"output.rows": 300}},
                             headers=member)
        assert answer.status_code == 201, answer.text
        return answer.json()["job"]["id"]

    first = submit("out/job")
    drain(root, client.app.state.store.url)
    own = client.get(f"/api/v1/jobs/{first}", headers=viewer).json()
    assert own["status"] == "succeeded" and own["output"] == f"outputs/job-{first}/job"
    before = {f["path"]: f["bytes"] for f in own["files"]}
    assert "data.parquet" in before
    manifest = json.loads(client.get(f"/api/v1/jobs/{first}/files/manifest.json", headers=viewer).content)

    # The same path as the first job (with another seed and format), the outputs root itself, and the first
    # job's own folder: each is written inside the new job's folder instead.
    same = submit("out/job", seed=7, output={**recipe["output"], "path": "out/job", "format": "csv"})
    whole_root = submit("out")
    intruder = submit(f"out/job-{first}/job", seed=8)
    parent = submit("out/..//out/.")
    drain(root, client.app.state.store.url)

    after = client.get(f"/api/v1/jobs/{first}", headers=viewer).json()
    assert {f["path"]: f["bytes"] for f in after["files"]} == before, "another job changed job 1's files"
    assert json.loads(client.get(f"/api/v1/jobs/{first}/files/manifest.json", headers=viewer).content) == manifest
    for job_id, name, dataset in ((same, "job", "data.csv"), (whole_root, "out", "data.parquet"),
                                  (intruder, "job", "data.parquet"), (parent, "out", "data.parquet")):
        job = client.get(f"/api/v1/jobs/{job_id}", headers=viewer).json()
        assert job["status"] == "succeeded" and job["output"] == f"outputs/job-{job_id}/{name}", job
        assert dataset in {f["path"] for f in job["files"]}
        preview = client.get(f"/api/v1/jobs/{job_id}/preview?rows=3", headers=viewer)
        assert preview.status_code == 200 and len(preview.json()["rows"]) == 3
        assert (folders.outputs / f"job-{job_id}" / name / dataset).is_file()
    assert sorted(p.name for p in folders.outputs.iterdir()) == sorted(
        f"job-{i}" for i in (first, same, whole_root, intruder, parent))
    seeds = json.loads(client.get(f"/api/v1/jobs/{intruder}/files/manifest.json", headers=viewer).content)
    assert seeds["seed"] == 8 and manifest["seed"] == 1


def test_a_schedules_jobs_each_get_their_own_folder(service):
    client, tokens, folders, _root = service
    made = client.post("/api/v1/jobs", json={"recipe": "job", "cron": "* * * * * *"}, headers=bearer(
        tokens["member"]))
    assert made.status_code == 201, made.text
    store = JobStore(client.app.state.store.url)
    created = store.enqueue_due(time.time() + 5) + store.enqueue_due(time.time() + 10)
    paths = [store.get(job_id).output_path for job_id in created]
    assert paths == [str(folders.outputs / f"job-{job_id}" / "job") for job_id in created]


def test_uploads_of_the_same_name_by_two_users_keep_both(service):
    client, tokens, folders, _root = service
    Accounts(client.app.state.store).add_user("max", "member", PASSWORD)
    other = bearer(Accounts(client.app.state.store).create_token("max")[1])
    mine = client.post("/api/v1/uploads", files={"file": ("t.csv", b"a\n1\n")}, headers=bearer(tokens["member"]))
    theirs = client.post("/api/v1/uploads", files={"file": ("t.csv", b"a\n2\n2\n")}, headers=other)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["path"] != theirs.json()["path"]
    # The returned path is what a recipe names: relative to the recipes folder, never the server's absolute path.
    assert not mine.json()["path"].startswith("/")
    assert (folders.recipes / mine.json()["path"]).read_bytes() == b"a\n1\n"
    assert (folders.recipes / theirs.json()["path"]).read_bytes() == b"a\n2\n2\n"
    listed = {f["path"] for f in client.get("/api/v1/uploads", headers=bearer(tokens["viewer"])).json()["files"]}
    assert listed == {mine.json()["path"], theirs.json()["path"]}


def test_bodies_and_uploads_past_their_caps_are_refused_with_413_and_leave_nothing(tmp_path: Path):
    folders = Folders(tmp_path / "recipes", tmp_path / "data", tmp_path / "out")
    app = create_app(ServiceConfig(store=f"sqlite:///{tmp_path / 'jobs.db'}", folders=folders,
                                   max_upload_bytes=64 << 10, max_body_bytes=4 << 10))
    accounts = Accounts(app.state.store)
    accounts.add_user("mia", "member", PASSWORD)
    member = bearer(accounts.create_token("mia")[1])
    client = TestClient(app, base_url="https://testserver")

    small = client.post("/api/v1/uploads", files={"file": ("ok.csv", b"a\n" + b"1\n" * 1000)}, headers=member)
    assert small.status_code == 201
    big = client.post("/api/v1/uploads", files={"file": ("big.csv", b"a\n" + b"1\n" * 50_000)}, headers=member)
    assert big.status_code == 413 and "--max-upload-mb" in big.json()["detail"] and "64 KiB" in big.json()["detail"]

    # Without a Content-Length (chunked), the cap holds as the bytes arrive.
    boundary = "synthforge-test"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"chunked.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(40):
            yield b"1\n" * 2048
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = client.post("/api/v1/uploads", content=chunks(), headers={
        **member, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.status_code == 413, streamed.text
    assert sorted(p.name for p in folders.uploads.rglob("*") if p.is_file()) == ["ok.csv"]

    text = yaml.safe_dump({"name": "x" * 8000, "source": {"path": "a.csv"}, "output": {"path": "../out/x"}})
    refused = client.post("/api/v1/recipes/validate", json={"recipe_yaml": text}, headers=member)
    assert refused.status_code == 413 and "--max-body-kb" in refused.json()["detail"]
    assert not list(folders.recipes.glob(".submitted-*"))


def asgi_post(app, path: str, headers: dict[str, str], chunks) -> tuple[int, bytes]:
    """POST a body to the ASGI app as a server streams it, one chunk per message (the test client would read the
    whole body first, hiding how much the app holds)."""
    import asyncio

    answered: dict = {"body": b""}
    pieces = iter(chunks)

    async def receive() -> dict:
        piece = next(pieces, None)
        return {"type": "http.request", "body": piece or b"", "more_body": piece is not None}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answered["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answered["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 443)}
    asyncio.run(app(scope, receive, send))
    return answered["status"], answered["body"]


def test_an_upload_streams_to_disk_in_bounded_memory(tmp_path: Path):
    folders = Folders(tmp_path / "recipes", tmp_path / "data", tmp_path / "out")
    app = create_app(ServiceConfig(store=f"sqlite:///{tmp_path / 'jobs.db'}", folders=folders))
    accounts = Accounts(app.state.store)
    accounts.add_user("mia", "member", PASSWORD)
    boundary, size = "synthforge-test", 64 << 20
    block = b"0123456789abcde\n" * 65536  # 1 MiB, the same object each time: only the app's copies count

    def chunks():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"wide.csv\"\r\n"
               f"Content-Type: text/csv\r\n\r\n").encode()
        for _ in range(size >> 20):
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**bearer(accounts.create_token("mia")[1]),
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    tracemalloc.start()
    try:
        status, body = asgi_post(app, "/api/v1/uploads", headers, chunks())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 201 and json.loads(body)["bytes"] == size
    assert peak < 16 << 20, f"a {size >> 20} MiB upload took {peak / (1 << 20):.1f} MiB of memory"
    # Without an account nothing of the body is read: 401 before the upload is spooled anywhere.
    sent = []

    def counted():
        for piece in chunks():
            sent.append(len(piece))
            yield piece

    status, _body = asgi_post(app, "/api/v1/uploads", {"Content-Type": headers["Content-Type"]}, counted())
    assert status == 401 and sum(sent) < 1 << 20, f"{sum(sent)} bytes read of an anonymous upload"
    # Past the cap, the stream is cut there: a server never reads (or stores) more than the cap.
    capped = create_app(ServiceConfig(store=f"sqlite:///{tmp_path / 'jobs.db'}", folders=folders,
                                      max_upload_bytes=8 << 20))
    status, body = asgi_post(capped, "/api/v1/uploads", headers, chunks())
    assert status == 413 and "8 MiB" in json.loads(body)["detail"]


def test_the_api_schema_and_docs_need_an_account(service):
    client, tokens, _folders, _root = service
    for path in ("/api/v1/openapi.json", "/api/v1/docs"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=bearer(tokens["viewer"])).status_code == 200, path
    docs = client.get("/api/v1/docs", headers={"Accept": "text/html"}, follow_redirects=False)
    assert docs.status_code == 303 and docs.headers["location"].startswith("/login")
    schema = client.get("/api/v1/openapi.json", headers=bearer(tokens["viewer"])).json()
    assert "/api/v1/jobs" in schema["paths"] and "/api/v1/openapi.json" not in schema["paths"]


def test_refusals_name_paths_relative_to_the_service_folders(service):
    client, tokens, folders, root = service
    member = bearer(tokens["member"])
    recipe = yaml.safe_load((folders.recipes / "job.yaml").read_text())
    (root / "secret.csv").write_text("a,b\n1,2\n")
    (folders.recipes / "escape").symlink_to(root)
    messages = []
    for changes in ({"source": {"path": "escape/secret.csv"}}, {"source": {"path": "../secret.csv"}},
                    {"output": {**recipe["output"], "path": "../../elsewhere"}}):
        answer = client.post("/api/v1/jobs", json={"recipe_yaml": yaml.safe_dump({**recipe, **changes})},
                             headers=member)
        assert answer.status_code in (400, 403), answer.text
        messages.append(answer.json()["detail"])
        verdict = client.post("/api/v1/recipes/validate", json={"recipe_yaml": yaml.safe_dump(
            {**recipe, **changes})}, headers=member).json()
        messages.append(verdict["error"])
    messages.append(client.post("/api/v1/jobs", json={"recipe": "nothing-here"}, headers=member).json()["detail"])
    messages.append(client.post("/api/v1/jobs", json={"recipe": "job", "params": {"source.path": "../secret.csv"}},
                                headers=member).json()["detail"])
    for message in messages:
        assert str(root) not in message, message
    assert "outside the service's folders (recipes, data, outputs)" in messages[0]
    assert "'escape/secret.csv'" in messages[0]


def test_a_deeply_nested_recipe_is_bad_input_not_a_server_error(service):
    client, tokens, folders, _root = service
    recipe = yaml.safe_load((folders.recipes / "job.yaml").read_text())
    deep = {**recipe, "constraints": ["(" * 5000 + "age" + ")" * 5000 + " >= 0"]}
    answer = client.post("/api/v1/jobs", json={"recipe_yaml": yaml.safe_dump(deep)}, headers=bearer(
        tokens["member"]))
    assert answer.status_code == 400, answer.text


def test_the_client_address_is_the_sockets_unless_a_trusted_proxy_forwards_it(tmp_path: Path):
    def service(trusted: list[str], client: tuple[str, int]) -> tuple[TestClient, Accounts]:
        folders = Folders(tmp_path / "recipes", tmp_path / "data", tmp_path / "out")
        app = create_app(ServiceConfig(store=f"sqlite:///{tmp_path / 'jobs.db'}", folders=folders,
                                       login_attempts_per_minute=3, forwarded_allow_ips=trusted))
        return TestClient(app, base_url="https://testserver", client=client), Accounts(app.state.store)

    def login(client: TestClient, forwarded: str, user: str) -> int:
        token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        return client.post("/login", data={"username": user, "password": "wrong password", "csrf_token": token},
                           headers={"X-Forwarded-For": forwarded}, follow_redirects=False).status_code

    # Not a trusted proxy: a new X-Forwarded-For each try neither resets the limit nor reaches the audit log.
    client, accounts = service([], ("203.0.113.9", 4000))
    answers = [login(client, f"198.51.100.{i}", f"user{i}") for i in range(6)]
    assert answers[:3] == [303] * 3 and answers[3:] == [429] * 3
    assert {entry["client"] for entry in accounts.audit(100)} == {"203.0.113.9"}

    # From the proxy named in --forwarded-allow-ips, the address it forwards is the client's.
    client, accounts = service(["10.0.0.0/8"], ("10.1.2.3", 4000))
    answers = [login(client, f"198.51.100.7, 10.0.0.{i}", f"other{i}") for i in range(4)]
    assert answers[:3] == [303] * 3 and answers[3] == 429
    assert login(client, "198.51.100.8", "someone") == 303
    assert {"198.51.100.7", "198.51.100.8"} <= {entry["client"] for entry in accounts.audit(100)}
    with pytest.raises(Exception, match="forwarded-allow-ips"):
        service(["not-an-address"], ("10.1.2.3", 4000))


def test_serve_leaves_proxy_headers_to_the_app(tmp_path: Path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from synthforge.cli import app

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **options: seen.update(options, app=application))
    result = CliRunner().invoke(app, ["serve", "--store", f"sqlite:///{tmp_path / 'jobs.db'}", "--recipes",
                                      str(tmp_path / "r"), "--data", str(tmp_path / "d"), "--outputs",
                                      str(tmp_path / "o"), "--forwarded-allow-ips", "10.0.0.1",
                                      "--max-upload-mb", "5", "--max-body-kb", "64"])
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is False
    config = seen["app"].state.config
    assert config.forwarded_allow_ips == ["10.0.0.1"]
    assert (config.max_upload_bytes, config.max_body_bytes) == (5 << 20, 64 << 10)


def test_a_failed_runs_reports_reach_its_owner_from_the_api_and_the_web(service):
    client, tokens, folders, root = service
    member, viewer, admin = bearer(tokens["member"]), bearer(tokens["viewer"]), bearer(tokens["admin"])
    recipe = yaml.safe_load((folders.recipes / "job.yaml").read_text())
    gated = {**recipe, "checks": [{"name": "column_shapes", "min": 1.5, "on_fail": "error"}]}
    job_id = client.post("/api/v1/jobs", json={"recipe_yaml": yaml.safe_dump(gated), "params": {
        "output.rows": 300}}, headers=member).json()["job"]["id"]
    drain(root, client.app.state.store.url)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=member).json()
    assert job["status"] == "failed" and job["attempts"] == 1
    assert str(root) not in job["error"] and f"outputs/job-{job_id}/job.failed" in job["error"]
    assert {"report.html", "report.json"} <= {f["path"] for f in job["files"]}
    logs = client.get(f"/api/v1/jobs/{job_id}/logs", headers=member).json()["lines"]
    assert logs and not any(str(root) in line["line"] for line in logs)
    report = client.get(f"/api/v1/jobs/{job_id}/files/report.html", headers=member)
    assert report.status_code == 200 and "sandbox" in report.headers["content-security-policy"]
    assert client.get(f"/api/v1/jobs/{job_id}/files/report.json", headers=admin).status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}/files/report.html", headers=viewer).status_code == 403
    assert client.get(f"/api/v1/jobs/{job_id}", headers=viewer).json()["files"] == []
    assert client.get(f"/api/v1/jobs/{job_id}/preview", headers=member).status_code == 404

    web = TestClient(client.app, base_url="https://testserver")
    token = web.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    web.post("/login", data={"username": "mia", "password": PASSWORD, "csrf_token": token})
    page = web.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and f"/api/v1/jobs/{job_id}/files/report.html" in page.text
    assert web.get(f"/api/v1/jobs/{job_id}/files/report.html").status_code == 200


def test_a_damaged_store_answers_503_without_a_traceback(tmp_path: Path):
    client, tokens, _folders = make_service(tmp_path, f"sqlite:///{tmp_path / 'jobs.db'}")
    with client:
        assert client.get("/api/v1/jobs", headers=bearer(tokens["viewer"])).status_code == 200
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"jobs.db{suffix}").unlink(missing_ok=True)
        (tmp_path / "jobs.db").write_bytes(b"not a database, whatever it was " * 512)
        answer = client.get("/api/v1/jobs", headers=bearer(tokens["viewer"]))
        assert answer.status_code == 503 and "damaged" in answer.json()["detail"]
        assert str(tmp_path) not in answer.text
        posted = client.post("/api/v1/jobs", json={"recipe": "job"}, headers=bearer(tokens["member"]))
        assert posted.status_code == 503 and "damaged" in posted.json()["detail"]
