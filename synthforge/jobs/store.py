"""The durable job store: SQLite by default, PostgreSQL for teams that share one; same code over SQLAlchemy Core.

A **job** is one run of a recipe (with ``--param`` overrides). A **schedule**
enqueues a job each time its cron expression comes due, in its own time zone.
Workers **claim** a queued job with a lease they renew by heartbeat; a worker that
dies stops renewing, its lease expires, and the job is queued again (or failed
once its attempts are used up). Every state change is one conditional ``UPDATE``,
so two workers can never both own a job: on PostgreSQL the claim locks the row
with ``FOR UPDATE SKIP LOCKED``; SQLite runs one writer at a time (WAL mode keeps
readers unblocked).

Times are UTC seconds since the epoch (floats), the same in both databases.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from synthforge.errors import SynthForgeError

DEFAULT_STORE = "sqlite:///synthforge-jobs.db"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recipe", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False, default="{}"),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("schedule_id", sa.Integer, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=3),
    sa.Column("run_after", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    # added by migration 2
    sa.Column("progress", sa.Text, nullable=True),  # JSON: the running stage, its steps done of total, when
    sa.Column("submitted_by", sa.String(128), nullable=True),
    # added by migration 3: the folder this job alone writes (its recipe's output.path is replaced by it); set for
    # the service's jobs, None for a CLI user's, whose recipe names its own output
    sa.Column("output_path", sa.Text, nullable=True),
)
schedules = sa.Table(
    "schedules", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recipe", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False, default="{}"),
    sa.Column("cron", sa.String(128), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=3),
    sa.Column("next_run_at", sa.Float, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=True),  # added by migration 2
    # added by migration 3: JSON {"root": folder, "name": last name}: each of its jobs writes <root>/job-<id>/<name>
    sa.Column("job_output", sa.Text, nullable=True),
)
job_logs = sa.Table(
    "job_logs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("line", sa.Text, nullable=False),
)
schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


# The service's accounts (synthforge.service.accounts): users, their API tokens and browser sessions (both
# stored as SHA-256 digests, never in clear), and who changed what.
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=True),  # scrypt; None: no browser login, tokens only
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),  # the first characters, to tell tokens apart
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
)
web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("actor", sa.String(128), nullable=True),  # None: not signed in (a failed login)
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("outcome", sa.Integer, nullable=False),  # the HTTP status answered
    sa.Column("client", sa.String(64), nullable=True),
)

_ADDED_IN_2 = {"jobs": ("progress", "submitted_by"), "schedules": ("created_by",)}
_ADDED_IN_3 = {"jobs": ("output_path",), "schedules": ("job_output",)}


def _migration_1(connection: sa.Connection) -> None:
    for table in (jobs, schedules, job_logs):
        # The version-1 shape: the columns later migrations add are left to them.
        added = (*_ADDED_IN_2.get(table.name, ()), *_ADDED_IN_3.get(table.name, ()))
        columns = [sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index,
                             autoincrement=c.autoincrement) for c in table.columns if c.name not in added]
        sa.Table(table.name, sa.MetaData(), *columns).create(connection, checkfirst=True)


def _migration_2(connection: sa.Connection) -> None:
    """Progress and authorship of jobs and schedules; the service's accounts and audit log."""
    _add_columns(connection, _ADDED_IN_2)
    for table in (users, api_tokens, web_sessions, audit_log):
        table.create(connection, checkfirst=True)


def _migration_3(connection: sa.Connection) -> None:
    """Each service job's own output folder (and a schedule's rule for its jobs' folders)."""
    _add_columns(connection, _ADDED_IN_3)


def _add_columns(connection: sa.Connection, added: dict[str, tuple[str, ...]]) -> None:
    present = {name: {column["name"] for column in sa.inspect(connection).get_columns(name)} for name in added}
    for table_name, names in added.items():
        table = metadata.tables[table_name]
        for name in names:
            if name not in present[table_name]:
                column = table.c[name]
                kind = column.type.compile(connection.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}")


# Each migration runs once, in order, inside a transaction; append, never edit.
MIGRATIONS = [_migration_1, _migration_2, _migration_3]


@dataclass
class Job:
    id: int
    recipe: str
    params: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    run_after: float
    created_at: float
    schedule_id: int | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    #: the running stage (``stage``, ``done`` of ``total`` steps, ``stage_started_at``, ``at``, the last ``metrics``)
    progress: dict[str, Any] | None = None
    submitted_by: str | None = None
    #: the folder this job alone writes, in place of its recipe's ``output.path`` (the service's jobs)
    output_path: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        values = dict(row._mapping)
        values["params"] = json.loads(values["params"] or "{}")
        values["result"] = json.loads(values["result"]) if values["result"] else None
        values["progress"] = json.loads(values["progress"]) if values.get("progress") else None
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)


@dataclass
class Schedule:
    id: int
    recipe: str
    params: dict[str, Any]
    cron: str
    timezone: str
    max_attempts: int
    next_run_at: float
    enabled: bool
    created_at: float
    created_by: str | None = None
    #: (folder, name): each job of this schedule writes ``<folder>/job-<id>/<name>`` (see :func:`job_output_path`)
    job_output: tuple[str, str] | None = None

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        values = dict(row._mapping)
        values["params"] = json.loads(values["params"] or "{}")
        values["enabled"] = bool(values["enabled"])
        values["job_output"] = tuple(json.loads(values["job_output"])) if values.get("job_output") else None
        return cls(**values)


def job_output_path(root: str | Path, job_id: int, name: str) -> str:
    """The folder job ``job_id`` alone writes: ``<root>/job-<id>/<name>``, whatever path its recipe names."""
    return str(Path(root) / f"job-{job_id}" / name)


class StoreDamaged(SynthForgeError):
    """The job store's database file cannot be read: truncated, overwritten or not a database."""


def store_damaged_message(url: str, reason: str) -> str:
    file = sa.engine.make_url(url).database or url
    return (f"the job store {file} is damaged ({reason}), so no job, user or log in it can be read. Stop the "
            f"server and workers that use it and keep a copy of the file; then either recover what it holds "
            f"(sqlite3 {file} '.recover' | sqlite3 recovered.db) and pass --store sqlite:///recovered.db, or move "
            f"{file} aside (with any {file}-wal and {file}-shm beside it) to start an empty store.")


def next_cron_time(cron: str, timezone: str, after: float) -> float:
    """The first time strictly after ``after`` that ``cron`` names, read in ``timezone``.

    Five fields are minute-resolution cron; a sixth field gives seconds.
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import CroniterBadCronError, croniter

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SynthForgeError(f"unknown time zone {timezone!r}: use an IANA name, e.g. UTC or Europe/Paris.") from None
    try:
        iterator = croniter(cron, datetime.fromtimestamp(after, zone))
    except (CroniterBadCronError, ValueError, KeyError) as error:
        raise SynthForgeError(f"bad cron expression {cron!r} ({error}); e.g. '0 2 * * *' is 02:00 every day.") from None
    return float(iterator.get_next(float))


class JobStore:
    """Jobs, schedules and logs in one database; every method is one short transaction."""

    def __init__(self, url: str = DEFAULT_STORE) -> None:
        self.url = url
        try:
            self.engine = sa.create_engine(url, future=True, pool_pre_ping=True, **_engine_options(url))
        except (sa.exc.ArgumentError, ModuleNotFoundError) as error:
            raise SynthForgeError(f"cannot open job store {url!r}: {error}. Use sqlite:///path.db or "
                                  f"postgresql+psycopg://user@host/db (pip install 'synthforge[postgres]').") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
            sa.event.listen(self.engine, "handle_error", self._refuse_damaged)
        self.migrate()

    def _refuse_damaged(self, context: Any) -> None:
        """A damaged SQLite file (truncated, overwritten, not a database) fails every statement the same way:
        say which file and what to do, once, instead of a driver traceback from each command."""
        import sqlite3

        original = context.original_exception
        reason = str(original)
        if type(original) is not sqlite3.DatabaseError or not any(
                words in reason for words in ("malformed", "not a database", "corrupt")):
            return
        raise StoreDamaged(store_damaged_message(self.url, reason)) from None

    # --- schema -------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""
        try:
            with self.engine.begin() as connection:
                schema_migrations.create(connection, checkfirst=True)
                applied = set(connection.scalars(sa.select(schema_migrations.c.version)))
                for version, migration in enumerate(MIGRATIONS, start=1):
                    if version not in applied:
                        migration(connection)
                        connection.execute(schema_migrations.insert().values(version=version, applied_at=time.time()))
                newest = connection.scalar(sa.select(sa.func.max(schema_migrations.c.version)))
        except sa.exc.OperationalError as error:
            raise SynthForgeError(f"cannot open job store {self.url!r}: {error.orig}") from None
        if newest > len(MIGRATIONS):
            raise SynthForgeError(f"job store {self.url} has schema version {newest}, newer than this SynthForge "
                                  f"knows ({len(MIGRATIONS)}); upgrade SynthForge.")
        return int(newest)

    # --- submitting ----------------------------------------------------------------------

    def submit(self, recipe: str | Path, params: dict[str, Any] | None = None, *, max_attempts: int = 3,
               run_after: float | None = None, schedule_id: int | None = None,
               submitted_by: str | None = None, job_output: tuple[str, str] | None = None) -> int:
        """Queue a job; with ``job_output`` (folder, name) it writes ``<folder>/job-<id>/<name>`` and nowhere else."""
        now = time.time()
        with self.engine.begin() as connection:
            return self._insert_job(connection, str(recipe), params or {}, max_attempts, run_after or now,
                                    schedule_id, now, submitted_by, job_output)

    def _insert_job(self, connection: sa.Connection, recipe: str, params: dict[str, Any], max_attempts: int,
                    run_after: float, schedule_id: int | None, now: float, submitted_by: str | None,
                    job_output: tuple[str, str] | None = None) -> int:
        inserted = connection.execute(jobs.insert().values(
            recipe=recipe, params=json.dumps(params), status="queued", attempts=0, max_attempts=max_attempts,
            run_after=run_after, cancel_requested=False, created_at=now, schedule_id=schedule_id,
            submitted_by=submitted_by))
        job_id = int(inserted.inserted_primary_key[0])
        if job_output is not None:  # named by the id, so known only now; same transaction, never seen without it
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(
                output_path=job_output_path(job_output[0], job_id, job_output[1])))
        return job_id

    def add_schedule(self, recipe: str | Path, cron: str, *, timezone: str = "UTC",
                     params: dict[str, Any] | None = None, max_attempts: int = 3,
                     created_by: str | None = None, job_output: tuple[str, str] | None = None) -> int:
        now = time.time()
        first = next_cron_time(cron, timezone, now)
        with self.engine.begin() as connection:
            inserted = connection.execute(schedules.insert().values(
                recipe=str(recipe), params=json.dumps(params or {}), cron=cron, timezone=timezone,
                max_attempts=max_attempts, next_run_at=first, enabled=True, created_at=now, created_by=created_by,
                job_output=json.dumps([str(part) for part in job_output]) if job_output else None))
            return int(inserted.inserted_primary_key[0])

    def enqueue_due(self, now: float | None = None) -> list[int]:
        """Turn every due schedule into a queued job, exactly once per due time, whoever calls it."""
        now = time.time() if now is None else now
        created = []
        with self.engine.begin() as connection:
            due = connection.execute(sa.select(schedules).where(
                schedules.c.enabled.is_(True), schedules.c.next_run_at <= now)).fetchall()
            for row in due:
                schedule = Schedule.from_row(row)
                following = next_cron_time(schedule.cron, schedule.timezone, max(now, schedule.next_run_at))
                advanced = connection.execute(schedules.update().where(
                    schedules.c.id == schedule.id, schedules.c.next_run_at == schedule.next_run_at,
                ).values(next_run_at=following))
                if advanced.rowcount == 1:  # another worker may have taken this due time first
                    created.append(self._insert_job(connection, schedule.recipe, schedule.params,
                                                    schedule.max_attempts, schedule.next_run_at, schedule.id, now,
                                                    schedule.created_by, schedule.job_output))
        return created

    # --- the worker's side ---------------------------------------------------------------------

    def claim(self, owner: str, lease_seconds: float) -> Job | None:
        """Take the oldest due queued job for ``owner`` with a lease; None when there is none."""
        now = time.time()
        with self.engine.begin() as connection:
            candidate = (sa.select(jobs.c.id)
                         .where(jobs.c.status == "queued", jobs.c.run_after <= now)
                         .order_by(jobs.c.run_after, jobs.c.id).limit(1)
                         .with_for_update(skip_locked=True))
            job_id = connection.scalar(candidate)
            if job_id is None:
                return None
            claimed = connection.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued").values(
                status="running", lease_owner=owner, lease_expires_at=now + lease_seconds,
                attempts=jobs.c.attempts + 1, started_at=now, finished_at=None, progress=None))
            if claimed.rowcount != 1:
                return None
            row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
            job = Job.from_row(row)
            self._log(connection, job.id, job.attempts, f"claimed by {owner} (attempt {job.attempts} of "
                                                         f"{job.max_attempts})")
            return job

    def heartbeat(self, job_id: int, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False when ``owner`` no longer holds it (it expired and was taken back)."""
        with self.engine.begin() as connection:
            renewed = connection.execute(jobs.update().where(
                jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status == "running",
            ).values(lease_expires_at=time.time() + lease_seconds))
            return renewed.rowcount == 1

    def recover_expired(self) -> list[int]:
        """Queue again at once (or fail, when out of attempts) every running job whose lease has run out.

        No back-off: the job did not fail, its worker vanished (killed, machine lost).
        """
        now = time.time()
        recovered = []
        with self.engine.begin() as connection:
            expired = connection.execute(sa.select(jobs).where(
                jobs.c.status == "running", jobs.c.lease_expires_at < now)).fetchall()
            for row in expired:
                job = Job.from_row(row)
                message = f"lease of {job.lease_owner} expired: the worker stopped heartbeating (killed or hung)"
                if self._finish(connection, job, None, "failed" if job.attempts >= job.max_attempts else "retry",
                                error=message, retry_delay=0.0, now=now):
                    recovered.append(job.id)
        return recovered

    def complete(self, job: Job, owner: str, result: dict[str, Any]) -> bool:
        with self.engine.begin() as connection:
            return self._finish(connection, job, owner, "succeeded", result=result)

    def fail(self, job: Job, owner: str, error: str, *, retry: bool, retry_delay: float = 30.0) -> bool:
        """Record a failure; with ``retry`` and attempts left, queue it again after an exponential back-off."""
        outcome = "retry" if retry and job.attempts < job.max_attempts else "failed"
        with self.engine.begin() as connection:
            return self._finish(connection, job, owner, outcome, error=error, retry_delay=retry_delay)

    def mark_cancelled(self, job: Job, owner: str) -> bool:
        with self.engine.begin() as connection:
            return self._finish(connection, job, owner, "cancelled", error="cancelled while running")

    def release(self, job: Job, owner: str) -> bool:
        """Give a claimed job back untouched (a worker shutting down), without spending an attempt."""
        with self.engine.begin() as connection:
            released = connection.execute(jobs.update().where(
                jobs.c.id == job.id, jobs.c.lease_owner == owner, jobs.c.status == "running",
            ).values(status="queued", lease_owner=None, lease_expires_at=None, attempts=jobs.c.attempts - 1))
            if released.rowcount:
                self._log(connection, job.id, job.attempts, f"released by {owner} (worker shut down)")
            return released.rowcount == 1

    def _finish(self, connection: sa.Connection, job: Job, owner: str | None, outcome: str, *,
                error: str | None = None, result: dict[str, Any] | None = None, retry_delay: float = 30.0,
                now: float | None = None) -> bool:
        now = time.time() if now is None else now
        condition = [jobs.c.id == job.id, jobs.c.status == "running"]
        condition.append(jobs.c.lease_owner == owner if owner is not None else jobs.c.lease_owner == job.lease_owner)
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "error": error}
        if outcome == "retry":
            delay = retry_delay * 2 ** (job.attempts - 1)
            values |= {"status": "queued", "run_after": now + delay}
            then = f"retrying in {delay:g} s" if delay else "queued again"
            note = f"attempt {job.attempts} failed: {error}; {then}"
        else:
            values |= {"status": outcome, "finished_at": now}
            if result is not None:
                values["result"] = json.dumps(result, default=str)
            note = f"{outcome}" + (f": {error}" if error and outcome != "succeeded" else "")
        updated = connection.execute(jobs.update().where(*condition).values(**values))
        if updated.rowcount == 1:
            self._log(connection, job.id, job.attempts, note)
        return updated.rowcount == 1

    # --- users' side ---------------------------------------------------------------------------

    def cancel(self, job_id: int) -> str:
        """Cancel a queued job at once; ask the worker of a running one to stop it."""
        with self.engine.begin() as connection:
            job = self._get(connection, job_id)
            if job.status == "queued":
                connection.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued").values(
                    status="cancelled", finished_at=time.time(), error="cancelled before it ran"))
                self._log(connection, job_id, job.attempts, "cancelled before it ran")
                return "cancelled"
            if job.status == "running":
                connection.execute(jobs.update().where(jobs.c.id == job_id).values(cancel_requested=True))
                self._log(connection, job_id, job.attempts, "cancel requested; the worker stops it")
                return "cancelling"
            raise SynthForgeError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled.")

    def retry(self, job_id: int) -> None:
        """Queue a failed or cancelled job again, with a fresh allowance of attempts."""
        with self.engine.begin() as connection:
            job = self._get(connection, job_id)
            if job.status not in ("failed", "cancelled"):
                raise SynthForgeError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried.")
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(
                status="queued", attempts=0, run_after=time.time(), cancel_requested=False, finished_at=None))
            self._log(connection, job_id, job.attempts, "queued again by retry")

    def disable_schedule(self, schedule_id: int) -> None:
        self.set_schedule_enabled(schedule_id, False)

    def set_schedule_enabled(self, schedule_id: int, enabled: bool) -> None:
        """Pause (False) or resume (True) a schedule; resuming skips the due times missed while paused."""
        with self.engine.begin() as connection:
            schedule = self._get_schedule(connection, schedule_id)
            values: dict[str, Any] = {"enabled": enabled}
            if enabled and not schedule.enabled:
                values["next_run_at"] = next_cron_time(schedule.cron, schedule.timezone, time.time())
            connection.execute(schedules.update().where(schedules.c.id == schedule_id).values(**values))

    def get_schedule(self, schedule_id: int) -> Schedule:
        with self.engine.connect() as connection:
            return self._get_schedule(connection, schedule_id)

    def _get_schedule(self, connection: sa.Connection, schedule_id: int) -> Schedule:
        return Schedule.from_row(_row(connection, schedules, schedule_id, f"there is no schedule {schedule_id}."))

    def set_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "running").values(
                progress=json.dumps(progress)))

    def cancel_requested(self, job_id: int) -> bool:
        with self.engine.connect() as connection:
            return bool(connection.scalar(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)))

    def get(self, job_id: int) -> Job:
        with self.engine.connect() as connection:
            return self._get(connection, job_id)

    def _get(self, connection: sa.Connection, job_id: int) -> Job:
        return Job.from_row(_row(connection, jobs, job_id, f"there is no job {job_id} in {self.url}."))

    def list_jobs(self, status: str | None = None, limit: int = 50, *, schedule_id: int | None = None,
                  submitted_by: str | None = None, before_id: int | None = None) -> list[Job]:
        """The newest jobs first; ``before_id`` pages on (the ids below the last one seen)."""
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if status:
            query = query.where(jobs.c.status == status)
        if schedule_id is not None:
            query = query.where(jobs.c.schedule_id == schedule_id)
        if submitted_by is not None:
            query = query.where(jobs.c.submitted_by == submitted_by)
        if before_id is not None:
            query = query.where(jobs.c.id < before_id)
        with self.engine.connect() as connection:
            return [Job.from_row(row) for row in connection.execute(query)]

    def list_schedules(self) -> list[Schedule]:
        with self.engine.connect() as connection:
            return [Schedule.from_row(row) for row in connection.execute(sa.select(schedules).order_by(schedules.c.id))]

    def log(self, job_id: int, attempt: int, line: str) -> None:
        with self.engine.begin() as connection:
            self._log(connection, job_id, attempt, line)

    def _log(self, connection: sa.Connection, job_id: int, attempt: int, line: str) -> None:
        connection.execute(job_logs.insert().values(job_id=job_id, attempt=attempt, at=time.time(), line=line))

    def logs(self, job_id: int) -> list[tuple[int, float, str]]:
        return [(attempt, at, line) for _, attempt, at, line in self.logs_after(job_id, 0)]

    def logs_after(self, job_id: int, after: int, limit: int = 10_000) -> list[tuple[int, int, float, str]]:
        """The job's log lines with an id above ``after``, oldest first, as (id, attempt, at, line): a live
        tail asks again with the last id it saw."""
        with self.engine.connect() as connection:
            self._get(connection, job_id)
            rows = connection.execute(sa.select(job_logs.c.id, job_logs.c.attempt, job_logs.c.at, job_logs.c.line)
                                      .where(job_logs.c.job_id == job_id, job_logs.c.id > after)
                                      .order_by(job_logs.c.id).limit(limit))
            return [(row.id, row.attempt, row.at, row.line) for row in rows]


def _row(connection: sa.Connection, table: sa.Table, row_id: int, missing: str) -> Any:
    """The row of ``table`` with this id; ``missing`` is the error when there is none."""
    row = connection.execute(sa.select(table).where(table.c.id == row_id)).one_or_none()
    if row is None:
        raise SynthForgeError(missing)
    return row


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # One connection per use: SQLite locks the file, not a pool; the timeout waits out a writer.
        return {"poolclass": sa.pool.NullPool, "connect_args": {"timeout": 30, "isolation_level": None}}
    return {}


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
