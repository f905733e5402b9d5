"""The widget page: one site's widget settings, saved through the settings audit log."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from astertrack.db.engine import begin_write
from astertrack.db.models import Site, SiteWidget
from astertrack.db.types import utcnow
from astertrack.leads import widget as core
from webadmin.db import get_session
from webadmin.security import roles_required
from webadmin.settings.audit import record_change
from webadmin.site_pages import first_site_page, site_or_404
from webadmin.widget import bp
from webadmin.widget.forms import LANGUAGE_LABELS, WidgetForm

AUDIT_KIND = "widget"
FIELDS = ("popup_enabled", "callback_enabled", "chat_enabled", "colour", "position", "popup_delay_seconds",
          "popup_exit_intent", "popup_page_views", "popup_url_contains", "popup_utm", "popup_period_days",
          "chat_wait_seconds", "chat_retention_days")
DEFAULTS = {"chat_wait_seconds": 90, "chat_retention_days": 365}  # an empty field: the column's default


def audit_fields(row: SiteWidget) -> dict:
    fields = {name: getattr(row, name) for name in FIELDS}
    for lang, texts in (row.texts or {}).items():
        fields.update({f"text_{lang}_{key}": value for key, value in texts.items()})
    return fields


def _page(site: Site, form: WidgetForm, status: int = 200):
    db = get_session()
    return render_template("widget/index.html", site=site, form=form, languages=LANGUAGE_LABELS,
                           text_keys=core.TEXT_KEYS,
                           sites=db.scalars(select(Site).where(Site.archived_at.is_(None)).order_by(Site.name)).all()
                           ), status


@bp.get("/")
@roles_required("admin")
def index():
    return first_site_page("widget.site")


@bp.get("/<int:site_id>/")
@roles_required("admin")
def site(site_id: int):
    record = site_or_404(site_id)
    row = core.load(get_session(), site_id) or SiteWidget(colour="#1f6feb", position="bottom-right",
                                                          popup_period_days=7, popup_delay_seconds=0,
                                                          popup_page_views=0, chat_enabled=False,
                                                          chat_wait_seconds=90, chat_retention_days=365)
    data = {name: getattr(row, name) for name in FIELDS}
    data["popup_url_contains"] = "\n".join(row.popup_url_contains or [])
    data["popup_utm"] = "\n".join(row.popup_utm or [])
    for lang, texts in (row.texts or {}).items():
        data.update({f"text_{lang}_{key}": value for key, value in texts.items()})
    return _page(record, WidgetForm(formdata=None, data=data))


@bp.post("/<int:site_id>/")
@roles_required("admin")
def save(site_id: int):
    record = site_or_404(site_id)
    form = WidgetForm()
    if not form.validate():
        return _page(record, form, status=400)
    db = get_session()
    db.commit()
    begin_write(db)
    row = core.load(db, site_id)
    before = audit_fields(row) if row is not None else None
    if row is None:
        row = SiteWidget(site_id=site_id, revision=0)
        db.add(row)
    for name in FIELDS:
        value = getattr(form, name).data
        if value is None and name.endswith(("_seconds", "_views", "_days")):
            value = DEFAULTS.get(name, 0)
        setattr(row, name, value)
    row.texts = core.clean_texts({lang: {key: getattr(form, f"text_{lang}_{key}").data for key in core.TEXT_KEYS}
                                  for lang in core.LANGUAGES})
    row.revision = (row.revision or 0) + 1
    row.updated_at = utcnow()
    row.name = record.name  # the audit log's label: the site's name (not a column)
    if not record_change(db, "update" if before else "create", AUDIT_KIND, row, before, lambda: audit_fields(row)):
        flash(_("The settings were not saved; try again."), "error")
    else:
        flash(_("Widget settings saved. Sites pick them up within the tracker's cache time."), "ok")
    return redirect(url_for("widget.site", site_id=site_id))
