"""The messengers page: a site's Telegram bot (the token only masked) and WhatsApp webhook secret,
the webhook addresses to give Telegram and the provider, and "register the webhook with Telegram".
Every change goes to the settings audit log, secrets only masked."""

from __future__ import annotations

import secrets

from flask import current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from astertrack.db.engine import begin_write
from astertrack.db.models import Site, SiteMessengers
from astertrack.db.types import utcnow
from astertrack.integrations.conversions.rules import mask
from astertrack.leads import messengers
from webadmin.db import get_session
from webadmin.messengers import bp
from webadmin.messengers.forms import ButtonForm, MessengerForm
from webadmin.security import roles_required
from webadmin.settings.audit import record_change
from webadmin.site_pages import first_site_page, site_or_404

AUDIT_KIND = "messengers"
FIELDS = ("telegram_enabled", "telegram_bot_username", "whatsapp_enabled")


def _audit_fields(row: SiteMessengers) -> dict:
    return {**{name: getattr(row, name) for name in FIELDS},
            "telegram_bot_token": messengers.masked_token(row.telegram_bot_token),
            "whatsapp_secret": mask(row.whatsapp_secret)}


def _page(site: Site, form: MessengerForm, status: int = 200):
    db = get_session()
    row = db.get(SiteMessengers, site.id)
    base = current_app.config["ASTERTRACK_CONFIG"].values["messengers"]["tracker_url"].rstrip("/")
    return render_template(
        "messengers/index.html", site=site, form=form, button=ButtonForm(formdata=None), row=row,
        sites=db.scalars(select(Site).where(Site.archived_at.is_(None)).order_by(Site.name)).all(),
        token=messengers.masked_token(row.telegram_bot_token if row else None),
        wa_secret=mask(row.whatsapp_secret if row else None), base=base), status


@bp.app_template_global()
def messenger_messages(lead_id: int) -> list:
    """The lead card's messenger conversation (its text is escaped by Jinja)."""
    return messengers.messages_of_lead(get_session(), lead_id)


@bp.get("/")
@roles_required("admin")
def index():
    return first_site_page("messengers.site")


@bp.get("/<int:site_id>/")
@roles_required("admin")
def site(site_id: int):
    record = site_or_404(site_id)
    row = get_session().get(SiteMessengers, site_id)
    data = {name: getattr(row, name) for name in FIELDS} if row else {}
    return _page(record, MessengerForm(formdata=None, data=data))


@bp.post("/<int:site_id>/")
@roles_required("admin")
def save(site_id: int):
    record = site_or_404(site_id)
    form = MessengerForm()
    if not form.validate():
        return _page(record, form, status=400)
    db = get_session()
    db.commit()
    begin_write(db)
    row = db.get(SiteMessengers, site_id)
    before = _audit_fields(row) if row else None
    if row is None:
        row = SiteMessengers(site_id=site_id, telegram_enabled=False, whatsapp_enabled=False)
        db.add(row)
    row.telegram_enabled = form.telegram_enabled.data
    row.telegram_bot_username = (form.telegram_bot_username.data or "").lstrip("@") or None
    row.whatsapp_enabled = form.whatsapp_enabled.data
    if form.telegram_bot_token.data:
        if form.telegram_bot_token.data.strip() != row.telegram_bot_token:
            row.telegram_webhook_at = None  # a new bot needs its webhook registered
        row.telegram_bot_token = form.telegram_bot_token.data.strip()
    if form.whatsapp_secret.data:
        row.whatsapp_secret = form.whatsapp_secret.data.strip()
    if row.telegram_secret is None:  # what Telegram sends back on each update; never typed or shown
        row.telegram_secret = secrets.token_urlsafe(32)
    row.updated_at = utcnow()
    row.name = record.name  # the audit log's label
    if not record_change(db, "update" if before else "create", AUDIT_KIND, row, before, lambda: _audit_fields(row)):
        flash(_("The settings were not saved; try again."), "error")
    else:
        flash(_("Messenger settings saved."), "ok")
    return redirect(url_for("messengers.site", site_id=site_id))


@bp.post("/<int:site_id>/telegram-webhook")
@roles_required("admin")
def register_webhook(site_id: int):
    record = site_or_404(site_id)
    if not ButtonForm().validate():
        flash(_("The form expired; try again."), "error")
        return redirect(url_for("messengers.site", site_id=site_id))
    db = get_session()
    row = db.get(SiteMessengers, site_id)
    if row is None:
        flash(_("Save the bot's token first."), "error")
        return redirect(url_for("messengers.site", site_id=site_id))
    settings = current_app.config["ASTERTRACK_CONFIG"].values["messengers"]
    try:
        url = messengers.set_telegram_webhook(row, record, api_url=settings["telegram_api_url"],
                                              tracker_url=settings["tracker_url"], timeout=settings["timeout"])
    except messengers.TelegramError as exc:
        db.rollback()
        flash(_("Telegram did not take the webhook: %(reason)s", reason=str(exc)), "error")
    else:
        db.commit()
        flash(_("Telegram will send the bot's messages to %(url)s.", url=url), "ok")
    return redirect(url_for("messengers.site", site_id=site_id))
