"""The settings entities: for each, its model, its form (``forms.py``), the listing's columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from astertrack.db.models import (
    Manager,
    ManagerGroup,
    NumberPool,
    RoutingRule,
    Site,
    Source,
    TrackingNumber,
)
from webadmin.settings import forms


@dataclass
class Entity:
    slug: str
    model: type
    title: Any
    form: type[forms.SettingsForm]
    columns: list[str]
    order_by: Any
    extra_links: list[tuple[str, Any]] = field(default_factory=list)

    def defaults(self) -> dict[str, Any]:
        """The columns' scalar defaults: what a "new" form starts with."""
        return {column.name: column.default.arg for column in self.model.__table__.c
                if column.default is not None and column.default.is_scalar}


ENTITIES: dict[str, Entity] = {e.slug: e for e in [
    Entity("sites", Site, _l("Sites"), forms.SiteForm,
           ["name", "timezone", "display_format", "attribution_model", "target_call_seconds"], Site.name),
    Entity("pools", NumberPool, _l("Number pools"), forms.PoolForm, ["name", "site_id", "fallback_number"],
           NumberPool.name),
    Entity("sources", Source, _l("Sources"), forms.SourceForm,
           ["name", "site_id", "kind", "channel", "priority", "enabled"], Source.priority),
    Entity("numbers", TrackingNumber, _l("Tracking numbers"), forms.NumberForm,
           ["number", "site_id", "source_id", "pool_id", "label", "enabled"], TrackingNumber.number,
           extra_links=[("settings.numbers_import", _l("Import from CSV"))]),
    Entity("managers", Manager, _l("Managers"), forms.ManagerForm,
           ["name", "endpoint", "extension", "device_state", "paused", "enabled"], Manager.name),
    Entity("groups", ManagerGroup, _l("Manager groups"), forms.GroupForm, ["name", "queue_name"], ManagerGroup.name),
    Entity("rules", RoutingRule, _l("Routing rules"), forms.RuleForm,
           ["name", "site_id", "priority", "strategy", "group_id", "enabled"], RoutingRule.priority),
]}


# What refers to a settings row (``astertrack.audit.references`` names the referring tables):
# the delete page counts them by these names.
REFERRER_LABELS: dict[str, Any] = {
    "calls": _l("calls"), "leads": _l("leads"), "visitor_sessions": _l("visitor sessions"),
    "ad_costs": _l("days of ad costs"), "caller_profiles": _l("caller profiles"),
    "tracking_numbers": _l("tracking numbers"), "sources": _l("sources"), "number_pools": _l("number pools"),
    "routing_rules": _l("routing rules"), "sites": _l("sites (as their default pool)"),
    "overflow_events": _l("pool overflow events"), "pool_usage_samples": _l("pool usage samples"),
    "number_assignments": _l("numbers shown to visitors"), "manager_group_members": _l("group memberships"),
    "users": _l("users"), "enquiries": _l("enquiries"), "callback_requests": _l("callback requests"),
    "deals": _l("deals"), "api_tokens": _l("API tokens"), "checklist_items": _l("checklist items"),
    "call_comments": _l("call comments"), "call_scores": _l("call scores"), "call_handled": _l("handled marks"),
    "ami_listener_status": _l("AMI listener status"), "audit_log": _l("audit log entries"),
    "outbound_calls": _l("outbound calls from their phone"),
    "page_views": _l("page views"), "visitor_actions": _l("visitor actions (clicks, forms)"),
    "conversion_settings": _l("conversion settings"), "conversion_rules": _l("conversion rules"),
    "conversion_log": _l("conversions sent or skipped"), "site_widgets": _l("website widget settings"),
    "site_messengers": _l("messenger settings"), "messenger_chats": _l("messenger conversations"),
    "messenger_messages": _l("messenger messages"), "chats": _l("website chats"),
    "chat_messages": _l("website chat messages"), "tracking_prices": _l("prices (rent, per minute)"),
    "speech_settings": _l("speech engine settings"), "speech_phrases": _l("speech dictionary phrases"),
    "call_speech_tags": _l("automatic speech tags of calls"),
}


def by_table(table: str) -> Entity | None:
    """The settings entity stored in ``table``."""
    for entity in ENTITIES.values():
        if entity.model.__tablename__ == table:
            return entity
    return None


def archived_labels(db, form: forms.SettingsForm) -> dict[str, dict[Any, str]]:
    """Value -> label of each row picker, archived rows too ("name (archived)"): the pickers
    offer only active rows, but a listing or the history still names the archived ones."""
    labels = form.labels()
    for picker in form.fields():
        if isinstance(picker, (forms.Row, forms.Rows)) and hasattr(picker.model, "archived_at"):
            column = picker.model.name if hasattr(picker.model, "name") else picker.model.number
            mapping = labels.setdefault(picker.name, {})
            for row_id, name in db.execute(select(picker.model.id, column)
                                           .where(picker.model.archived_at.is_not(None))):
                mapping[row_id] = _("%(name)s (archived)", name=name)
    return labels
