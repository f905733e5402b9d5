"""Callbacks through Asterisk: when to call, whom to ring first, what an attempt's outcome means.

A ``CallbackRequest`` is due at once when the site's routing is open, else at its next opening;
the AMI listener (``ami_listener/callbacks.py``) claims due requests, rings a manager chosen by the
same routing rules as an inbound call (``routing/rules``, ``routing/reservations``), then the
visitor.  A busy or unanswered attempt is retried after ``[callbacks] retry_minutes``, up to
``attempts`` calls.  Decisions are pure functions; the database helpers only read and write rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from astertrack.callflow.outcomes import MissedReason
from astertrack.db.models import (
    Call,
    CallbackRequest,
    Lead,
    Manager,
    Site,
    VisitorSession,
)
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.errors import LeadError
from astertrack.phones import try_normalize
from astertrack.routing import reservations, rules
from astertrack.routing.configuration import enabled_manager_ids, load_rules
from astertrack.routing.rules import CallContext, ManagerView, RuleView
from astertrack.routing.schedule import DAYS, is_open, zone

log = logging.getLogger(__name__)

KINDS = ("callback", "missed_call_callback")
OPEN_STATES = ("scheduled", "dialing")
# Attempt results that are worth another call later (the others end the request).
RETRY_REASONS = frozenset({MissedReason.MANAGER_NO_ANSWER, MissedReason.MANAGER_BUSY, MissedReason.VISITOR_NO_ANSWER,
                           MissedReason.VISITOR_BUSY, MissedReason.NO_ANSWER, MissedReason.ALL_BUSY,
                           MissedReason.FAILED, "no_free_manager"})
NO_FREE_MANAGER = "no_free_manager"


class CallbackError(ValueError):
    """The request cannot be made (no phone, unknown kind); the message says why."""


@dataclass(frozen=True)
class CallbackSettings:
    attempts: int = 3
    retry_minutes: tuple[float, ...] = (2.0, 5.0, 15.0)
    originate_timeout: int = 30
    context: str = "astertrack-callback"

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> CallbackSettings:
        section = values["callbacks"]
        return cls(attempts=max(1, int(section["attempts"])), retry_minutes=tuple(section["retry_minutes"]),
                   originate_timeout=int(section["originate_timeout"]), context=section["context"])

    def retry_delay(self, attempts_made: int) -> dt.timedelta:
        """The pause after the ``attempts_made``-th call (the last spacing repeats)."""
        spacing = self.retry_minutes or (5.0,)
        return dt.timedelta(minutes=spacing[min(max(attempts_made, 1), len(spacing)) - 1])


# ---------------------------------------------------------------- working hours


def next_opening(schedule: Mapping[str, Any] | None, after: dt.datetime, tz: str | None,
                 horizon_days: int = 14) -> dt.datetime | None:
    """``after`` when the schedule is open then, else the first moment it opens (aware UTC), or
    None when it does not open within ``horizon_days``.  Openings are the ranges' start times."""
    if is_open(schedule, after, tz):
        return after
    local = after.astimezone(zone(tz))
    starts: list[dt.datetime] = []
    for offset in range(horizon_days + 1):
        day = local.date() + dt.timedelta(days=offset)
        for start_text, _end in (schedule or {}).get(DAYS[day.weekday()], ()):
            hour, minute = (int(part) for part in str(start_text).strip().split(":"))
            if hour >= 24:
                continue
            moment = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone(tz)).astimezone(dt.UTC)
            if moment > after:
                starts.append(moment)
    for moment in sorted(starts):
        if is_open(schedule, moment, tz):
            return moment
    return None


def call_context(site: Site | None, phone: str | None, visit: VisitorSession | None) -> CallContext:
    """What the routing rules see of a callback: the site, the visitor's number and visit."""
    return CallContext(did=None, caller=phone, site_id=site.id if site else None,
                       source_id=visit.source_id if visit else None,
                       source_name=visit.source.name if visit is not None and visit.source is not None else None,
                       utm_campaign=visit.utm_campaign if visit else None,
                       landing_page=visit.landing_page if visit else None)


def rule_for(session: Session, ctx: CallContext) -> RuleView | None:
    """The rule an inbound call with this context would take (the AGI reads the same configuration)."""
    return rules.select_rule(load_rules(session), ctx) or rules.implicit_rule(enabled_manager_ids(session))


def due_at(session: Session, site: Site | None, ctx: CallContext, now: dt.datetime) -> dt.datetime:
    """Now when the site's routing is open, else its next opening (now when it never opens:
    the attempt then finds nobody and is retried, which an admin sees)."""
    rule = rule_for(session, ctx)
    if rule is None or not rule.schedule:
        return now
    return next_opening(rule.schedule, now, site.timezone if site else None) or now


# ---------------------------------------------------------------- requests


def request_callback(session: Session, site: Site | None, phone: str, kind: str = "callback", *,
                     lead: Lead | None = None, enquiry: Any = None, visitor_session: VisitorSession | None = None,
                     missed_call: Call | None = None, requested_by: Any = None, now: dt.datetime,
                     settings: CallbackSettings | None = None, region: str = "RU") -> CallbackRequest:
    """Schedule a callback to ``phone`` (the caller commits).  An open request for the same number
    on the site is returned instead of a second one; a missed call is called back once."""
    if kind not in KINDS:
        raise CallbackError(f"unknown callback kind {kind!r} (expected one of {', '.join(KINDS)})")
    number = try_normalize(phone, region) if phone else None
    if not number:
        raise CallbackError(f"not a phone number: {phone!r}")
    settings = settings or CallbackSettings()
    if missed_call is not None:
        existing = session.scalar(select(CallbackRequest).where(CallbackRequest.missed_call_id == missed_call.id))
        if existing is not None:
            return existing
    existing = session.scalar(select(CallbackRequest).where(
        CallbackRequest.phone == number, CallbackRequest.state.in_(OPEN_STATES),
        CallbackRequest.site_id == (site.id if site else None) if site else CallbackRequest.site_id.is_(None)))
    if existing is not None:
        return existing
    if visitor_session is None and missed_call is not None and missed_call.session_id:
        visitor_session = session.get(VisitorSession, missed_call.session_id)
    ctx = call_context(site, number, visitor_session)
    request = CallbackRequest(
        site_id=site.id if site else None, kind=kind, phone=number, state="scheduled", attempts=0,
        max_attempts=settings.attempts, next_attempt_at=due_at(session, site, ctx, now),
        missed_call_id=missed_call.id if missed_call else None,
        session_id=visitor_session.id if visitor_session else None,
        manager_id=(missed_call.manager_id or missed_call.routed_manager_id) if missed_call else None,
        lead_id=lead.id if lead else None, enquiry_id=getattr(enquiry, "id", None),
        requested_by_id=getattr(requested_by, "id", None), created_at=now, updated_at=now)
    session.add(request)
    session.flush()
    if enquiry is not None:
        request.lead_id = request.lead_id or getattr(enquiry, "lead_id", None)
    _record_enquiry(session, request, site, visitor_session, missed_call, now, region)
    return request


def _record_enquiry(session: Session, request: CallbackRequest, site: Site | None,
                    visit: VisitorSession | None, missed_call: Call | None, now: dt.datetime, region: str) -> None:
    """A callback request is an enquiry of its own (channel ``callback`` or
    ``missed_call_callback``): it opens or joins the visitor's lead through ``record_enquiry``.
    A request made for an enquiry already recorded (a form with a call-me-back box) only links it."""
    if request.lead_id is not None or request.enquiry_id is not None or site is None:
        return
    source_id = missed_call.source_id if missed_call is not None else None
    manager_id = (missed_call.manager_id or missed_call.routed_manager_id) if missed_call is not None else None
    try:
        enquiry = record_enquiry(session, site, request.kind, at=now, phone=request.phone, visitor_session=visit,
                                 source_id=source_id or (visit.source_id if visit else None),
                                 manager_id=manager_id, region=region)
    except LeadError as exc:  # the callback is still placed; the lead waits for an admin
        log.warning("callback request %s made no enquiry: %s", request.id, exc)
        return
    request.enquiry_id, request.lead_id = enquiry.id, enquiry.lead_id


def claim(session: Session, request_id: int, node: str, now: dt.datetime, lease: dt.timedelta) -> bool:
    """Take a due request for this node: one conditional UPDATE, so two nodes never both dial it."""
    result = session.execute(
        update(CallbackRequest)
        .where(CallbackRequest.id == request_id, CallbackRequest.state == "scheduled",
               CallbackRequest.next_attempt_at <= now,
               or_(CallbackRequest.claimed_until.is_(None), CallbackRequest.claimed_until < now))
        .values(state="dialing", node=node, claimed_until=now + lease, updated_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def due_ids(session: Session, now: dt.datetime, limit: int = 20) -> list[int]:
    return list(session.scalars(select(CallbackRequest.id).where(
        CallbackRequest.state == "scheduled", CallbackRequest.next_attempt_at <= now)
        .order_by(CallbackRequest.next_attempt_at, CallbackRequest.id).limit(limit)))


# ---------------------------------------------------------------- choosing the manager


def _manager_views(session: Session, ids: Sequence[int]) -> dict[int, ManagerView]:
    views = {}
    fresh = select(Manager).where(Manager.id.in_(list(ids)), Manager.archived_at.is_(None))
    for m in session.scalars(fresh.execution_options(populate_existing=True)):  # holds change by the second
        views[m.id] = ManagerView(id=m.id, endpoint=m.endpoint, name=m.name, extension=m.extension,
                                  enabled=bool(m.enabled), paused=bool(m.paused), schedule=m.schedule or {},
                                  device_state=m.device_state or "UNKNOWN", reserved_until=m.reserved_until,
                                  reserved_call_uid=m.reserved_call_uid, last_routed_at=m.last_routed_at)
    return views


@dataclass(frozen=True)
class Choice:
    manager: ManagerView
    rule: RuleView | None


def choose_manager(session: Session, request: CallbackRequest, call_uid: str, now: dt.datetime,
                   hold_seconds: int) -> Choice | None:
    """The first free candidate in the routing rules' order (the missed call's manager first),
    held for ``call_uid`` so an inbound call cannot take them meanwhile; None when nobody is free."""
    site = session.get(Site, request.site_id) if request.site_id else None
    visit = session.get(VisitorSession, request.session_id) if request.session_id else None
    rule = rule_for(session, call_context(site, request.phone, visit))
    member_ids = list(rule.member_ids) if rule else []
    wanted = set(member_ids) | ({request.manager_id} if request.manager_id else set())
    # a hold outliving its call (the AGI holds a manager for the ring timeout) keeps nobody busy:
    # the missed call's own manager is free to call back as soon as that call ended
    finished = select(Call.call_uid).where(Call.state == "finished")
    session.execute(update(Manager).where(Manager.id.in_(sorted(wanted)), Manager.reserved_call_uid.in_(finished))
                    .values(reserved_until=None, reserved_call_uid=None).execution_options(synchronize_session=False))
    views = _manager_views(session, sorted(wanted))
    ordered = rules.order_candidates(rule.strategy if rule else "least_recent",
                                     [views[i] for i in member_ids if i in views], rule.rr_cursor if rule else 0)
    ordered = rules.with_sticky_first(ordered, views.get(request.manager_id) if request.manager_id else None)
    tz = site.timezone if site else None
    for manager in ordered:
        if not rules.is_available(manager, now, tz, call_uid):
            continue
        if manager.device_state not in ("UNKNOWN", "") and not rules.is_free_state(manager.device_state):
            continue
        if reservations.reserve(session, manager.id, call_uid, now, hold_seconds):
            return Choice(manager, rule)
    return None


# ---------------------------------------------------------------- after an attempt


@dataclass(frozen=True)
class Verdict:
    state: str  # connected|scheduled|failed
    next_attempt_at: dt.datetime | None
    last_result: str


def after_attempt(attempts_made: int, max_attempts: int, outcome: str | None, reason: str | None,
                  settings: CallbackSettings, now: dt.datetime) -> Verdict:
    """What an attempt's outcome means for the request: connected when both sides talked; a busy
    or unanswered side is retried after the configured spacing until the attempts run out."""
    if outcome == "answered":
        return Verdict("connected", None, "answered")
    result = reason or "failed"
    if result in RETRY_REASONS and attempts_made < max_attempts:
        return Verdict("scheduled", now + settings.retry_delay(attempts_made), result)
    return Verdict("failed", None, result)


def settle(session: Session, request: CallbackRequest, call: Call | None, settings: CallbackSettings,
           now: dt.datetime, reason: str | None = None) -> Verdict:
    """Apply an attempt's outcome to the request (and a connected callback to its lead)."""
    outcome = call.outcome if call is not None else None
    why = reason or (call.missed_reason if call is not None else None)
    verdict = after_attempt(request.attempts, request.max_attempts, outcome, why, settings, now)
    request.state, request.last_result = verdict.state, verdict.last_result
    request.next_attempt_at = verdict.next_attempt_at or request.next_attempt_at
    request.claimed_until = None
    request.updated_at = now
    if verdict.state == "connected" and request.lead_id:
        lead = session.get(Lead, request.lead_id)
        if lead is not None and lead.status == "new":
            lead.status, lead.updated_at = "in_progress", now
        if lead is not None and call is not None and call.manager_id and not lead.manager_id:
            lead.manager_id, lead.updated_at = call.manager_id, now  # a change: lead.updated announces it
    return verdict


def missed_calls_to_call_back(session: Session, node: str, since: dt.datetime, limit: int = 50) -> list[Call]:
    """Missed inbound calls on sites that call them back, ended since ``since``, not yet requested."""
    taken = select(CallbackRequest.missed_call_id).where(CallbackRequest.missed_call_id.is_not(None))
    return list(session.scalars(
        select(Call).join(Site, Site.id == Call.site_id)
        .where(Site.missed_call_callback.is_(True), Call.node == node, Call.state == "finished",
               Call.outcome.in_(("missed", "busy")), Call.lead_channel == "call",
               Call.caller_number.is_not(None), Call.ended_at >= since, Call.id.not_in(taken))
        .order_by(Call.id).limit(limit)))
