"""Accounts of the service: users with roles, API tokens, browser sessions, the audit log, login limits.

Everything lives in the job store's database (tables in :mod:`synthforge.jobs.store`,
migration 2), so a team's PostgreSQL store carries its accounts too.

- **Passwords** are hashed with scrypt (``hashlib.scrypt``: memory-hard, salted), never stored.
- **API tokens** (``sf_…``) are 256 random bits, shown once; only their SHA-256 digest is
  stored (a digest suffices for a random secret: nothing to brute-force), with a short prefix
  to tell them apart. Revoked tokens stop at once.
- **Sessions** (the browser's login) are random ids in an HttpOnly, SameSite cookie, stored
  as digests with an expiry and their own CSRF token, which every form and script sends back.
- **Roles** are ordered: ``viewer`` reads; ``member`` also submits, cancels and retries
  jobs and manages its own schedules; ``admin`` also manages users, everyone's tokens and
  everyone's schedules.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from synthforge.errors import SynthForgeError
from synthforge.jobs.store import JobStore, api_tokens, audit_log, users, web_sessions

ROLES = ("viewer", "member", "admin")
TOKEN_PREFIX = "sf_"
SESSION_SECONDS = 12 * 3600
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    disabled: bool = False

    def can(self, role: str) -> bool:
        """Whether this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    encode = base64.urlsafe_b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.urlsafe_b64decode(digest)
    actual = hashlib.scrypt(password.encode(), salt=base64.urlsafe_b64decode(salt), dklen=len(expected),
                            n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(actual, expected)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    """Users, tokens, sessions and the audit log, over a :class:`JobStore`'s database."""

    def __init__(self, store: JobStore) -> None:
        self.engine = store.engine

    # --- users ----------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str | None = None) -> User:
        name = name.strip()
        if not name or len(name) > 128 or any(ch.isspace() for ch in name):
            raise SynthForgeError(f"bad user name {name!r}: one word, at most 128 characters.")
        _check_role(role)
        if password is not None:
            _check_password(password)
        with self.engine.begin() as connection:
            if connection.scalar(sa.select(users.c.id).where(users.c.name == name)) is not None:
                raise SynthForgeError(f"user {name!r} exists already.")
            inserted = connection.execute(users.insert().values(
                name=name, role=role, password_hash=hash_password(password) if password else None, disabled=False,
                created_at=time.time()))
            return User(int(inserted.inserted_primary_key[0]), name, role)

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        self._update_user(name, password_hash=hash_password(password))

    def set_role(self, name: str, role: str) -> None:
        _check_role(role)
        self._update_user(name, role=role)

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (or enable again) a user: their tokens and sessions stop working at once."""
        user = self._update_user(name, disabled=disabled)
        if disabled:
            with self.engine.begin() as connection:
                connection.execute(web_sessions.delete().where(web_sessions.c.user_id == user.id))

    def _update_user(self, name: str, **values: Any) -> User:
        with self.engine.begin() as connection:
            updated = connection.execute(users.update().where(users.c.name == name).values(**values))
            if not updated.rowcount:
                raise SynthForgeError(f"there is no user {name!r}; `synthforge users list` shows them.")
        user = self.user(name)
        assert user is not None
        return user

    def user(self, name: str) -> User | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(users).where(users.c.name == name)).one_or_none()
        return _user(row) if row is not None else None

    def list_users(self) -> list[User]:
        with self.engine.connect() as connection:
            return [_user(row) for row in connection.execute(sa.select(users).order_by(users.c.name))]

    def count_admins(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(users).where(
                users.c.role == "admin", users.c.disabled.is_(False))) or 0)

    def authenticate_password(self, name: str, password: str) -> User | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(users).where(users.c.name == name)).one_or_none()
        if row is None:
            verify_password(password, _dummy_hash())  # the same work as for a real user: no timing tell
            return None
        if not verify_password(password, row.password_hash) or row.disabled:
            return None
        return _user(row)

    # --- API tokens ------------------------------------------------------------------------------

    def create_token(self, user_name: str, token_name: str = "token") -> tuple[int, str]:
        """A new token for ``user_name``: its id and the secret, which is never shown again."""
        user = self.user(user_name)
        if user is None:
            raise SynthForgeError(f"there is no user {user_name!r}; `synthforge users add` creates one.")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            inserted = connection.execute(api_tokens.insert().values(
                user_id=user.id, name=token_name[:128] or "token", digest=_digest(secret),
                prefix=secret[: len(TOKEN_PREFIX) + 6], created_at=time.time()))
        return int(inserted.inserted_primary_key[0]), secret

    def list_tokens(self, user_name: str | None = None) -> list[dict[str, Any]]:
        query = (sa.select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.prefix, api_tokens.c.created_at,
                           api_tokens.c.last_used_at, api_tokens.c.revoked_at, users.c.name.label("user"))
                 .join(users, users.c.id == api_tokens.c.user_id).order_by(api_tokens.c.id))
        if user_name is not None:
            query = query.where(users.c.name == user_name)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def token_owner(self, token_id: int) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(sa.select(users.c.name).join(api_tokens, users.c.id == api_tokens.c.user_id)
                                     .where(api_tokens.c.id == token_id))

    def revoke_token(self, token_id: int) -> None:
        with self.engine.begin() as connection:
            revoked = connection.execute(api_tokens.update().where(
                api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)).values(revoked_at=time.time()))
            if not revoked.rowcount:
                raise SynthForgeError(f"there is no live token {token_id}; `synthforge tokens list` shows them.")

    def authenticate_token(self, secret: str) -> User | None:
        if not secret.startswith(TOKEN_PREFIX):
            return None
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(users, api_tokens.c.id.label("token_id"))
                .join(api_tokens, users.c.id == api_tokens.c.user_id)
                .where(api_tokens.c.digest == _digest(secret), api_tokens.c.revoked_at.is_(None))).one_or_none()
            if row is None or row.disabled:
                return None
            connection.execute(api_tokens.update().where(api_tokens.c.id == row.token_id).values(
                last_used_at=time.time()))
        return _user(row)

    # --- browser sessions --------------------------------------------------------------------------

    def open_session(self, user: User) -> tuple[str, Session]:
        """A new session: the cookie's secret and the session (its CSRF token for the forms)."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self.engine.begin() as connection:
            connection.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))
            connection.execute(web_sessions.insert().values(
                digest=_digest(secret), user_id=user.id, csrf_token=csrf, created_at=now,
                expires_at=now + SESSION_SECONDS))
        return secret, Session(user, csrf, now + SESSION_SECONDS)

    def session(self, secret: str) -> Session | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(users, web_sessions.c.csrf_token, web_sessions.c.expires_at)
                .join(web_sessions, users.c.id == web_sessions.c.user_id)
                .where(web_sessions.c.digest == _digest(secret))).one_or_none()
        if row is None or row.expires_at < time.time() or row.disabled:
            return None
        return Session(_user(row), row.csrf_token, row.expires_at)

    def close_session(self, secret: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(web_sessions.delete().where(web_sessions.c.digest == _digest(secret)))

    # --- the audit log ----------------------------------------------------------------------------

    def record(self, actor: str | None, action: str, target: str | None, outcome: int,
               client: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(audit_log.insert().values(at=time.time(), actor=actor, action=action[:64],
                                                         target=target, outcome=outcome, client=client))

    def audit(self, limit: int = 200, actor: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


class LoginLimiter:
    """At most ``attempts`` logins per ``window`` seconds per client address and per user name.

    In memory, per server process: the service is one process. Successful logins count too,
    so a flood is slowed whether or not it guesses right.
    """

    def __init__(self, attempts: int = 10, window: float = 60.0) -> None:
        self.attempts, self.window = attempts, window
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, *keys: str) -> float:
        """0 when the attempt may go ahead (and it is counted); else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            waits = []
            for key in keys:
                times = self.seen.setdefault(key, deque())
                while times and times[0] <= now - self.window:
                    times.popleft()
                if len(times) >= self.attempts:
                    waits.append(times[0] + self.window - now)
            if waits:
                return max(max(waits), 1.0)
            for key in keys:
                self.seen[key].append(now)
            return 0.0


def _user(row: Any) -> User:
    return User(int(row.id), row.name, row.role, bool(row.disabled))


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise SynthForgeError(f"unknown role {role!r}: use one of {', '.join(ROLES)}.")


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise SynthForgeError("a password needs at least 8 characters.")


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(12))
