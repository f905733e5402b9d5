"""The conversions page: a site's settings and rules (secrets masked), "send now", the Metrica and
Google Ads upload files, and the send log with the platforms' answers (escaped by Jinja).  Every
settings change is written to the settings audit log, secrets only masked."""

from __future__ import annotations

from decimal import Decimal

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from astertrack.db.engine import begin_write
from astertrack.db.models import ConversionLog, ConversionRule, ConversionSettings, Site
from astertrack.db.types import utcnow
from astertrack.integrations.conversions import PLATFORMS, export, rules, sender
from astertrack.integrations.conversions.log import STATUSES
from webadmin.conversions import bp
from webadmin.conversions.forms import ConversionForm, FilterForm
from webadmin.db import get_session, session_factory
from webadmin.security import roles_required
from webadmin.settings.audit import record_change
from webadmin.site_pages import first_site_page, site_or_404

AUDIT_KIND = "conversions"
LOG_LIMIT = 200
SETTINGS_FIELDS = ("ga4_enabled", "ga4_measurement_id", "ga4_call_event", "ga4_lead_event", "metrica_enabled",
                   "metrica_counter_id", "google_ads_enabled", "google_ads_conversion_name", "google_ads_timezone",
                   "currency")
SECRET_FIELDS = ("ga4_api_secret", "metrica_token")
RULE_FIELDS = ("calls", "first_time_only", "call_value", "lead_state", "lead_value", "lead_fixed_value")
PLATFORM_LABELS = {"ga4": "Google Analytics 4", "metrica": _l("Yandex Metrica"), "google_ads": "Google Ads"}
STATUS_LABELS = {"sending": _l("Sending"), "sent": _l("Sent"), "refused": _l("Refused"),
                 "failed": _l("Failed, will retry"), "skipped": _l("Skipped"), "exported": _l("Exported to a file")}
REASON_LABELS = {"no_gclid": _l("no gclid"), "no_client_id": _l("no client id"), "too_old": _l("too old"),
                 "rule": _l("rule not met"), "not_a_call": _l("not a call"), "validation": _l("refused by the platform"),
                 "network": _l("network error"), "unavailable": _l("platform unavailable"),
                 "gave_up": _l("gave up after the last attempt")}


def _rows(db, site_id: int) -> tuple[ConversionSettings | None, ConversionRule | None]:
    return (db.scalar(select(ConversionSettings).where(ConversionSettings.site_id == site_id)),
            db.scalar(select(ConversionRule).where(ConversionRule.site_id == site_id)))


def _audit_fields(settings: ConversionSettings | None, rule: ConversionRule | None) -> dict:
    """What the log keeps: every setting and rule, the secrets only masked."""
    fields: dict = {}
    if settings is not None:
        fields.update({name: getattr(settings, name) for name in SETTINGS_FIELDS})
        fields.update({name: rules.mask(getattr(settings, name)) for name in SECRET_FIELDS})
    if rule is not None:
        for name in RULE_FIELDS:
            value = getattr(rule, name)
            fields[name] = str(value) if isinstance(value, Decimal) else value
    return fields


def _log_rows(db, site_id: int, platform: str | None, status: str | None):
    query = (select(ConversionLog).where(ConversionLog.site_id == site_id)
             .order_by(ConversionLog.updated_at.desc(), ConversionLog.id.desc()).limit(LOG_LIMIT))
    if platform:
        query = query.where(ConversionLog.platform == platform)
    if status:
        query = query.where(ConversionLog.status == status)
    return db.scalars(query).all()


def _page(site: Site, form: ConversionForm, status: int = 200):
    db = get_session()
    settings, _rule = _rows(db, site.id)
    platform = request.args.get("platform") if request.args.get("platform") in PLATFORMS else None
    state = request.args.get("status") if request.args.get("status") in STATUSES else None
    return render_template(
        "conversions/index.html", site=site, form=form, button=FilterForm(formdata=None),
        sites=db.scalars(select(Site).where(Site.archived_at.is_(None)).order_by(Site.name)).all(),
        masked={name: rules.mask(getattr(settings, name, None)) for name in SECRET_FIELDS},
        log=_log_rows(db, site.id, platform, state), platform=platform, status=state,
        platform_labels=PLATFORM_LABELS, status_labels=STATUS_LABELS, reason_labels=REASON_LABELS,
        enabled=sender.enabled_platforms(settings) if settings else []), status


@bp.get("/")
@roles_required("admin")
def index():
    return first_site_page("conversions.site")


@bp.get("/<int:site_id>/")
@roles_required("admin")
def site(site_id: int):
    record = site_or_404(site_id)
    settings, rule = _rows(get_session(), site_id)
    data = {name: getattr(settings, name) for name in SETTINGS_FIELDS} if settings else {"currency": "RUB"}
    if rule is not None:
        data.update({name: getattr(rule, name) for name in RULE_FIELDS})
        data["lead_state"] = rule.lead_state or ""
    else:
        data.update({"calls": "answered", "lead_state": "", "lead_value": "amount"})
    for name in ("call_value", "lead_fixed_value"):
        if data.get(name) is not None:
            data[name] = str(data[name])
    return _page(record, ConversionForm(formdata=None, data=data))


@bp.post("/<int:site_id>/")
@roles_required("admin")
def save(site_id: int):
    record = site_or_404(site_id)
    form = ConversionForm()
    if not form.validate():
        return _page(record, form, status=400)
    db = get_session()
    db.commit()
    begin_write(db)
    settings, rule = _rows(db, site_id)
    before = _audit_fields(settings, rule) if settings or rule else None
    if settings is None:
        settings = ConversionSettings(site_id=site_id)
        db.add(settings)
    if rule is None:
        rule = ConversionRule(site_id=site_id)
        db.add(rule)
    for name in SETTINGS_FIELDS:
        setattr(settings, name, getattr(form, name).data)
    for name in SECRET_FIELDS:  # an empty field keeps the saved secret
        if getattr(form, name).data:
            setattr(settings, name, getattr(form, name).data)
    settings.updated_at = utcnow()
    for name in RULE_FIELDS:
        setattr(rule, name, getattr(form, name).data)
    rule.lead_state = form.lead_state.data or None
    settings.name = record.name  # the audit log's label: the site's name (not a column)
    if not record_change(db, "update" if before else "create", AUDIT_KIND, settings, before,
                         lambda: _audit_fields(settings, rule)):
        flash(_("The settings were not saved; try again."), "error")
    else:
        flash(_("Conversion settings saved."), "ok")
    return redirect(url_for("conversions.site", site_id=site_id))


@bp.post("/<int:site_id>/send")
@roles_required("admin")
def send(site_id: int):
    site_or_404(site_id)
    if not FilterForm().validate():
        flash(_("The form expired; try again."), "error")
        return redirect(url_for("conversions.site", site_id=site_id))
    get_session().commit()  # the run uses its own sessions
    counts = sender.run(session_factory(), current_app.config["ASTERTRACK_CONFIG"], site_id=site_id)
    for platform in sender.SENT_PLATFORMS:
        flash(_("%(platform)s — sent: %(sent)s, skipped: %(skipped)s, refused: %(refused)s, to retry: %(failed)s",
                platform=PLATFORM_LABELS[platform], sent=counts.sent[platform],
                skipped=counts.total_skipped(platform), refused=counts.refused[platform],
                failed=counts.failed[platform]), "ok")
    return redirect(url_for("conversions.site", site_id=site_id))


@bp.get("/<int:site_id>/export/<platform>.csv")
@roles_required("admin")
def download(site_id: int, platform: str):
    site_or_404(site_id)
    if platform not in export.EXPORT_PLATFORMS:
        abort(404)
    config = current_app.config["ASTERTRACK_CONFIG"]
    db = get_session()
    try:
        result = export.build(db, site_id, platform, utcnow(), call_url=lambda call_id: sender.call_url(config, call_id))
    except export.ExportError:
        flash(_("Save this platform's settings first."), "error")
        return redirect(url_for("conversions.site", site_id=site_id))
    finally:
        db.rollback()  # a download records nothing
    return Response(result.text, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{platform}-site{site_id}.csv"', "Cache-Control": "no-store"})
