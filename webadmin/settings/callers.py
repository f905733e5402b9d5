"""Callers: the VIP mark and tags of a caller's profile, which routing rules match on
(``{"vip": true}``, ``{"caller_tags": [...]}``).  A profile is created by the caller's first
call; here it is only found and edited (its call history stays as the calls wrote it)."""

from __future__ import annotations

import re

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import or_, select

from astertrack.db.models import CallerProfile, Site
from webadmin.db import commit_or_conflict, get_session
from webadmin.security import roles_required
from webadmin.settings import bp
from webadmin.settings.forms import CallerForm

PAGE = 200


@bp.get("/callers/")
@roles_required("admin")
def callers():
    db = get_session()
    query = (request.args.get("q") or "").strip()[:80]
    stmt = select(CallerProfile).order_by(CallerProfile.last_call_at.desc(), CallerProfile.id.desc())
    digits = re.sub(r"\D", "", query)
    if query == "vip":
        stmt = stmt.where(CallerProfile.is_vip.is_(True))
    elif digits:
        stmt = stmt.where(or_(CallerProfile.number.contains(digits, autoescape=True),
                              CallerProfile.name.icontains(query, autoescape=True)))
    elif query:
        stmt = stmt.where(CallerProfile.name.icontains(query, autoescape=True))
    rows = db.scalars(stmt.limit(PAGE)).all()
    sites = dict(db.execute(select(Site.id, Site.name)).all())
    return render_template("settings/callers.html", rows=rows, sites=sites, query=query, page=PAGE)


@bp.route("/callers/<int:profile_id>", methods=["GET", "POST"])
@roles_required("admin")
def caller(profile_id: int):
    db = get_session()
    profile = db.get(CallerProfile, profile_id)
    if profile is None:
        abort(404)
    form = CallerForm(obj=profile).load(db)
    status = 200
    if request.method == "POST":
        if form.validate():
            for name, value in form.values(db).items():
                setattr(profile, name, value)
            if commit_or_conflict(db):
                flash(_("Saved. The change applies to the next call and the next page view."), "ok")
                back = request.args.get("back_call", type=int)
                return redirect(url_for("calls.card", call_id=back) if back else url_for("settings.callers"))
            status = 409
        else:
            status = 400
    site = db.get(Site, profile.site_id) if profile.site_id else None
    return render_template("settings/caller.html", profile=profile, site=site, form=form), status
