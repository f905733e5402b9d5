from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from astertrack.db.models import User
from astertrack.db.types import utcnow
from astertrack.passwords import hash_password, verify_password
from webadmin.auth import bp
from webadmin.db import get_session
from webadmin.i18n import LOCALES
from webadmin.security import AppUser, end_session, login_limiter, start_session


# Verifying against a real hash when the login is unknown keeps the response time the same,
# so timing does not reveal which logins exist.
@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def _safe_next(target: str | None) -> str:
    """A path on this site, or the start page.  Browsers read ``/\\host`` as ``//host`` and drop
    tabs and newlines from URLs, so backslashes and control characters are refused outright."""
    if (target and target.startswith("/") and not target.startswith("//")
            and not any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
            and not urlsplit(target).netloc):
        return target
    return url_for("index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    if request.method == "POST":
        login_name = (request.form.get("login") or "").strip()[:80]
        password = request.form.get("password") or ""
        address, login_key = request.remote_addr or "unknown", login_name.casefold()
        limiter = login_limiter()
        if limiter.admit(address, login_key) is None:
            flash(_("Too many failed attempts. Wait a few minutes and try again."), "error")
            return render_template("auth/login.html", login=login_name), 429
        db = get_session()
        user = db.scalars(select(User).where(User.login == login_name)).first()
        ok = verify_password(user.password_hash if user else _dummy_hash(), password)
        if user is None or not ok or not user.active:
            flash(_("Wrong login or password."), "error")  # the admitted attempt stays counted
            return render_template("auth/login.html", login=login_name), 401
        user.last_login_at = utcnow()
        db.commit()
        limiter.succeeded(address, login_key)
        session.clear()  # a fresh session on login (no fixation)
        start_session(user)
        login_user(AppUser.from_row(user))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", login="")


@bp.post("/logout")
@login_required
def logout():
    end_session()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/locale")
@login_required
def set_locale():
    locale = request.form.get("locale")
    if locale in LOCALES:
        db = get_session()
        user = db.get(User, current_user.id)
        if user is not None:
            user.locale = locale
            db.commit()
    return redirect(_safe_next(request.form.get("next")))
