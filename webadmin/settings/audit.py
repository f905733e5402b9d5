"""The settings audit log in the admin: the one way a settings or user view writes its log row
(in the same transaction as the change), and the page that reads the log (admins only) with
field names and values as people read them, never raw JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from flask import render_template, request
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from astertrack.audit import log as audit_log
from astertrack.db.models import AuditLog, Manager, Site
from astertrack.integrations.api_tokens import SCOPES
from astertrack.integrations.events import EVENTS as WEBHOOK_EVENTS
from astertrack.leads import STATES
from webadmin.db import get_session
from webadmin.filters import arg_date, arg_int, arg_str
from webadmin.i18n import display_timezone
from webadmin.labels import label_for
from webadmin.security import roles_required
from webadmin.settings import bp
from webadmin.settings.crud import ENTITIES, archived_labels

PAGE_SIZE = 50

ACTION_LABELS = {"create": _l("created"), "update": _l("changed"), "archive": _l("archived"),
                 "restore": _l("restored"), "delete": _l("deleted")}
# The users page's fields (its form needs a database and the acting user to be built)
USER_FIELDS = {"login": _l("Login"), "role": _l("Role"), "manager_id": _l("Manager"), "locale": _l("Language"),
               "active": _l("Active"), "password_changed": _l("Password changed")}
COMMON_FIELDS = {"archived_at": _l("Archived at")}
# Leads (their card and the CRM endpoint log state changes and merges) and API tokens
LEAD_FIELDS = {"status": _l("State"), "amount": _l("Amount"), "currency": _l("Currency"),
               "external_id": _l("External id"), "merged_into_id": _l("Merged into lead")}
TOKEN_FIELDS = {"name": _l("Name"), "prefix": _l("Token starts with"), "site_id": _l("Site"), "scope": _l("Access"),
                "revoked_at": _l("Revoked at")}
WEBHOOK_FIELDS = {"url": _l("Receiver URL"), "events": _l("Events"), "enabled": _l("Enabled"),
                  "resent_delivery": _l("Re-sent delivery")}


def row_fields(obj: Any, relations: Iterable[str] = ()) -> dict[str, Any]:
    """The row's fields for the log; ``relations`` (e.g. a manager's groups) as sorted ids."""
    return audit_log.fields_of(obj, {name: sorted(item.id for item in getattr(obj, name)) for name in relations})


def record_change(db: Session, action: str, kind: str, obj: Any, before: Mapping[str, Any] | None,
                  after: Callable[[], Mapping[str, Any] | None]) -> bool:
    """Flush the change, add its log row, commit both; False (rolled back) on a unique or
    foreign-key conflict.  ``after`` is read after the flush, so a new row has its id."""
    try:
        db.flush()
        audit_log.record(db, action, kind, obj, before, after(), user=current_user)
        db.commit()
    except IntegrityError:
        db.rollback()
        return False
    return True


# ---------------------------------------------------------------- the page


def _kinds() -> dict[str, Any]:
    return {**{slug: entity.title for slug, entity in ENTITIES.items()}, "users": _l("Users"), "leads": _l("Leads"),
            "api_tokens": _l("API tokens"), "webhooks": _l("Webhooks"), "conversions": _l("Conversions"), "widget": _l("Website widget"),
            "messengers": _l("Messengers"), "speech": _l("Speech analytics")}


class _Vocabulary:
    """Field names and value labels of one kind, built once per page."""

    def __init__(self, db: Session, kind: str):
        self.fields: dict[str, Any] = dict(COMMON_FIELDS)
        self.values: dict[str, dict[Any, Any]] = {}
        entity = ENTITIES.get(kind)
        if entity is not None:
            form = entity.form(formdata=None).load(db)
            self.fields.update({field.name: field.label.text for field in form.fields()})
            self.values = archived_labels(db, form)
        elif kind == "users":
            self.fields.update(USER_FIELDS)
            self.values = {"manager_id": dict(db.execute(select(Manager.id, Manager.name)).all()),
                           "role": {role: label_for(role) for role in ("admin", "supervisor", "manager")}}
        elif kind == "leads":
            self.fields.update(LEAD_FIELDS)
            self.values = {"status": {state: label_for(state, "lead_status") for state in STATES}}
        elif kind == "api_tokens":
            self.fields.update(TOKEN_FIELDS)
            self.values = {"site_id": dict(db.execute(select(Site.id, Site.name)).all()),
                           "scope": {scope: label_for(scope, "api_scope") for scope in SCOPES}}
        elif kind == "webhooks":
            self.fields.update(WEBHOOK_FIELDS)
            self.values = {"events": {event: label_for(event, "webhook_event") for event in WEBHOOK_EVENTS}}
        elif kind == "messengers":  # the form's own labels; imported here: its package imports this module
            from webadmin.messengers.forms import MessengerForm

            self.fields.update({field.name: field.label.text for field in MessengerForm(formdata=None, meta={"csrf": False})})
        elif kind == "widget":  # the form's own labels and choices; imported here: its package imports this module
            from webadmin.widget.forms import WidgetForm

            form = WidgetForm(formdata=None, meta={"csrf": False})
            self.fields.update({field.name: f"{field.label.text} ({field.description})" if field.name.startswith("text_")
                                else field.label.text for field in form})
            self.values = {"position": {c.value: c.label for c in form.position.choices}}
        elif kind == "conversions":
            # the form's own labels and choices; imported here: its package imports this module
            from webadmin.conversions.forms import ConversionForm

            form = ConversionForm(formdata=None, meta={"csrf": False})
            self.fields.update({field.name: field.label.text for field in form})
            self.values = {field.name: {c.value: c.label for c in field.choices}
                           for field in form if getattr(field, "choices", None)}

    def field(self, name: str) -> Any:
        return self.fields.get(name, name)

    def value(self, name: str, value: Any) -> str:
        if value is None or value == "" or value == [] or value == {}:
            return "—"
        if isinstance(value, bool):
            return _("yes") if value else _("no")
        labels = self.values.get(name)
        if isinstance(value, list):
            return ", ".join(self.value(name, item) for item in value)
        if labels and value in labels:
            return str(labels[value])
        if isinstance(value, dict):
            return "; ".join(f"{key}: {self.value(name, item)}" for key, item in value.items())
        if name.endswith("_at") and isinstance(value, str):
            try:
                return format_datetime(dt.datetime.fromisoformat(value), "short")
            except ValueError:
                pass
        return str(value)


def _changes(entry: AuditLog, vocabulary: _Vocabulary) -> list[tuple[Any, str, str]]:
    """(field label, before, after) of each field the entry names."""
    before, after = entry.before or {}, entry.after or {}
    names = list(dict.fromkeys([*before, *after]))
    return [(vocabulary.field(name), vocabulary.value(name, before.get(name)) if entry.before is not None else "",
             vocabulary.value(name, after.get(name)) if entry.after is not None else "") for name in names]


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=ZoneInfo(display_timezone()))


@bp.get("/audit")
@roles_required("admin")
def audit():
    db = get_session()
    kinds = _kinds()
    kind = arg_str("kind", 30)
    kind = kind if kind in kinds else None
    login = arg_str("user", 80)
    start, end = arg_date("from"), arg_date("to")
    page = max(arg_int("page") or 1, 1)
    conditions = []
    if kind:
        conditions.append(AuditLog.entity_kind == kind)
    if login:
        conditions.append(AuditLog.user_login == login)
    if start:
        conditions.append(AuditLog.at >= _day_start(start))
    if end:
        conditions.append(AuditLog.at < _day_start(end + dt.timedelta(days=1)))
    total = db.scalar(select(func.count()).select_from(AuditLog).where(*conditions)) or 0
    entries = db.scalars(select(AuditLog).where(*conditions).order_by(AuditLog.at.desc(), AuditLog.id.desc())
                         .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    vocabularies: dict[str, _Vocabulary] = {}
    rows = []
    for entry in entries:
        if entry.entity_kind not in vocabularies:
            vocabularies[entry.entity_kind] = _Vocabulary(db, entry.entity_kind)
        rows.append((entry, _changes(entry, vocabularies[entry.entity_kind])))
    logins = [name for name in db.scalars(select(AuditLog.user_login).where(AuditLog.user_login.is_not(None))
                                          .distinct().order_by(AuditLog.user_login))]
    args = {name: value for name, value in request.args.items() if name != "page" and value}
    return render_template("settings/audit.html", rows=rows, kinds=kinds, kind=kind, login=login, logins=logins,
                           start=start, end=end, page=page, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
                           total=total, args=args, action_labels=ACTION_LABELS)
