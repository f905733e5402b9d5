"""The admin page of API tokens (admins only): create one (shown once, on the answer to the form,
never again), list them by prefix with their site, scope and last use, revoke (kept, not deleted)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from astertrack.db.engine import begin_write
from astertrack.db.models import ApiToken, Site, User
from astertrack.integrations import api_tokens
from webadmin.api import tokens_bp
from webadmin.db import get_session
from webadmin.labels import label_for
from webadmin.security import roles_required
from webadmin.settings.audit import record_change

AUDIT_KIND = "api_tokens"


def _site_or_none(value):
    return int(value) if value not in (None, "", "None") else None


class TokenForm(FlaskForm):
    name = StringField(_l("Name"), [DataRequired(), Length(max=api_tokens.NAME_MAX)],
                       filters=[lambda v: v.strip() if isinstance(v, str) else v],
                       description=_l("Who uses it, e.g. “amoCRM” or “1C”."))
    site_id = SelectField(_l("Site"), coerce=_site_or_none)
    scope = SelectField(_l("Access"), default="write")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        sites = get_session().execute(select(Site.id, Site.name).where(Site.archived_at.is_(None))
                                      .order_by(Site.name)).all()
        self.site_id.choices = [SelectChoice(None, _("every site")), *[SelectChoice(sid, name) for sid, name in sites]]
        self.scope.choices = [SelectChoice(scope, label_for(scope, "api_scope")) for scope in api_tokens.SCOPES]


class RevokeForm(FlaskForm):
    """The revoke button: only the CSRF token."""


def _fields(row: ApiToken) -> dict:
    return {"name": row.name, "prefix": row.prefix, "site_id": row.site_id, "scope": row.scope,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}


def _page(form: TokenForm, shown: tuple[ApiToken, str] | None = None, status: int = 200):
    db = get_session()
    rows = db.execute(select(ApiToken, Site.name, User.login).outerjoin(Site, Site.id == ApiToken.site_id)
                      .outerjoin(User, User.id == ApiToken.user_id)
                      .order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc())).all()
    return render_template("api/tokens.html", form=form, rows=rows, shown=shown, revoke=RevokeForm(formdata=None),
                           endpoint=url_for("api.set_lead_state", _external=True)), status


@tokens_bp.get("/")
@roles_required("admin")
def index():
    return _page(TokenForm(formdata=None))


@tokens_bp.post("/")
@roles_required("admin")
def create():
    form = TokenForm()
    if not form.validate():
        return _page(form, status=400)
    db = get_session()
    db.commit()
    begin_write(db)
    site_id = form.site_id.data
    if site_id is not None and db.get(Site, site_id) is None:
        form.site_id.errors = [_("That site no longer exists.")]
        return _page(form, status=400)
    row, plain = api_tokens.create(db, form.name.data, site_id, form.scope.data, user_id=current_user.id)
    if not record_change(db, "create", AUDIT_KIND, row, None, lambda: _fields(row)):
        flash(_("The token was not created; try again."), "error")
        return redirect(url_for("api_tokens.index"))
    # The only time the token is shown: on this answer, which is never cached (Cache-Control: no-store).
    return _page(TokenForm(formdata=None), shown=(row, plain))


@tokens_bp.post("/<int:token_id>/revoke")
@roles_required("admin")
def revoke(token_id: int):
    form = RevokeForm()
    if not form.validate():
        flash(_("The form expired; try again."), "error")
        return redirect(url_for("api_tokens.index"))
    db = get_session()
    db.commit()
    begin_write(db)
    row = db.get(ApiToken, token_id)
    if row is None:
        db.rollback()
        return redirect(url_for("api_tokens.index"))
    before = _fields(row)
    if api_tokens.revoke(db, row):
        record_change(db, "update", AUDIT_KIND, row, before, lambda: _fields(row))
        flash(_("Token %(prefix)s… revoked: it no longer works.", prefix=row.prefix), "ok")
    else:
        db.rollback()
    return redirect(url_for("api_tokens.index"))
