from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from astertrack.db.models import Site
from astertrack.ops import retention
from webadmin.db import commit_or_conflict, get_session
from webadmin.security import roles_required
from webadmin.settings import bp
from webadmin.settings.crud import ENTITIES, Entity


def _entity(slug: str) -> Entity:
    entity = ENTITIES.get(slug)
    if entity is None:
        abort(404)
    return entity


@bp.get("/")
@roles_required("admin")
def index():
    db = get_session()
    counts = {slug: db.query(e.model).count() for slug, e in ENTITIES.items()}
    # Storage: what recordings take on disk, and what the nightly retention sweep last freed.
    usage = retention.recordings_disk_usage(current_app.config["RECORDINGS_DIR"])
    report = retention.last_report(current_app.config["DATA_DIR"])
    return render_template("settings/index.html", entities=ENTITIES, counts=counts, usage=usage,
                           retention_report=report, human_bytes=retention.human_bytes)


@bp.get("/<slug>/")
@roles_required("admin")
def listing(slug: str):
    entity = _entity(slug)
    db = get_session()
    rows = db.scalars(select(entity.model).order_by(entity.order_by).limit(2000)).all()
    labels = entity.form(formdata=None).load(db).labels()
    return render_template("settings/list.html", entity=entity, rows=rows, labels=labels)


@bp.route("/<slug>/new", methods=["GET", "POST"])
@roles_required("admin")
def create(slug: str):
    entity = _entity(slug)
    return _edit(entity, None)


@bp.route("/<slug>/<int:obj_id>", methods=["GET", "POST"])
@roles_required("admin")
def edit(slug: str, obj_id: int):
    entity = _entity(slug)
    obj = get_session().get(entity.model, obj_id)
    if obj is None:
        abort(404)
    return _edit(entity, obj)


# What a site's pages load: README "Putting the snippet on a website" (the tracker served under
# /ct/ of the site's own domain, so it stays first-party).
SNIPPET_TAG = '<script async src="/ct/v.js" data-key="{key}"></script>'


def _edit(entity: Entity, obj):
    db = get_session()
    form = entity.form(obj=obj, data=None if obj is not None else entity.defaults()).load(db)
    status = 200
    if request.method == "POST":
        if form.validate():
            target = obj if obj is not None else entity.model()
            for name, value in form.values(db).items():
                setattr(target, name, value)
            if obj is None:
                db.add(target)
            if commit_or_conflict(db):
                flash(_("Saved. The change applies to the next call and the next page view."), "ok")
                return redirect(url_for("settings.listing", slug=entity.slug))
            flash(_("Not saved: another record already uses one of these unique values (name or number)."), "error")
            status = 409
        else:
            status = 400
    snippet = SNIPPET_TAG.format(key=obj.public_key) if entity.model is Site and obj is not None else None
    return render_template("settings/edit.html", entity=entity, obj=obj, form=form, snippet=snippet), status


@bp.post("/<slug>/<int:obj_id>/delete")
@roles_required("admin")
def delete(slug: str, obj_id: int):
    entity = _entity(slug)
    db = get_session()
    obj = db.get(entity.model, obj_id)
    if obj is None:
        abort(404)
    db.delete(obj)
    if commit_or_conflict(db):
        flash(_("Deleted."), "ok")
    else:
        flash(_("Cannot delete: other records still refer to it."), "error")
    return redirect(url_for("settings.listing", slug=entity.slug))
