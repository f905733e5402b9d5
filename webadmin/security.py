"""Login sessions, roles, CSRF, login rate limit and security headers.

Roles: ``admin`` (everything), ``supervisor`` (all reports, calls, recordings, live board),
``manager`` (own calls and recordings, own pop-up).  Every view declares the roles it
allows with ``@roles_required``; there is no view without a check.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, abort, current_app, request
from flask_login import LoginManager, current_user, login_required
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select

from astertrack.db.models import User
from webadmin.db import get_session

ROLES = ("admin", "supervisor", "manager")
STAFF = ("admin", "supervisor")

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
    token: str

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        # The id carries a piece of the password hash: changing the password or disabling the
        # user ends every existing session of that user.
        return f"{self.id}:{self.token}"

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    @classmethod
    def from_row(cls, user: User) -> AppUser:
        return cls(id=user.id, login=user.login, role=user.role, manager_id=user.manager_id, locale=user.locale,
                   token=user.password_hash[-12:])


@login_manager.user_loader
def load_user(user_id: str) -> AppUser | None:
    raw_id, _, token = user_id.partition(":")
    if not raw_id.isdigit():
        return None
    user = get_session().scalars(select(User).where(User.id == int(raw_id))).first()
    if user is None or not user.active or user.password_hash[-12:] != token:
        return None
    return AppUser.from_row(user)


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


class LoginRateLimiter:
    """Failed logins per key within a sliding window (in process memory, per worker)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float, window: float) -> deque[float]:
        entries = self._failures[key]
        while entries and entries[0] <= now - window:
            entries.popleft()
        return entries

    def blocked(self, keys: list[str], limit: int, window: float) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._trim(key, now, window)) >= limit for key in keys)

    def fail(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._failures[key].append(now)

    def reset(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def login_limiter() -> LoginRateLimiter:
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
    app.extensions["login_limiter"] = LoginRateLimiter()
    app.after_request(_security_headers)
