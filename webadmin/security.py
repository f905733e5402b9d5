"""Login sessions, roles, CSRF, login rate limit and security headers.

Roles: ``admin`` (everything), ``supervisor`` (all reports, calls, recordings, live board),
``manager`` (own calls and recordings, own pop-up).  Every view declares the roles it
allows with ``@roles_required``; there is no view without a check.

Sessions live in the database (``WebSession``): the signed cookie carries only a random token,
so logout, a password change and ``[web] session_idle_minutes`` end a session for every copy of
the cookie, in every worker.  Failed logins are counted in the database too (``LoginFailure``),
per address and per (address, login): an attacker exhausts only their own address's budget,
and two workers do not double it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, abort, current_app, request, session
from flask_login import LoginManager, current_user, login_required
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from astertrack.db.engine import begin_write
from astertrack.db.models import LoginFailure, User, WebSession
from astertrack.db.types import utcnow
from webadmin.db import get_session, session_factory

ROLES = ("admin", "supervisor", "manager")
STAFF = ("admin", "supervisor")
SESSION_TOKEN = "sid"  # the key of the random session token in Flask's signed cookie
TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen_at is written at most this often per session
ABANDONED_AFTER = dt.timedelta(days=30)  # with no idle timeout, rows nobody logged out of are purged after this

login_manager = LoginManager()
csrf = CSRFProtect()


@dataclass
class AppUser:
    """What a request needs to know about the logged-in user (detached from the DB session)."""

    id: int
    login: str
    role: str
    manager_id: int | None
    locale: str | None

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    @classmethod
    def from_row(cls, user: User) -> AppUser:
        return cls(id=user.id, login=user.login, role=user.role, manager_id=user.manager_id, locale=user.locale)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def password_mark(password_hash: str) -> str:
    """What a session keeps of its user's password hash: a password change makes every session's
    mark stale, which ends them (here per request, in the live streams for many at once)."""
    return _digest(password_hash)


def _idle_limit() -> dt.timedelta | None:
    minutes = current_app.config["SESSION_IDLE_MINUTES"]
    return dt.timedelta(minutes=minutes) if minutes else None


def start_session(user: User) -> None:
    """Open a server-side session for ``user`` and put its token in the (already cleared) cookie.

    A password change made anywhere (the admin, ``astertrack user``, SQL) ends the session: it
    remembers a digest of the password hash it was opened with.
    """
    token = secrets.token_urlsafe(32)
    now = utcnow()
    idle = _idle_limit()
    with session_factory()() as db:
        begin_write(db)
        db.execute(delete(WebSession).where(WebSession.last_seen_at < now - (idle or ABANDONED_AFTER)))
        db.add(WebSession(id=_digest(token), user_id=user.id, password_mark=password_mark(user.password_hash),
                          created_at=now, last_seen_at=now))
        db.commit()
    session[SESSION_TOKEN] = token


def end_session() -> None:
    """Delete this request's server-side session: every copy of the cookie stops working."""
    token = session.get(SESSION_TOKEN)
    if not token:
        return
    with session_factory()() as db:
        begin_write(db)
        db.execute(delete(WebSession).where(WebSession.id == _digest(token)))
        db.commit()


def session_id() -> str | None:
    """This request's server-side session id (for long streams that re-check it)."""
    token = session.get(SESSION_TOKEN)
    return _digest(token) if isinstance(token, str) else None


def session_is_open(db: Session, sid: str | None) -> bool:
    return sid is not None and db.get(WebSession, sid) is not None


def end_user_sessions(db: Session, user_id: int) -> None:
    """End every session of one user (password changed, account disabled); the caller commits."""
    db.execute(delete(WebSession).where(WebSession.user_id == user_id))


@login_manager.user_loader
def load_user(user_id: str) -> AppUser | None:
    token = session.get(SESSION_TOKEN)
    if not user_id.isdigit() or not isinstance(token, str):
        return None
    db = get_session()
    row = db.get(WebSession, _digest(token))
    user = db.get(User, int(user_id))
    if row is None or user is None or row.user_id != user.id:
        return None
    now = utcnow()
    idle = _idle_limit()
    expired = idle is not None and row.last_seen_at + idle <= now
    if expired or not user.active or row.password_mark != password_mark(user.password_hash):
        db.commit()
        _write(delete(WebSession).where(WebSession.id == row.id))
        return None
    if now - row.last_seen_at >= min(TOUCH_EVERY, idle / 4 if idle else TOUCH_EVERY):
        db.commit()
        _write(update(WebSession).where(WebSession.id == row.id).values(last_seen_at=now))
    return AppUser.from_row(user)


def _write(statement) -> None:
    """One small write in its own short transaction.  Whoever calls it first ends the request
    session's read transaction (``commit``): on SQLite a read snapshot older than this write could
    not become a write transaction later in the request."""
    with session_factory()() as db:
        begin_write(db)
        db.execute(statement)
        db.commit()


def roles_required(*roles: str) -> Callable:
    """Login required, then the user's role must be one of ``roles`` (403 otherwise)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.allowed_roles = roles
        return wrapped

    return decorator


class LoginLimiter:
    """Login attempts counted in the database, so every worker and app instance shares one budget.

    An attempt is admitted only while its address has fewer than ``per_pair`` failures for this
    login and fewer than ``per_address`` failures in all within ``window``; admitted, it is
    written down *before* the password is checked (and removed on success), so concurrent
    guesses cannot all slip under the limit.  The check and the write run under a lock per
    address (SQLite's write lock; a transaction advisory lock on PostgreSQL).  The account's
    owner, coming from another address, is never locked out by someone else's guesses.
    """

    def __init__(self, per_pair: int, per_address: int, window_seconds: float) -> None:
        self.per_pair, self.per_address = per_pair, per_address
        self.window = dt.timedelta(seconds=window_seconds)

    def admit(self, address: str, login: str) -> int | None:
        """Record an attempt and return its id, or None (nothing recorded) when over the limit."""
        now = utcnow()
        with session_factory()() as db:
            begin_write(db)
            if db.get_bind().dialect.name == "postgresql":
                db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": "astertrack-login:" + address})
            recent = (LoginFailure.address == address, LoginFailure.at > now - self.window)
            from_address = db.scalar(select(func.count()).select_from(LoginFailure).where(*recent))
            for_login = db.scalar(select(func.count()).select_from(LoginFailure)
                                  .where(*recent, LoginFailure.login == login))
            if from_address >= self.per_address or for_login >= self.per_pair:
                db.rollback()
                return None
            attempt = LoginFailure(address=address, login=login, at=now)
            db.add(attempt)
            db.commit()
        self._purge(now)
        return attempt.id

    def _purge(self, now: dt.datetime) -> None:
        """Drop failures older than the window, by one worker at a time (PostgreSQL: whoever
        holds the purge lock; the others skip, so two purges never wait on each other's rows)."""
        with session_factory()() as db:
            begin_write(db)
            if db.get_bind().dialect.name == "postgresql" and not db.scalar(
                    text("SELECT pg_try_advisory_xact_lock(hashtext('astertrack-login-purge'))")):
                return
            db.execute(delete(LoginFailure).where(LoginFailure.at <= now - self.window))
            db.commit()

    def succeeded(self, address: str, login: str) -> None:
        """The password was right: this address's failures for this login are forgiven."""
        _write(delete(LoginFailure).where(LoginFailure.address == address, LoginFailure.login == login))


def login_limiter() -> LoginLimiter:
    return current_app.extensions["login_limiter"]


def _security_headers(response):
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint and not request.endpoint.startswith("static") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    app.extensions["login_limiter"] = LoginLimiter(app.config["LOGIN_ATTEMPTS"], app.config["LOGIN_ATTEMPTS_PER_ADDRESS"],
                                                   app.config["LOGIN_WINDOW_SECONDS"])
    app.after_request(_security_headers)
