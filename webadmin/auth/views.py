from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from astertrack.db.models import User
from astertrack.db.types import utcnow
from astertrack.passwords import hash_password, verify_password
from webadmin.auth import bp
from webadmin.db import get_session
from webadmin.i18n import LOCALES
from webadmin.security import AppUser, login_limiter


# Verifying against a real hash when the login is unknown keeps the response time the same,
# so timing does not reveal which logins exist.
@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    if request.method == "POST":
        login_name = (request.form.get("login") or "").strip()[:80]
        password = request.form.get("password") or ""
        ip_key, login_key = f"ip:{request.remote_addr}", f"login:{login_name.casefold()}"
        keys = [ip_key, login_key]
        limiter = login_limiter()
        cfg = current_app.config
        window = cfg["LOGIN_WINDOW_SECONDS"]
        if (limiter.blocked([login_key], cfg["LOGIN_ATTEMPTS"], window)
                or limiter.blocked([ip_key], cfg["LOGIN_ATTEMPTS_PER_ADDRESS"], window)):
            flash(_("Too many failed attempts. Wait a few minutes and try again."), "error")
            return render_template("auth/login.html", login=login_name), 429
        db = get_session()
        user = db.scalars(select(User).where(User.login == login_name)).first()
        ok = verify_password(user.password_hash if user else _dummy_hash(), password)
        if user is None or not ok or not user.active:
            limiter.fail(keys)
            flash(_("Wrong login or password."), "error")
            return render_template("auth/login.html", login=login_name), 401
        limiter.reset([f"login:{login_name.casefold()}"])
        user.last_login_at = utcnow()
        db.commit()
        session.clear()  # a fresh session on login (no fixation)
        login_user(AppUser.from_row(user))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", login="")


@bp.post("/logout")
@login_required
def logout():
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
