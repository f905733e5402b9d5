"""A small declarative CRUD: each settings entity lists its fields once; forms, parsing and
validation come from that list, so every entity gets the same error handling."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import (
    Manager,
    ManagerGroup,
    NumberPool,
    RoutingRule,
    Site,
    Source,
    TrackingNumber,
)
from webadmin.settings import validators as v


@dataclass
class Field:
    name: str
    label: Any
    kind: str = "text"  # text|int|bool|choice|json|textarea|fk|multi|list
    required: bool = False
    parse: Callable[[str], Any] | None = None
    choices: Any = None  # list of (value, label) or, for fk/multi, a model class
    help: Any = ""
    minimum: int | None = 0
    maximum: int | None = None
    length: int = 200

    def display(self, obj: Any) -> str:
        value = getattr(obj, self.name, None)
        if self.kind == "json":
            return json.dumps(value, ensure_ascii=False, indent=1) if value else ""
        if self.kind == "list":
            return "\n".join(value or [])
        if self.kind == "multi":
            return [item.id for item in (value or [])]
        if value is None:
            return ""
        return value

    def options(self, db: Session) -> list[tuple[Any, str]]:
        if self.kind in ("fk", "multi"):
            model = self.choices
            label = model.name if hasattr(model, "name") else model.number
            return [(row.id, row.label) for row in db.execute(select(model.id, label.label("label")).order_by(label))]
        return list(self.choices or [])


@dataclass
class Entity:
    slug: str
    model: type
    title: Any
    fields: list[Field]
    columns: list[str]
    order_by: Any
    extra_links: list[tuple[str, Any]] = field(default_factory=list)


def parse_form(entity: Entity, form, db: Session) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in entity.fields:
        if f.kind == "bool":
            values[f.name] = form.get(f.name) in ("on", "1", "yes", "true")
            continue
        if f.kind == "multi":
            ids = [int(i) for i in form.getlist(f.name) if str(i).isdigit()]
            values[f.name] = list(db.scalars(select(f.choices).where(f.choices.id.in_(ids)))) if ids else []
            continue
        raw = (form.get(f.name) or "").strip()
        if not raw and f.kind not in ("json", "list"):
            if f.required:
                errors[f.name] = str(_l("Required."))
            else:
                values[f.name] = None
            continue
        try:
            values[f.name] = _parse_value(f, raw, db)
        except ValueError as exc:
            errors[f.name] = str(exc)
    return values, errors


def _parse_value(f: Field, raw: str, db: Session) -> Any:
    if f.kind == "int":
        try:
            number = int(raw)
        except ValueError:
            raise ValueError(str(_l("Enter a whole number."))) from None
        if f.minimum is not None and number < f.minimum:
            raise ValueError(str(_l("Must be at least %(n)s.", n=f.minimum)))
        if f.maximum is not None and number > f.maximum:
            raise ValueError(str(_l("Must be at most %(n)s.", n=f.maximum)))
        return number
    if f.kind == "fk":
        if not raw.isdigit() or db.get(f.choices, int(raw)) is None:
            raise ValueError(str(_l("Choose one of the options.")))
        return int(raw)
    if f.kind == "choice":
        if raw not in [str(value) for value, _label in f.choices]:
            raise ValueError(str(_l("Choose one of the options.")))
        return raw
    if f.parse is not None:
        return f.parse(raw)
    if len(raw) > f.length:
        raise ValueError(str(_l("At most %(n)s characters.", n=f.length)))
    return raw


def _site_fk(required: bool = True) -> Field:
    return Field("site_id", _l("Site"), "fk", required=required, choices=Site)


ENTITIES: dict[str, Entity] = {e.slug: e for e in [
    Entity("sites", Site, _l("Sites"), [
        Field("name", _l("Name"), required=True),
        Field("domains", _l("Domains"), "list", parse=v.text_list, help=_l("One per line: example.ru, www.example.ru")),
        Field("default_number", _l("Default number"), parse=v.phone),
        Field("display_format", _l("Display format"), required=True, length=60, help=_l("X is a digit: +7 (XXX) XXX-XX-XX")),
        Field("timezone", _l("Time zone"), required=True, parse=v.timezone),
        Field("hold_seconds", _l("Hold, seconds"), "int", required=True, minimum=30, maximum=86400,
              help=_l("How long a shown pool number stays with a visitor after the last heartbeat")),
        Field("heartbeat_seconds", _l("Heartbeat, seconds"), "int", required=True, minimum=5, maximum=3600),
        Field("hold_cap_seconds", _l("Hold cap, seconds"), "int", required=True, minimum=60, maximum=7 * 86400),
        Field("unload_grace_seconds", _l("Grace after leaving, seconds"), "int", required=True, maximum=86400),
        Field("overflow_policy", _l("When the pool is full"), "choice", required=True,
              choices=[("fallback", _l("show the fallback number")), ("reuse_oldest", _l("reuse the oldest number"))]),
        Field("lazy_allocation", _l("Allocate on interaction only"), "bool"),
        Field("replace_selectors", _l("CSS selectors to replace"), "list", parse=v.text_list),
        Field("replace_numbers", _l("Numbers to replace in page text"), "list", parse=v.phone_list),
        Field("default_pool_id", _l("Default pool"), "fk", choices=NumberPool),
        Field("attribution_window_days", _l("Attribution window, days"), "int", required=True, minimum=1, maximum=365),
        Field("attribution_model", _l("Attribution model"), "choice", required=True,
              choices=[("first_touch", _l("first touch")), ("last_touch", _l("last touch"))]),
        Field("target_call_seconds", _l("Target call, seconds of talk"), "int", required=True, maximum=3600),
        Field("crm_url_template", _l("CRM link template"), parse=v.crm_template, length=500,
              help=_l("Placeholders: {phone}, {phone_digits}, {call_id}, {call_uid}, {caller_name}, {did}")),
        Field("calls_retention_days", _l("Keep calls, days"), "int", minimum=1),
        Field("sessions_retention_days", _l("Keep sessions, days"), "int", minimum=1),
        Field("recordings_retention_days", _l("Keep recordings, days"), "int", minimum=1),
    ], ["name", "timezone", "display_format", "attribution_model", "target_call_seconds"], Site.name),
    Entity("pools", NumberPool, _l("Number pools"), [
        _site_fk(), Field("name", _l("Name"), required=True), Field("fallback_number", _l("Fallback number"), parse=v.phone),
    ], ["name", "site_id", "fallback_number"], NumberPool.name),
    Entity("sources", Source, _l("Sources"), [
        _site_fk(), Field("name", _l("Name"), required=True),
        Field("kind", _l("Kind"), "choice", required=True, choices=[("static", _l("static number")),
                                                                     ("dynamic", _l("dynamic pool"))]),
        Field("channel", _l("Channel"), length=50, help=_l("cpc, organic, social, referral, offline…")),
        Field("match_rules", _l("Match rules (JSON)"), "json", parse=v.match_rules,
              help=_l('All must match, e.g. [{"field": "utm_source", "op": "equals", "value": "yandex"}]; '
                      'op: equals, contains, prefix, regex')),
        Field("priority", _l("Priority"), "int", required=True, help=_l("Lower is tried first")),
        Field("pool_id", _l("Pool"), "fk", choices=NumberPool),
        Field("fallback_number", _l("Fallback number"), parse=v.phone),
        Field("enabled", _l("Enabled"), "bool"),
    ], ["name", "site_id", "kind", "channel", "priority", "enabled"], Source.priority),
    Entity("numbers", TrackingNumber, _l("Tracking numbers"), [
        Field("number", _l("Number"), required=True, parse=v.phone), _site_fk(),
        Field("source_id", _l("Source"), "fk", choices=Source), Field("pool_id", _l("Pool"), "fk", choices=NumberPool),
        Field("label", _l("Label")), Field("enabled", _l("Enabled"), "bool"),
    ], ["number", "site_id", "source_id", "pool_id", "label", "enabled"], TrackingNumber.number,
        extra_links=[("settings.numbers_import", _l("Import from CSV"))]),
    Entity("managers", Manager, _l("Managers"), [
        Field("name", _l("Name"), required=True),
        Field("endpoint", _l("Phone endpoint"), required=True, parse=v.endpoint, help=_l("e.g. PJSIP/101")),
        Field("extension", _l("Extension"), length=40), Field("paused", _l("Paused"), "bool"),
        Field("enabled", _l("Enabled"), "bool"),
        Field("schedule", _l("Working hours (JSON)"), "json", parse=v.schedule,
              help=_l('Site time zone; empty = always. e.g. {"mon": [["09:00", "18:00"]]}')),
        Field("groups", _l("Groups"), "multi", choices=ManagerGroup),
    ], ["name", "endpoint", "extension", "device_state", "paused", "enabled"], Manager.name),
    Entity("groups", ManagerGroup, _l("Manager groups"), [
        Field("name", _l("Name"), required=True), Field("queue_name", _l("Asterisk queue"), length=80),
        Field("managers", _l("Members"), "multi", choices=Manager),
    ], ["name", "queue_name"], ManagerGroup.name),
    Entity("rules", RoutingRule, _l("Routing rules"), [
        _site_fk(required=False), Field("name", _l("Name"), required=True),
        Field("priority", _l("Priority"), "int", required=True, help=_l("Lower is tried first")),
        Field("enabled", _l("Enabled"), "bool"),
        Field("match", _l("Match (JSON)"), "json", parse=v.routing_match,
              help=_l("Keys: dids, source_ids, utm_campaign, landing_contains, caller_numbers, caller_tags")),
        Field("group_id", _l("Manager group"), "fk", choices=ManagerGroup),
        Field("strategy", _l("Strategy"), "choice", required=True,
              choices=[("round_robin", "round robin"), ("least_recent", "least recent"),
                       ("fewest_today", "fewest today"), ("ring_all", "ring all")]),
        Field("sticky", _l("Personal manager (sticky)"), "bool"),
        Field("sticky_days", _l("Sticky for, days"), "int", required=True, maximum=3650),
        Field("ring_timeout", _l("Ring timeout, s"), "int", minimum=5, maximum=300),
        Field("max_attempts", _l("Max attempts"), "int", minimum=1, maximum=20),
        Field("schedule", _l("Schedule (JSON)"), "json", parse=v.schedule),
        Field("after_hours_destination", _l("After hours"), parse=v.destination,
              help=_l("queue:sales, voicemail:100@default, dial:PJSIP/200")),
        Field("fallback_destination", _l("Fallback"), parse=v.destination),
    ], ["name", "site_id", "priority", "strategy", "group_id", "enabled"], RoutingRule.priority),
]}
