"""Settings pages: list, create, edit, archive and restore, and delete only what nothing refers
to (after a page saying what would be affected).  Every change writes its audit-log row in the
same transaction (``webadmin.settings.audit``)."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from wtforms.fields.choices import SelectChoice

from astertrack.audit import references
from astertrack.db.models import NumberPool, Site, TrackingPrice
from astertrack.db.types import utcnow
from astertrack.ops import retention
from webadmin.db import get_session
from webadmin.security import roles_required
from webadmin.settings import bp, forms
from webadmin.settings.audit import record_change, row_fields
from webadmin.settings.crud import ENTITIES, REFERRER_LABELS, Entity, archived_labels


def _entity(slug: str) -> Entity:
    entity = ENTITIES.get(slug)
    if entity is None:
        abort(404)
    return entity


def _object(entity: Entity, obj_id: int):
    obj = get_session().get(entity.model, obj_id)
    if obj is None:
        abort(404)
    return obj


@bp.get("/")
@roles_required("admin")
def index():
    db = get_session()
    counts = {slug: db.scalar(select(func.count()).select_from(e.model).where(e.model.archived_at.is_(None)))
              for slug, e in ENTITIES.items()}
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
    show_archived = request.args.get("archived") == "1"
    archived = entity.model.archived_at
    rows = db.scalars(select(entity.model).where(archived.is_not(None) if show_archived else archived.is_(None))
                      .order_by(entity.order_by).limit(2000)).all()
    archived_count = db.scalar(select(func.count()).select_from(entity.model).where(archived.is_not(None)))
    form = entity.form(formdata=None).load(db)
    headers = {field.name: field.label.text for field in form.fields()}
    return render_template("settings/list.html", entity=entity, rows=rows, labels=archived_labels(db, form),
                           headers=headers, show_archived=show_archived, archived_count=archived_count)


@bp.route("/<slug>/new", methods=["GET", "POST"])
@roles_required("admin")
def create(slug: str):
    entity = _entity(slug)
    return _edit(entity, None)


@bp.route("/<slug>/<int:obj_id>", methods=["GET", "POST"])
@roles_required("admin")
def edit(slug: str, obj_id: int):
    entity = _entity(slug)
    return _edit(entity, _object(entity, obj_id))


# What a site's pages load: README "Putting the snippet on a website" (the tracker served under
# /ct/ of the site's own domain, so it stays first-party).
SNIPPET_TAG = '<script async src="/ct/v.js" data-key="{key}"></script>'


def _keep_archived_choices(db, form: forms.SettingsForm, obj) -> None:
    """An archived row the object already points at stays a choice (marked), so saving an
    unrelated field does not fail on it; new picks offer only active rows."""
    if obj is None:
        return
    for field in form.fields():
        if not isinstance(field, (forms.Row, forms.Rows)) or not hasattr(field.model, "archived_at"):
            continue
        current = getattr(obj, field.name)
        ids = [item.id for item in current] if isinstance(field, forms.Rows) else [current]
        offered = {choice.value for choice in field.choices}
        for row in db.scalars(select(field.model).where(field.model.id.in_([i for i in ids if i is not None]),
                                                        field.model.archived_at.is_not(None))):
            if row.id not in offered:
                name = getattr(row, "name", None) or getattr(row, "number", None)
                field.choices.append(SelectChoice(row.id, _("%(name)s (archived)", name=name)))


def _price_row(db, obj) -> TrackingPrice | None:
    """The pool's or number's prices (#27), kept in their own table."""
    if obj is None or obj.id is None:
        return None
    column = TrackingPrice.pool_id if isinstance(obj, NumberPool) else TrackingPrice.number_id
    return db.scalars(select(TrackingPrice).where(column == obj.id)).first()


def _price_values(price: TrackingPrice | None, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(price, name) if price is not None else None for name in names}


def _save_prices(db, target, price: TrackingPrice | None, values: dict[str, Any]) -> None:
    """Prices go to ``TrackingPrice``; a form with none set leaves no row behind."""
    if price is None:
        if all(value is None for value in values.values()):
            return
        price = TrackingPrice(pool=target) if isinstance(target, NumberPool) else TrackingPrice(number=target)
        db.add(price)
    for name, value in values.items():
        setattr(price, name, value if value is not None or name != "currency" else "RUB")


def _edit(entity: Entity, obj):
    db = get_session()
    price_names = getattr(entity.form, "PRICE_FIELDS", ())
    price = _price_row(db, obj) if price_names else None
    stored_prices = _price_values(price, price_names) if price is not None else {}
    form = entity.form(obj=obj, data=None if obj is not None else entity.defaults(), **stored_prices).load(db)
    _keep_archived_choices(db, form, obj)
    status = 200
    if request.method == "POST":
        if form.validate():
            relations = [field.name for field in form.fields() if isinstance(field, forms.Rows)]
            before = {**row_fields(obj, relations), **{k: _audit_value(v) for k, v in stored_prices.items()}} \
                if obj is not None else None
            target = obj if obj is not None else entity.model()
            values = form.values(db)
            prices = {name: values.pop(name) for name in price_names}
            for name, value in values.items():
                setattr(target, name, value)
            if obj is None:
                db.add(target)
            if price_names:
                _save_prices(db, target, price, prices)
            if record_change(db, "create" if obj is None else "update", entity.slug, target, before,
                             lambda: {**row_fields(target, relations),
                                      **{k: _audit_value(v) for k, v in prices.items()
                                         if obj is not None or v is not None}}):
                flash(_("Saved. The change applies to the next call and the next page view."), "ok")
                return redirect(url_for("settings.listing", slug=entity.slug))
            flash(_("Not saved: another record already uses one of these unique values (name or number)."), "error")
            status = 409
        else:
            status = 400
    snippet = SNIPPET_TAG.format(key=obj.public_key) if entity.model is Site and obj is not None else None
    return render_template("settings/edit.html", entity=entity, obj=obj, form=form, snippet=snippet), status


def _audit_value(value: Any) -> Any:
    """A price or a date as the audit log stores values (JSON)."""
    return str(value) if value is not None and not isinstance(value, (str, int, float, bool)) else value


@bp.post("/<slug>/<int:obj_id>/archive")
@roles_required("admin")
def archive(slug: str, obj_id: int):
    """Out of routing and pickers; every call, lead, cost and session keeps pointing at it."""
    entity = _entity(slug)
    obj = _object(entity, obj_id)
    db = get_session()
    if obj.archived_at is None:
        obj.archived_at = utcnow()
        record_change(db, "archive", entity.slug, obj, {"archived_at": None},
                      lambda: {"archived_at": obj.archived_at.isoformat()})
        flash(_("Archived: “%(name)s” no longer takes calls or visits; its history stays.",
                name=getattr(obj, "name", None) or getattr(obj, "number", obj.id)), "ok")
    return redirect(url_for("settings.listing", slug=entity.slug))


@bp.post("/<slug>/<int:obj_id>/restore")
@roles_required("admin")
def restore(slug: str, obj_id: int):
    entity = _entity(slug)
    obj = _object(entity, obj_id)
    db = get_session()
    if obj.archived_at is not None:
        before = {"archived_at": obj.archived_at.isoformat()}
        obj.archived_at = None
        record_change(db, "restore", entity.slug, obj, before, lambda: {"archived_at": None})
        flash(_("Restored: “%(name)s” is back in routing and in the pickers.",
                name=getattr(obj, "name", None) or getattr(obj, "number", obj.id)), "ok")
    return redirect(url_for("settings.listing", slug=entity.slug, archived="1" if request.form.get("back") else None))


def _references(entity: Entity, obj) -> list[tuple[str, Any, int]]:
    counts = references.count_references(get_session(), entity.model.__tablename__, obj.id)
    return [(table, REFERRER_LABELS.get(table, table), count) for table, count in counts.items()]


@bp.get("/<slug>/<int:obj_id>/delete")
@roles_required("admin")
def confirm_delete(slug: str, obj_id: int):
    """What a delete would affect; with references it offers archive instead, and says why."""
    entity = _entity(slug)
    obj = _object(entity, obj_id)
    return render_template("settings/delete.html", entity=entity, obj=obj, refs=_references(entity, obj))


@bp.post("/<slug>/<int:obj_id>/delete")
@roles_required("admin")
def delete(slug: str, obj_id: int):
    entity = _entity(slug)
    obj = _object(entity, obj_id)
    db = get_session()
    refs = _references(entity, obj)
    if refs:
        flash(_("Not deleted: other records refer to it (%(what)s). Archive it instead.",
                what=", ".join(f"{label}: {count}" for _table, label, count in refs)), "error")
        return render_template("settings/delete.html", entity=entity, obj=obj, refs=refs), 409
    before = row_fields(obj, [field.name for field in entity.form(formdata=None).fields()
                              if isinstance(field, forms.Rows)])
    db.delete(obj)
    if record_change(db, "delete", entity.slug, obj, before, lambda: None):
        flash(_("Deleted."), "ok")
    else:
        flash(_("Cannot delete: other records still refer to it."), "error")
    return redirect(url_for("settings.listing", slug=entity.slug))

