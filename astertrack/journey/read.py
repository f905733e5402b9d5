"""A person's journey for a call or a lead, as one plain structure (dicts, lists, aware UTC
datetimes) the call card, the lead card, the pop-up and exports display as they see fit.

``journey_for_call(db, call_id)`` / ``journey_for_lead(db, lead_id)`` return None for an unknown
id, otherwise::

    {"anchor": {"kind": "call"|"lead", "id", "at", "phone"}, "site_id", "window_days",
     "first_visit_at", "days_since_first_visit", "truncated",
     "visits": [{"session_id", "linked_by", "is_anchor", "started_at", "last_seen", "source": {"id", "name",
                 "channel"} | None, "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
                 "keyword", "referrer", "landing_page", "gclid", "yclid", "fbclid", "page_views",
                 "pages": [{"at", "url", "title", "referrer", "seconds_on_page"}],
                 "actions": [{"at", "kind", "target", "url"}]}],         # visits and their rows in time order
     "calls": [{"id", "started_at", "did", "outcome", "talk_seconds", "source_id", "session_id"}],  # earlier
     "leads": [{"id", "created_at", "status", "first_channel", "phone", "enquiries_count"}]}       # other

Every text in it came from a browser: escape it where it is shown.  ``assemble`` is the pure part.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Enquiry, Lead, PageView, Site, Source, VisitorAction, VisitorSession
from astertrack.journey.cleaning import allowed_params, clean_url
from astertrack.journey.linking import link_sessions

MAX_ROWS_PER_VISIT = 300  # pages and actions each; more is cut (and ``truncated`` says so)
MAX_RELATED = 50  # earlier calls, other leads
DEFAULT_WINDOW_DAYS = 30
_VISIT_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "keyword", "gclid", "yclid",
                 "fbclid")


def journey_for_call(db: Session, call_id: int) -> dict[str, Any] | None:
    call = db.get(Call, call_id)
    if call is None:
        return None
    seeds = {call.session_id: "call"} if call.session_id else {}
    return _journey(db, "call", call.id, call.started_at, call.site_id, seeds, [call.caller_number],
                    skip_call=call.id, skip_lead=None)


def journey_for_lead(db: Session, lead_id: int) -> dict[str, Any] | None:
    lead = db.get(Lead, lead_id)
    if lead is None:
        return None
    enquiries = db.execute(select(Enquiry.session_id, Enquiry.phone).where(Enquiry.lead_id == lead.id)).all()
    seeds = {sid: "lead" for sid in [lead.session_id, *(e.session_id for e in enquiries)] if sid}
    at = max(filter(None, (lead.last_enquiry_at, lead.created_at)))
    return _journey(db, "lead", lead.id, at, lead.site_id, seeds, [lead.phone, *(e.phone for e in enquiries)],
                    skip_call=None, skip_lead=lead.id, phone=lead.phone)


def _journey(db: Session, kind: str, anchor_id: int, at: dt.datetime, site_id: int | None, seeds: dict[int, str],
             phones: Iterable[str | None], *, skip_call: int | None, skip_lead: int | None,
             phone: str | None = None) -> dict[str, Any]:
    site = db.get(Site, site_id) if site_id is not None else None
    window = site.attribution_window_days if site is not None and site.attribution_window_days else DEFAULT_WINDOW_DAYS
    since = at - dt.timedelta(days=window)
    until = at + dt.timedelta(minutes=5)  # a visit opened while the phone rang is still this journey
    person = link_sessions(db, site_id, seeds=seeds, phones=[p for p in phones if p], since=since, until=until)
    ids = list(person.sessions)
    sessions = [_row(s) for s in db.scalars(select(VisitorSession).where(VisitorSession.id.in_(ids)))] if ids else []
    pages = [_row(p) for p in db.scalars(select(PageView).where(PageView.session_id.in_(ids))
                                         .order_by(PageView.at, PageView.id))] if ids else []
    actions = [_row(a) for a in db.scalars(select(VisitorAction).where(VisitorAction.session_id.in_(ids))
                                           .order_by(VisitorAction.at, VisitorAction.id))] if ids else []
    source_ids = {s["source_id"] for s in sessions if s["source_id"]}
    sources = {s.id: {"id": s.id, "name": s.name, "channel": s.channel}
               for s in db.scalars(select(Source).where(Source.id.in_(source_ids)))} if source_ids else {}
    person_calls = [Call.session_id.in_(ids)] if ids else []
    if person.phones and site_id is not None:
        person_calls.append((Call.caller_number.in_(person.phones)) & (Call.site_id == site_id))
    calls = []
    if person_calls:
        query = select(Call).where(or_(*person_calls), Call.started_at <= at, Call.started_at >= since)
        if skip_call is not None:
            query = query.where(Call.id != skip_call)
        calls = [_row(c) for c in db.scalars(query.order_by(Call.started_at.desc()).limit(MAX_RELATED))]
    lead_ids = set()
    if ids:
        lead_ids |= set(db.scalars(select(Enquiry.lead_id).where(Enquiry.session_id.in_(ids)).limit(MAX_RELATED)))
    leads = []
    if person.phones and site_id is not None:
        lead_ids |= set(db.scalars(select(Lead.id).where(Lead.site_id == site_id, Lead.phone.in_(person.phones))
                                   .limit(MAX_RELATED)))
    lead_ids.discard(skip_lead)
    if lead_ids:
        leads = [_row(lead) for lead in db.scalars(select(Lead).where(Lead.id.in_(lead_ids), Lead.created_at <= at)
                                                   .order_by(Lead.created_at.desc()).limit(MAX_RELATED))]
    anchor = {"kind": kind, "id": anchor_id, "at": at, "phone": phone if kind == "lead" else next(iter(phones), None)}
    allowed = allowed_params(site.query_params_allowed if site is not None else ())
    result = assemble(anchor, person.sessions, sessions, pages, actions, sources, calls, leads, allowed=allowed)
    result.update(site_id=site_id, window_days=window)
    result["truncated"] = result["truncated"] or person.truncated
    return result


def _row(obj: Any) -> dict[str, Any]:
    return {column.key: getattr(obj, column.key) for column in obj.__table__.columns}


def assemble(anchor: dict[str, Any], linked: dict[int, str], sessions: list[dict[str, Any]],
             pages: list[dict[str, Any]], actions: list[dict[str, Any]], sources: dict[int, dict[str, Any]],
             calls: list[dict[str, Any]], leads: list[dict[str, Any]], *,
             allowed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The structure from plain rows (column name → value): visits in time order, each with its
    pages and actions in time order (at most ``MAX_ROWS_PER_VISIT`` each), days since the first
    visit, the person's earlier calls and other leads, newest first."""
    truncated = False
    visits: dict[int, dict[str, Any]] = {}
    for s in sorted(sessions, key=lambda s: (s["first_seen"], s["id"])):
        visits[s["id"]] = {
            "session_id": s["id"], "linked_by": linked.get(s["id"]),
            "is_anchor": linked.get(s["id"]) in ("call", "lead"),
            "started_at": s["first_seen"], "last_seen": s["last_seen"],
            "source": sources.get(s["source_id"]) if s["source_id"] else None,
            **{name: s.get(name) for name in _VISIT_FIELDS},
            "referrer": clean_url(s.get("referrer"), allowed), "landing_page": clean_url(s.get("landing_page"), allowed),
            "page_views": s.get("page_views"), "pages": [], "actions": []}
    for key, rows, fields in (("pages", pages, ("at", "url", "title", "referrer", "seconds_on_page")),
                              ("actions", actions, ("at", "kind", "target", "url"))):
        for row in sorted(rows, key=lambda r: (r["at"], r.get("id") or 0)):
            visit = visits.get(row["session_id"])
            if visit is None:
                continue
            if len(visit[key]) >= MAX_ROWS_PER_VISIT:
                truncated = True
                continue
            visit[key].append({name: row.get(name) for name in fields})
    ordered = list(visits.values())
    first = ordered[0]["started_at"] if ordered else None
    days = max(0, (anchor["at"] - first).days) if first is not None else None
    return {
        "anchor": anchor, "first_visit_at": first, "days_since_first_visit": days, "truncated": truncated,
        "visits": ordered,
        "calls": [{name: c.get(name) for name in ("id", "started_at", "did", "outcome", "talk_seconds", "source_id",
                                                  "session_id")} for c in calls],
        "leads": [{name: lead.get(name) for name in ("id", "created_at", "status", "first_channel", "phone",
                                                     "enquiries_count")} for lead in leads],
    }
