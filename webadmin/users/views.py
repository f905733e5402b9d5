from __future__ import annotations

from flask import abort, flash, redirect, render_template, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user
from sqlalchemy import select

from astertrack.audit import log as audit_log
from astertrack.db.models import User
from astertrack.passwords import hash_password
from webadmin.db import get_session
from webadmin.security import ROLES, AppUser, end_user_sessions, roles_required, start_session
from webadmin.settings.audit import record_change
from webadmin.users import bp
from webadmin.users.forms import OwnPasswordForm, UserForm


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
    form = UserForm(db, user, current_user.id)
    if form.validate_on_submit():
        before = audit_log.fields_of(user) if user is not None else None
        target = user or User()
        target.login, target.role, target.manager_id, target.locale, target.active = (
            form.login.data, form.role.data, form.manager_id.data, form.locale.data, form.active.data)
        if form.password.data:
            target.password_hash = hash_password(form.password.data)
        if user is not None and (form.password.data or not form.active.data):
            end_user_sessions(db, user.id)  # a new password or a disabled account: every session ends now
        if user is None:
            db.add(target)
        def after() -> dict:  # the log names a new password, never its hash
            return {**audit_log.fields_of(target), **({"password_changed": True} if form.password.data else {})}

        if record_change(db, "create" if user is None else "update", "users", target, before, after):
            flash(_("Saved."), "ok")
            return redirect(url_for("users.index"))
        form.login.errors.append(_("This login is taken."))
    return render_template("users/edit.html", user=user, form=form), (400 if form.errors else 200)


@bp.route("/me/password", methods=["GET", "POST"])
@roles_required(*ROLES)
def own_password():
    """Any user changes their own password; every other session of theirs ends, this one goes on
    under a fresh token."""
    db = get_session()
    user = db.get(User, current_user.id)
    if user is None:
        abort(404)
    form = OwnPasswordForm(user)
    if form.validate_on_submit():
        user.password_hash = hash_password(form.new.data)
        end_user_sessions(db, user.id)
        db.commit()
        session.clear()  # the old token is gone; a new session keeps this browser logged in
        start_session(user)
        login_user(AppUser.from_row(user))
        flash(_("Your password is changed; your other sessions have ended."), "ok")
        return redirect(url_for("users.own_password"), code=303)
    return render_template("users/password.html", form=form), (400 if form.errors else 200)
