from __future__ import annotations

import re

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from astertrack.db.models import Manager, User
from astertrack.passwords import MIN_LENGTH, hash_password
from webadmin.db import commit_or_conflict, get_session
from webadmin.i18n import LOCALES
from webadmin.security import ROLES, roles_required
from webadmin.users import bp

LOGIN = re.compile(r"^[A-Za-z0-9._@-]{2,80}$")


@bp.get("/")
@roles_required("admin")
def index():
    db = get_session()
    users = db.scalars(select(User).order_by(User.login)).all()
    return render_template("users/list.html", users=users)


@bp.route("/new", methods=["GET", "POST"])
@roles_required("admin")
def create():
    return _edit(None)


@bp.route("/<int:user_id>", methods=["GET", "POST"])
@roles_required("admin")
def edit(user_id: int):
    user = get_session().get(User, user_id)
    if user is None:
        abort(404)
    return _edit(user)


def _edit(user: User | None):
    db = get_session()
    managers = db.execute(select(Manager.id, Manager.name).order_by(Manager.name)).all()
    errors: dict[str, str] = {}
    form = request.form if request.method == "POST" else None
    if form is not None:
        login = (form.get("login") or "").strip()
        role = form.get("role")
        manager_raw = form.get("manager_id") or ""
        locale = form.get("locale") or None
        password = form.get("password") or ""
        if not LOGIN.match(login):
            errors["login"] = _("2–80 letters, digits, dots, dashes, @ or underscores.")
        if role not in ROLES:
            errors["role"] = _("Choose a role.")
        manager_id = int(manager_raw) if manager_raw.isdigit() and db.get(Manager, int(manager_raw)) else None
        if role == "manager" and manager_id is None:
            errors["manager_id"] = _("A manager user must be linked to a manager (phone).")
        if locale not in (None, *LOCALES):
            errors["locale"] = _("Choose a language.")
        if (user is None or password) and len(password) < MIN_LENGTH:
            errors["password"] = _("At least %(n)s characters.", n=MIN_LENGTH)
        active = form.get("active") == "on"
        if user is not None and user.id == current_user.id and (role != "admin" or not active):
            errors["role"] = _("You cannot remove your own admin access.")
        if not errors:
            target = user or User()
            target.login, target.role, target.manager_id, target.locale, target.active = (
                login, role, manager_id, locale, active)
            if password:
                target.password_hash = hash_password(password)
            if user is None:
                db.add(target)
            if commit_or_conflict(db):
                flash(_("Saved."), "ok")
                return redirect(url_for("users.index"))
            errors["login"] = _("This login is taken.")
    return render_template("users/edit.html", user=user, form=form, errors=errors, managers=managers, roles=ROLES,
                           locales=LOCALES), (400 if errors else 200)
