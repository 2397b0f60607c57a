"""The service: an HTTP API (``/api/v1``, OpenAPI at ``/api/v1/openapi.json``) and a dashboard over the job store.

``create_app(ServiceConfig(...))`` builds the ASGI app that ``synthforge serve``
runs with uvicorn. It reads and writes the same job store the CLI and the workers
use; workers run as they do without it (``synthforge worker``), or one runs inside
the server with ``serve --worker``.

Access: nothing but ``/health`` and the login page is served without an account
(the OpenAPI schema and its browsable docs need one too).
A request carries an API token (``Authorization: Bearer sf_…``) or a browser
session cookie; a cookie-borne request that changes state must also carry the
session's CSRF token (the ``csrf_token`` form field or the ``X-CSRF-Token``
header). Every state-changing request is written to the audit log with who made
it and what it was answered, from the socket's address (or, only from a proxy
named in ``forwarded_allow_ips``, the address it forwards).

Each job writes only its own folder, ``<outputs>/job-<id>/<its recipe's output
name>``, whatever ``output.path`` its recipe names; each user's uploads go to their
own folder. Request bodies are capped (``max_body_bytes``; uploads
``max_upload_bytes``) and answered 413 past the cap, read as they stream in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile as StarletteUploadFile

from synthforge.errors import SynthForgeError
from synthforge.jobs.store import STATUSES, Job, JobStore, Schedule, StoreDamaged
from synthforge.service.accounts import ROLES, Accounts, LoginLimiter, Session, User
from synthforge.service.folders import Folders, PathRefused

API = "/api/v1"
SESSION_COOKIE = "synthforge_session"
LOGIN_CSRF_COOKIE = "synthforge_login_csrf"
HERE = Path(__file__).parent
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# POSTs that change nothing (a body too large for a query string), left out of the audit log.
_READ_ONLY_POSTS = {f"{API}/recipes/validate"}
_FINISHED = {"succeeded", "failed", "cancelled"}
_UPLOAD_PATHS = {f"{API}/uploads", "/uploads"}
# The upload routes read their form themselves, after the account check (FastAPI reads a declared File before
# any dependency runs: an anonymous client could make the server spool a whole upload); this keeps the schema.
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}
MiB = 1 << 20


@dataclass
class ServiceConfig:
    store: str
    folders: Folders
    plugins_dir: Path | None = None
    #: set the cookie's Secure flag (browsers then send it over https only, and to http://localhost)
    secure_cookies: bool = True
    login_attempts_per_minute: int = 10
    #: log lines a page or an API call returns at most
    log_limit: int = 5000
    #: the largest upload (``POST /api/v1/uploads``, the Upload form) and the largest other request body, in bytes
    max_upload_bytes: int = 1024 * MiB
    max_body_bytes: int = 1 * MiB
    #: proxies whose X-Forwarded-For is believed (their socket address); from anyone else it is ignored
    forwarded_allow_ips: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Caller:
    """Who made the request and how: by token (no CSRF needed) or by a browser session."""

    def __init__(self, user: User, session: Session | None = None) -> None:
        self.user, self.session = user, session


# --- request bodies ------------------------------------------------------------------------------


class JobRequest(BaseModel):
    recipe: str | None = Field(None, description="A recipe's name in the recipes folder.")
    recipe_yaml: str | None = Field(None, description="A recipe's YAML text; paths relative to the recipes folder.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides, e.g. {'generator.params.epochs': 5}.")
    max_attempts: int = Field(3, ge=1, le=20)
    cron: str | None = Field(None, description="Make it a schedule: a cron expression (5 fields, or 6 with seconds).")
    timezone: str = Field("UTC", description="The schedule's IANA time zone.")


class ValidateRequest(BaseModel):
    recipe_yaml: str
    params: dict[str, Any] = Field(default_factory=dict)


class TokenRequest(BaseModel):
    name: str = "token"
    user: str | None = Field(None, description="Whose token (admins only; default: yours).")


class UserRequest(BaseModel):
    name: str
    role: str = "viewer"
    password: str | None = None


class UserChange(BaseModel):
    role: str | None = None
    password: str | None = None
    disabled: bool | None = None


# --- the app ----------------------------------------------------------------------------------------


def create_app(config: ServiceConfig) -> FastAPI:
    store = JobStore(config.store)
    accounts = Accounts(store)
    limiter = LoginLimiter(attempts=config.login_attempts_per_minute, window=60.0)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    templates.env.filters["duration"] = _duration
    folders = config.folders

    # The schema and its docs are served by the routes below, behind an account like the API they describe.
    app = FastAPI(title="SynthForge", version=_version(), openapi_url=None, docs_url=None, redoc_url=None)
    app.state.config, app.state.store, app.state.accounts = config, store, accounts
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(_AuditMiddleware, accounts=accounts)
    app.add_middleware(_BodyLimits, uploads=config.max_upload_bytes, others=config.max_body_bytes)
    # Outermost: the limiter and the audit log read the address it settles (checked now, not at the first request).
    _proxy_networks(config.forwarded_allow_ips)
    app.add_middleware(_ClientAddress, trusted=config.forwarded_allow_ips)

    @app.exception_handler(SynthForgeError)
    async def _bad_input(request: Request, error: SynthForgeError) -> Response:
        status = 403 if isinstance(error, PathRefused) else 404 if str(error).startswith("there is no") else 400
        message = folders.redact(str(error))
        if isinstance(error, StoreDamaged):  # the server's fault, not the request's; its file is for the admin
            print(f"error: {error}", file=sys.stderr, flush=True)
            status, message = 503, "the job store is damaged; the server's log says which file and what to do."
        if _wants_html(request):
            return templates.TemplateResponse(request, "error.html", {"message": message, "caller": None},
                                              status_code=status)
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 401 and _wants_html(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        headers = dict(error.headers or {})
        if error.status_code == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="synthforge"')
        if _wants_html(request):
            return templates.TemplateResponse(request, "error.html", {"message": error.detail, "caller": None},
                                              status_code=error.status_code, headers=headers)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)

    # --- who is asking ----------------------------------------------------------------------------

    async def caller(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        found: Caller | None = None
        if header.lower().startswith("bearer "):
            user = await asyncio.to_thread(accounts.authenticate_token, header[7:].strip())
            if user is None:
                raise HTTPException(401, "the API token is unknown, revoked or its user disabled.")
            found = Caller(user)
        elif cookie := request.cookies.get(SESSION_COOKIE):
            session = await asyncio.to_thread(accounts.session, cookie)
            if session is not None:
                found = Caller(session.user, session)
                if request.method in _UNSAFE:
                    sent = request.headers.get("x-csrf-token")
                    if sent is None and "form" in request.headers.get("content-type", ""):
                        sent = str((await request.form()).get("csrf_token", ""))
                    if not sent or not secrets.compare_digest(sent, session.csrf_token):
                        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again.")
        if found is None:
            raise HTTPException(401, "sign in (/login) or send an API token: Authorization: Bearer sf_….")
        request.scope["synthforge.actor"]["name"] = found.user.name
        return found

    def role(needed: str) -> Any:
        async def check(found: Caller = Depends(caller)) -> Caller:
            if not found.user.can(needed):
                raise HTTPException(403, f"this needs the {needed} role; {found.user.name} is a {found.user.role}.")
            return found
        return Depends(check)

    viewer, member, admin = role("viewer"), role("member"), role("admin")

    # --- what the routes share ----------------------------------------------------------------------

    def load_checked(path: Path, params: dict[str, Any]) -> Any:
        from synthforge.plugins import get_plugin_manager
        from synthforge.recipe import load_recipe

        pm = get_plugin_manager(plugins_dir=config.plugins_dir)
        try:
            loaded = load_recipe(path, pm=pm, overrides=params)
        except RecursionError:  # the same input fails the same way every time: bad input, not a crash
            raise SynthForgeError("the recipe nests too deeply to read (a rule or a value thousands of levels "
                                  "deep); write it flatter.") from None
        folders.check_recipe(loaded)
        return loaded

    def submit(body: JobRequest, user: User) -> dict[str, Any]:
        if (body.recipe is None) == (body.recipe_yaml is None):
            raise SynthForgeError("send either `recipe` (a name in the recipes folder) or `recipe_yaml` (its text).")
        if body.recipe is not None:
            path = folders.named_recipe(body.recipe)
            loaded = load_checked(path, body.params)
        else:
            assert body.recipe_yaml is not None
            loaded = _check_text(body.recipe_yaml, body.params, folders, load_checked)
            path = folders.save_submitted(body.recipe_yaml)
        # The job writes <outputs>/job-<id>/<name> and nothing else, whatever folder its recipe names: the outputs
        # root, another job's folder, or a path another job names too.
        job_output = (str(folders.outputs), _output_name(loaded.output.path))
        if body.cron:
            schedule_id = store.add_schedule(path, body.cron, timezone=body.timezone, params=body.params,
                                             max_attempts=body.max_attempts, created_by=user.name,
                                             job_output=job_output)
            return {"schedule": schedule_view(store.get_schedule(schedule_id))}
        job_id = store.submit(path, body.params, max_attempts=body.max_attempts, submitted_by=user.name,
                              job_output=job_output)
        return {"job": job_view(store.get(job_id))}

    def job_view(job: Job, *, detail: bool = False, user: User | None = None) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": job.id, "status": job.status, "recipe": _recipe_label(job.recipe, folders),
            "params": job.params, "attempts": job.attempts, "max_attempts": job.max_attempts,
            "submitted_by": job.submitted_by, "schedule_id": job.schedule_id, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at,
            "error": folders.redact(job.error) if job.error else job.error,
            "cancel_requested": job.cancel_requested, "progress": progress_view(job),
            "output": folders.describe(job.output_path) if job.output_path else None,
            # a run that wrote its dataset while some gates only warned is not a plain success: say which
            "warnings": [c["name"] for c in (job.result or {}).get("checks", []) if not c.get("passed", True)],
        }
        if detail:
            result = job.result or {}
            view |= {"checks": result.get("checks", []), "rows": result.get("rows"),
                     "timings": result.get("timings"), "files": output_files(job, user)}
        return view

    def logs_after(job_id: int, after: int, limit: int) -> list[tuple[int, int, float, str]]:
        """The job's log lines, their paths written relative to the service's folders."""
        return [(i, attempt, at, folders.redact(line)) for i, attempt, at, line in
                store.logs_after(job_id, after, limit=limit)]

    def output_folder(job: Job, user: User | None = None) -> Path:
        """The folder of the job's files: its output once it succeeded; once a gate failed it, the reports kept
        in ``<output>.failed/``, for the job's owner (or an admin) only."""
        if job.status == "failed" and job.output_path:
            failed = Path(job.output_path).with_name(Path(job.output_path).name + ".failed")
            if failed.is_dir():
                if user is None or not (user.can("admin") or user.name == job.submitted_by):
                    raise HTTPException(403, f"job {job.id} failed; its reports are for "
                                             f"{job.submitted_by or 'an admin'} (who submitted it) and admins.")
                return folders.inside(failed, [folders.outputs], f"job {job.id}'s reports")
        if job.status != "succeeded" or not job.result or not job.result.get("output_path"):
            raise SynthForgeError(f"there is no output of job {job.id}: it is {job.status}.")
        # A service job's own folder; an older job's (or a CLI one's) where its result says it wrote.
        written = job.output_path or job.result["output_path"]
        return folders.inside(Path(written), [folders.outputs], f"job {job.id}'s output")

    def output_files(job: Job, user: User | None = None) -> list[dict[str, Any]]:
        try:
            root = output_folder(job, user)
        except (SynthForgeError, HTTPException):
            return []
        listed = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                listed.append({"path": relative.as_posix(), "bytes": path.stat().st_size,
                               "kind": _file_kind(relative)})
        return listed

    def schedule_view(schedule: Schedule) -> dict[str, Any]:
        return {"id": schedule.id, "recipe": _recipe_label(schedule.recipe, folders), "cron": schedule.cron,
                "timezone": schedule.timezone, "enabled": schedule.enabled, "next_run_at": schedule.next_run_at,
                "params": schedule.params, "created_by": schedule.created_by, "created_at": schedule.created_at}

    def may_change_schedule(user: User, schedule: Schedule) -> None:
        if not user.can("admin") and schedule.created_by != user.name:
            raise HTTPException(403, f"schedule {schedule.id} is {schedule.created_by or 'nobody'}'s; only its "
                                     f"owner or an admin can change it.")

    # --- the API ------------------------------------------------------------------------------------

    api = APIRouter(prefix=API)

    @app.get("/health", include_in_schema=False)
    @api.get("/health")
    def health() -> dict[str, Any]:
        """Whether the service and its store answer; needs no account."""
        store.list_jobs(limit=1)
        return {"status": "ok", "version": _version()}

    @api.get("/me")
    def me(found: Caller = viewer) -> dict[str, Any]:
        return {"name": found.user.name, "role": found.user.role}

    @api.get("/jobs")
    def list_jobs(status: str | None = None, schedule_id: int | None = None, submitted_by: str | None = None,
                  limit: int = 50, before: int | None = None, _: Caller = viewer) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise SynthForgeError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}.")
        found = store.list_jobs(status, min(max(limit, 1), 500), schedule_id=schedule_id,
                                submitted_by=submitted_by, before_id=before)
        return {"jobs": [job_view(job) for job in found]}

    @api.post("/jobs", status_code=201)
    def create_job(body: JobRequest, found: Caller = member) -> dict[str, Any]:
        """Submit a job (or, with ``cron``, a schedule) from a named recipe or a recipe's text."""
        return submit(body, found.user)

    @api.get("/jobs/{job_id}")
    def get_job(job_id: int, found: Caller = viewer) -> dict[str, Any]:
        return job_view(store.get(job_id), detail=True, user=found.user)

    @api.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: int, _: Caller = member) -> dict[str, Any]:
        return {"id": job_id, "status": store.cancel(job_id)}

    @api.post("/jobs/{job_id}/retry")
    def retry_job(job_id: int, _: Caller = member) -> dict[str, Any]:
        store.retry(job_id)
        return job_view(store.get(job_id))

    @api.get("/jobs/{job_id}/logs")
    def job_logs(job_id: int, after: int = 0, _: Caller = viewer) -> dict[str, Any]:
        lines = logs_after(job_id, after, config.log_limit)
        return {"lines": [{"id": i, "attempt": a, "at": at, "line": line} for i, a, at, line in lines]}

    @api.get("/jobs/{job_id}/events")
    async def job_events(job_id: int, request: Request, after: int = 0, _: Caller = viewer) -> StreamingResponse:
        """Server-sent events: ``log`` (each new line), ``job`` (status and progress when they change); the
        stream ends after the job has finished and its last lines went out."""
        await asyncio.to_thread(store.get, job_id)

        async def events() -> Any:
            last_id, last_state = after, None
            while True:
                job = await asyncio.to_thread(store.get, job_id)
                lines = await asyncio.to_thread(logs_after, job_id, last_id, 500)
                for line_id, attempt, at, line in lines:
                    last_id = line_id
                    yield _sse("log", {"id": line_id, "attempt": attempt, "at": at, "line": line}, line_id)
                state = job_view(job)
                if state != last_state:
                    last_state = state
                    yield _sse("job", state)
                if job.status in _FINISHED and not lines:
                    yield _sse("end", {"status": job.status})
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @api.get("/jobs/{job_id}/files")
    def job_files(job_id: int, found: Caller = viewer) -> dict[str, Any]:
        job = store.get(job_id)
        output_folder(job, found.user)
        return {"files": output_files(job, found.user)}

    @api.get("/jobs/{job_id}/files/{name:path}")
    def job_file(job_id: int, name: str, found: Caller = viewer) -> Response:
        root = output_folder(store.get(job_id), found.user)
        path = folders.inside(root / name, [root], f"file {name!r}", shown=name)
        if not path.is_file():
            raise SynthForgeError(f"there is no file {name!r} in job {job_id}'s output.")
        headers = {"X-Content-Type-Options": "nosniff"}
        if path.suffix == ".html":  # a report: shown in a sandboxed frame, never with the service's rights
            headers["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
            return FileResponse(path, media_type="text/html", headers=headers)
        return FileResponse(path, filename=path.name, headers=headers)

    @api.get("/jobs/{job_id}/preview")
    def job_preview(job_id: int, rows: int = 20, table: str | None = None, _: Caller = viewer) -> dict[str, Any]:
        """The first rows of the job's dataset (of one table, for related tables), as columns and rows."""
        job = store.get(job_id)
        if job.status != "succeeded":
            raise SynthForgeError(f"there is no dataset of job {job.id}: it is {job.status}.")
        root = output_folder(job)
        return _preview(root, Path(job.result["dataset_path"]), min(max(rows, 1), 1000), table, folders)

    @api.get("/schedules")
    def list_schedules(_: Caller = viewer) -> dict[str, Any]:
        return {"schedules": [schedule_view(s) for s in store.list_schedules()]}

    @api.get("/schedules/{schedule_id}")
    def get_schedule(schedule_id: int, _: Caller = viewer) -> dict[str, Any]:
        jobs = store.list_jobs(schedule_id=schedule_id, limit=50)
        return {**schedule_view(store.get_schedule(schedule_id)), "jobs": [job_view(job) for job in jobs]}

    @api.post("/schedules/{schedule_id}/pause")
    def pause_schedule(schedule_id: int, found: Caller = member) -> dict[str, Any]:
        may_change_schedule(found.user, store.get_schedule(schedule_id))
        store.set_schedule_enabled(schedule_id, False)
        return schedule_view(store.get_schedule(schedule_id))

    @api.post("/schedules/{schedule_id}/resume")
    def resume_schedule(schedule_id: int, found: Caller = member) -> dict[str, Any]:
        may_change_schedule(found.user, store.get_schedule(schedule_id))
        store.set_schedule_enabled(schedule_id, True)
        return schedule_view(store.get_schedule(schedule_id))

    @api.get("/recipes")
    def list_recipes(_: Caller = viewer) -> dict[str, Any]:
        return {"recipes": folders.list_recipes(), "folder": "recipes"}

    @api.get("/recipes/schema")
    def recipe_schema(_: Caller = viewer) -> dict[str, Any]:
        from synthforge.recipe import recipe_json_schema

        return recipe_json_schema()

    @api.get("/recipes/{name}")
    def get_recipe(name: str, _: Caller = viewer) -> dict[str, Any]:
        return {"name": name, "recipe_yaml": folders.named_recipe(name).read_text()}

    @api.post("/recipes/validate")
    def validate_recipe(body: ValidateRequest, _: Caller = viewer) -> dict[str, Any]:
        """Check a recipe's text as a submit would (schema, plugins, paths); never runs it."""
        from synthforge.engine import header_problems

        try:
            loaded = _check_text(body.recipe_yaml, body.params, folders, load_checked)
        except SynthForgeError as error:
            return {"valid": False, "error": folders.redact(str(error))}
        problems = header_problems(loaded)  # a `target:` that is not a column is no valid recipe
        if problems:
            return {"valid": False, "error": folders.redact("\n".join(problems))}
        return {"valid": True, "name": loaded.name, "generator": loaded.generator.name,
                "output": f"outputs/job-<id>/{_output_name(loaded.output.path)}"}

    @api.post("/uploads", status_code=201, openapi_extra=_UPLOAD_BODY)
    async def upload(request: Request, found: Caller = member) -> dict[str, Any]:
        """Put a source table in your own folder of the data folder's uploads (a file of yours of the same name
        is replaced; no one else's ever is); recipes then name it by the returned path."""
        return await store_upload(request, found)

    async def store_upload(request: Request, found: Caller) -> dict[str, Any]:
        """The form's ``file`` put in the caller's uploads; the form is read only now, after the caller was let
        in, never for an anonymous request."""
        form = await request.form()
        try:
            file = form.get("file")
            if not isinstance(file, StarletteUploadFile):
                raise SynthForgeError("send the table as a multipart/form-data field named `file`.")
            return await _write_upload(file, folders.upload_path(Path(file.filename or "").name, found.user.name,
                                                                 found.user.id), folders)
        finally:
            await form.close()

    @api.get("/uploads")
    def uploads(_: Caller = viewer) -> dict[str, Any]:
        return {"files": [{"path": _upload_reference(p, folders), "bytes": p.stat().st_size}
                          for p in sorted(folders.uploads.rglob("*"))
                          if p.is_file() and not any(part.startswith(".") for part in p.relative_to(
                              folders.uploads).parts)]}

    @api.get("/plugins")
    def plugins(_: Caller = viewer) -> dict[str, Any]:
        from synthforge.plugins import get_plugin_manager

        return get_plugin_manager(plugins_dir=config.plugins_dir).describe()

    @api.get("/tokens")
    def list_tokens(user: str | None = None, found: Caller = viewer) -> dict[str, Any]:
        if user != found.user.name and not found.user.can("admin"):
            user = found.user.name
        return {"tokens": accounts.list_tokens(user)}

    @api.post("/tokens", status_code=201)
    def create_token(body: TokenRequest, found: Caller = viewer) -> dict[str, Any]:
        """A new API token; its secret is in this answer only."""
        owner = body.user or found.user.name
        if owner != found.user.name and not found.user.can("admin"):
            raise HTTPException(403, "only an admin creates tokens for another user.")
        token_id, secret = accounts.create_token(owner, body.name)
        return {"id": token_id, "user": owner, "name": body.name, "token": secret}

    @api.delete("/tokens/{token_id}")
    def revoke_token(token_id: int, found: Caller = viewer) -> dict[str, Any]:
        owner = accounts.token_owner(token_id)
        if owner is None:
            raise SynthForgeError(f"there is no token {token_id}.")
        if owner != found.user.name and not found.user.can("admin"):
            raise HTTPException(403, "only an admin revokes another user's token.")
        accounts.revoke_token(token_id)
        return {"id": token_id, "revoked": True}

    @api.get("/users")
    def list_users(_: Caller = admin) -> dict[str, Any]:
        return {"users": [vars(user) for user in accounts.list_users()]}

    @api.post("/users", status_code=201)
    def add_user(body: UserRequest, _: Caller = admin) -> dict[str, Any]:
        return vars(accounts.add_user(body.name, body.role, body.password))

    @api.patch("/users/{name}")
    def change_user(name: str, body: UserChange, found: Caller = admin) -> dict[str, Any]:
        if name == found.user.name and (body.disabled or (body.role and body.role != "admin")):
            raise SynthForgeError("an admin cannot disable or demote themself; another admin can.")
        if body.role is not None:
            accounts.set_role(name, body.role)
        if body.password is not None:
            accounts.set_password(name, body.password)
        if body.disabled is not None:
            accounts.set_disabled(name, body.disabled)
        user = accounts.user(name)
        assert user is not None
        return vars(user)

    @api.get("/audit")
    def audit(limit: int = 200, actor: str | None = None, _: Caller = admin) -> dict[str, Any]:
        return {"entries": accounts.audit(min(max(limit, 1), 5000), actor)}

    @api.get("/openapi.json", include_in_schema=False)
    def openapi_schema(_: Caller = viewer) -> dict[str, Any]:
        return app.openapi()

    @api.get("/docs", include_in_schema=False)
    def openapi_docs(_: Caller = viewer) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{API}/openapi.json", title="SynthForge API")

    app.include_router(api)

    # --- the dashboard ----------------------------------------------------------------------------

    def page(request: Request, name: str, found: Caller | None, status_code: int = 200, **values: Any) -> Response:
        values |= {"caller": found, "csrf": found.session.csrf_token if found and found.session else "",
                   "statuses": STATUSES, "version": _version()}
        return templates.TemplateResponse(request, name, values, status_code=status_code,
                                          headers={"Cache-Control": "no-store"})

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/", error: str | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", None, next=_local(next), error=error, login_csrf=token)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=config.secure_cookies, max_age=1800)
        return response

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(...), password: str = Form(...),
              csrf_token: str = Form(""), next: str = Form("/")) -> Response:
        client = request.client.host if request.client else "unknown"  # settled by _ClientAddress
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(csrf_token, expected):
            raise HTTPException(403, "missing or wrong CSRF token: reload the login page and try again.")
        wait = limiter.allow(f"client:{client}", f"user:{username}")
        if wait:
            raise HTTPException(429, f"too many login attempts; try again in {wait:.0f} s.",
                                headers={"Retry-After": str(int(wait) + 1)})
        user = accounts.authenticate_password(username, password)
        if user is None:
            request.scope["synthforge.actor"]["name"] = None
            return RedirectResponse(f"/login?error=1&next={_local(next)}", status_code=303)
        request.scope["synthforge.actor"]["name"] = user.name
        secret, _session = accounts.open_session(user)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="lax", secure=config.secure_cookies,
                            max_age=12 * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, _: Caller = viewer) -> Response:
        accounts.close_session(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", include_in_schema=False)
    def jobs_page(request: Request, status: str | None = None, before: int | None = None,
                  found: Caller = viewer) -> Response:
        return page(request, "jobs.html", found, status=status or "", before=before or "",
                    jobs=jobs_rows(status, before))

    def jobs_rows(status: str | None, before: int | None = None) -> list[dict[str, Any]]:
        return [job_view(job) for job in store.list_jobs(status if status in STATUSES else None, 100,
                                                         before_id=before)]

    @app.get("/fragments/jobs", include_in_schema=False)
    def jobs_fragment(request: Request, status: str | None = None, before: int | None = None,
                      found: Caller = viewer) -> Response:
        return page(request, "_jobs_table.html", found, status=status or "", jobs=jobs_rows(status, before))

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(request: Request, job_id: int, found: Caller = viewer) -> Response:
        job = store.get(job_id)
        logs = logs_after(job_id, 0, config.log_limit)
        return page(request, "job.html", found, job=job_view(job, detail=True, user=found.user), logs=logs,
                    last_log=logs[-1][0] if logs else 0)

    @app.get("/fragments/jobs/{job_id}", include_in_schema=False)
    def job_fragment(request: Request, job_id: int, found: Caller = viewer) -> Response:
        return page(request, "_job_summary.html", found,
                    job=job_view(store.get(job_id), detail=True, user=found.user))

    @app.post("/jobs", include_in_schema=False)
    def submit_form(request: Request, recipe_yaml: str = Form(""), recipe: str = Form(""), cron: str = Form(""),
                    timezone: str = Form("UTC"), params: str = Form(""), found: Caller = member) -> Response:
        overrides = json.loads(params) if params.strip() else {}
        body = JobRequest(recipe=recipe or None, recipe_yaml=recipe_yaml if not recipe else None,
                          params=overrides, cron=cron or None, timezone=timezone or "UTC")
        try:
            made = submit(body, found.user)
        except SynthForgeError as error:
            return page(request, "editor.html", found, status_code=400, recipe_yaml=recipe_yaml,
                        error=folders.redact(str(error)),
                        recipes=folders.list_recipes(), cron=cron, timezone=timezone, params=params)
        if "schedule" in made:
            return RedirectResponse(f"/schedules/{made['schedule']['id']}", status_code=303)
        return RedirectResponse(f"/jobs/{made['job']['id']}", status_code=303)

    @app.post("/jobs/{job_id}/{action}", include_in_schema=False)
    def job_action(job_id: int, action: str, found: Caller = member) -> Response:
        if action == "cancel":
            store.cancel(job_id)
        elif action == "retry":
            store.retry(job_id)
        else:
            raise HTTPException(404, f"no action {action!r}: cancel or retry.")
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    @app.get("/recipes/new", include_in_schema=False)
    def editor(request: Request, start: str | None = None, uploaded: str | None = None,
               found: Caller = member) -> Response:
        text = folders.named_recipe(start).read_text() if start else _STARTER_RECIPE
        return page(request, "editor.html", found, recipe_yaml=text, error=None, recipes=folders.list_recipes(),
                    cron="", timezone="UTC", params="", start=start or "", uploaded=uploaded)

    @app.post("/uploads", include_in_schema=False)
    async def upload_form(request: Request, found: Caller = member) -> Response:
        stored = await store_upload(request, found)
        return RedirectResponse(f"/recipes/new?uploaded={stored['path']}", status_code=303)

    @app.get("/schedules", include_in_schema=False)
    def schedules_page(request: Request, found: Caller = viewer) -> Response:
        return page(request, "schedules.html", found, schedules=[schedule_view(s) for s in store.list_schedules()])

    @app.get("/schedules/{schedule_id}", include_in_schema=False)
    def schedule_page(request: Request, schedule_id: int, found: Caller = viewer) -> Response:
        schedule = schedule_view(store.get_schedule(schedule_id))
        jobs = [job_view(job) for job in store.list_jobs(schedule_id=schedule_id, limit=100)]
        return page(request, "schedule.html", found, schedule=schedule, jobs=jobs)

    @app.post("/schedules/{schedule_id}/{action}", include_in_schema=False)
    def schedule_action(schedule_id: int, action: str, found: Caller = member) -> Response:
        if action not in ("pause", "resume"):
            raise HTTPException(404, f"no action {action!r}: pause or resume.")
        may_change_schedule(found.user, store.get_schedule(schedule_id))
        store.set_schedule_enabled(schedule_id, action == "resume")
        return RedirectResponse(f"/schedules/{schedule_id}", status_code=303)

    @app.get("/plugins", include_in_schema=False)
    def plugins_page(request: Request, found: Caller = viewer) -> Response:
        from synthforge.plugins import get_plugin_manager

        described = get_plugin_manager(plugins_dir=config.plugins_dir).describe()
        return page(request, "plugins.html", found, plugins=described["plugins"], errors=described["errors"])

    def account(request: Request, found: Caller, new_token: str | None = None) -> Response:
        is_admin = found.user.can("admin")
        return page(request, "account.html", found, tokens=accounts.list_tokens(None if is_admin else found.user.name),
                    users=accounts.list_users() if is_admin else [], roles=ROLES,
                    audit=accounts.audit(100) if is_admin else [], new_token=new_token)

    @app.get("/account", include_in_schema=False)
    def account_page(request: Request, found: Caller = viewer) -> Response:
        return account(request, found)

    @app.post("/account/tokens", include_in_schema=False)
    def account_new_token(request: Request, name: str = Form("token"), found: Caller = viewer) -> Response:
        _token_id, secret = accounts.create_token(found.user.name, name)
        return account(request, found, new_token=secret)

    @app.post("/account/tokens/{token_id}/revoke", include_in_schema=False)
    def account_revoke_token(token_id: int, found: Caller = viewer) -> Response:
        revoke_token(token_id, found)
        return RedirectResponse("/account", status_code=303)

    @app.post("/account/users", include_in_schema=False)
    def account_add_user(name: str = Form(...), role: str = Form("viewer"), password: str = Form(...),
                         _: Caller = admin) -> Response:
        accounts.add_user(name, role, password)
        return RedirectResponse("/account", status_code=303)

    return app


# --- helpers ---------------------------------------------------------------------------------------------


class _AuditMiddleware:
    """Records every state-changing request (who, what, the answer's status, from where) in the audit log."""

    def __init__(self, app: Any, accounts: Accounts) -> None:
        self.app, self.accounts = app, accounts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["synthforge.actor"] = actor = {"name": None}
        answered = {"status": 500}

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if scope["method"] in _UNSAFE and scope["path"] not in _READ_ONLY_POSTS:
                client = scope.get("client")
                with contextlib.suppress(StoreDamaged):  # answered 503 already, and the log says why
                    await asyncio.to_thread(self.accounts.record, actor["name"], f"{scope['method']} {scope['path']}",
                                            scope.get("query_string", b"").decode()[:500] or None,
                                            answered["status"], client[0] if client else None)


class _ClientAddress:
    """The client's address is the socket's. Only when the socket's peer is a proxy named in ``trusted`` is
    its X-Forwarded-For believed: the address there nearest to us that is not itself a trusted proxy. Anyone
    else's header is ignored, so it can neither reset the login limiter nor write the audit log's address."""

    def __init__(self, app: Any, trusted: list[str]) -> None:
        self.app = app
        self.networks = _proxy_networks(trusted)
        self.everyone = "*" in trusted

    def _trusted(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self._trusted(client[0]):
            forwarded = ",".join(value.decode("latin-1") for name, value in scope.get("headers", [])
                                 if name == b"x-forwarded-for")
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            while hops and self._trusted(hops[-1]):
                hops.pop()
            if hops:
                scope["client"] = (hops[-1], 0)
        await self.app(scope, receive, send)


class _BodyLimits:
    """413 for a request body past its cap: at once when Content-Length says so, else as the bytes stream in
    (nothing past the cap is read, so memory and disk stay bounded whatever a client sends)."""

    def __init__(self, app: Any, uploads: int, others: int) -> None:
        self.app, self.uploads, self.others = app, uploads, others

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        is_upload = scope["path"] in _UPLOAD_PATHS
        limit = self.uploads if is_upload else self.others
        message = (f"the upload is larger than this server takes ({_size(limit)}): split the table, or ask the "
                   f"admin to raise `synthforge serve --max-upload-mb`." if is_upload else
                   f"the request body is larger than this server takes ({_size(limit)}); upload tables with "
                   f"POST {API}/uploads, or ask the admin to raise `synthforge serve --max-body-kb`.")
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse({"detail": message}, status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, message)
            return received

        await self.app(scope, counted, send)


def _proxy_networks(trusted: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(item, strict=False) for item in trusted if item != "*"]
    except ValueError as error:
        raise SynthForgeError(f"--forwarded-allow-ips: {error}; give a proxy's address (10.0.0.5) or network "
                              f"(10.0.0.0/24), or * for any.") from None


def _size(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


def _output_name(path: Path) -> str:
    """The last name of a recipe's output path: the name a job's output takes inside its own folder."""
    name = Path(path).name
    return name if name not in ("", ".", "..") else "output"


async def _write_upload(file: StarletteUploadFile, target: Path, folders: Folders) -> dict[str, Any]:
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with partial.open("wb") as handle:
            while chunk := await file.read(MiB):
                handle.write(chunk)
        partial.replace(target)  # atomic: a half-sent upload never looks complete
    finally:
        partial.unlink(missing_ok=True)
    return {"path": _upload_reference(target, folders), "bytes": target.stat().st_size}


def _upload_reference(path: Path, folders: Folders) -> str:
    """How a recipe names an upload: relative to the recipes folder, where submitted recipes' paths start."""
    import os

    return Path(os.path.relpath(path, folders.recipes)).as_posix()


def _check_text(text: str, params: dict[str, Any], folders: Folders, load_checked: Any) -> Any:
    """Load a recipe's text as if it were a file in the recipes folder (its relative paths read from there)."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=".validate-", dir=folders.recipes,
                                     delete=True) as handle:
        handle.write(text)
        handle.flush()
        try:
            return load_checked(Path(handle.name), params)
        except SynthForgeError as error:
            raise type(error)(str(error).replace(handle.name, "<submitted recipe>")) from None


def _preview(root: Path, dataset: Path, rows: int, table: str | None, folders: Folders) -> dict[str, Any]:
    import polars as pl

    dataset = folders.inside(dataset, [root], "dataset")
    tables = {p.stem: p for p in sorted(dataset.iterdir()) if p.is_file()} if dataset.is_dir() else {}
    if tables:
        name = table or next(iter(tables))
        if name not in tables:
            raise SynthForgeError(f"there is no table {name!r} in this output; it has {', '.join(tables)}.")
        dataset = tables[name]
    readers = {".csv": pl.scan_csv, ".parquet": pl.scan_parquet, ".ndjson": pl.scan_ndjson, ".ipc": pl.scan_ipc,
               ".arrow": pl.scan_ipc}
    reader = readers.get(dataset.suffix)
    if reader is None:
        raise SynthForgeError(f"no preview for {dataset.name}: download it instead.")
    frame = reader(dataset).head(rows).collect()
    return {"table": dataset.stem if tables else None, "tables": list(tables), "columns": frame.columns,
            "rows": [[_cell(v) for v in row] for row in frame.rows()]}


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def progress_view(job: Job) -> dict[str, Any] | None:
    """The running stage with its share done and an ETA (the stage's pace so far, carried to its end)."""
    progress = job.progress
    if job.status != "running" or not progress:
        return None
    done, total = progress.get("done") or 0, progress.get("total")
    view = {"stage": progress.get("stage"), "done": done, "total": total, "fraction": None, "eta_seconds": None,
            "metrics": progress.get("metrics") or {}}
    if total:
        view["fraction"] = min(done / total, 1.0)
        if done:
            elapsed = progress["at"] - progress["stage_started_at"]
            remaining = elapsed * (total - done) / done - (time.time() - progress["at"])
            view["eta_seconds"] = max(remaining, 0.0)
    return view


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _recipe_label(recipe: str, folders: Folders) -> str:
    path = Path(recipe)
    if path.name.startswith(".submitted-"):
        return f"{_submitted_name(path)} (submitted)"
    try:
        return path.resolve().relative_to(folders.recipes).as_posix()
    except ValueError:
        return str(path)


@functools.lru_cache(maxsize=4096)
def _submitted_name(path: Path) -> str:
    """A submitted recipe's own ``name:`` (the file is kept and never changes)."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
        return str(loaded.get("name") or path.stem) if isinstance(loaded, dict) else path.stem
    except (OSError, yaml.YAMLError):
        return path.stem


def _file_kind(relative: Path) -> str:
    if relative.parts[0] == "model":
        return "model"
    return {"report.html": "report", "report.json": "report", "manifest.json": "manifest"}.get(
        relative.as_posix(), "dataset")


def _wants_html(request: Request) -> bool:
    page = not request.url.path.startswith(API) or request.url.path == f"{API}/docs"
    return page and "text/html" in request.headers.get("accept", "")


def _local(target: str) -> str:
    """A redirect target on this site only (no ``//evil.example``)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("synthforge")
    except PackageNotFoundError:
        return "0+unknown"


_STARTER_RECIPE = """\
# A recipe: what to learn, which generator, what to write, which checks gate it.
# Paths are relative to the recipes folder; outputs must go inside the outputs folder.
name: my-run
seed: 0
source: {path: data/adult/train.csv}
holdout: {path: data/adult/test.csv}
generator: {name: copula}
output: {mode: synthesize, rows: 5000, path: ../out/my-run, format: parquet}
target: income
"""
