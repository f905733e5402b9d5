"""Which sessions are one person's: linked at read time, never stored (a new id or phone links
history that is already there; nothing has to be rewritten when it arrives).

From the sessions and phones we start with (a call's session and caller number, a lead's
enquiries), each round adds the site's sessions within the window that share a first-party
visitor id, a GA client id or a Metrica id with a session found, and the sessions of calls and
enquiries made from a phone found (a form in another browser joins the journey once its phone is
a caller's).  Rounds and rows are bounded (``MAX_ROUNDS``, ``MAX_SESSIONS``, ``MAX_PHONES``): a
shared office computer or a GA id copied into many browsers cannot turn one read into a scan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Enquiry, Lead, VisitorSession

MAX_ROUNDS = 3
MAX_SESSIONS = 200
MAX_PHONES = 10
ID_FIELDS = ("visitor_id", "ga_client_id", "ym_client_id")


@dataclass
class Person:
    """A person's sessions (id → how it was linked: call, lead, visitor_id, ga_client_id,
    ym_client_id, phone) and phones; ``truncated`` when a bound stopped the search."""

    sessions: dict[int, str] = field(default_factory=dict)
    phones: set[str] = field(default_factory=set)
    truncated: bool = False


def link_sessions(db: Session, site_id: int | None, *, seeds: dict[int, str], phones: Iterable[str],
                  since: dt.datetime, until: dt.datetime) -> Person:
    person = Person(sessions=dict(list(seeds.items())[:MAX_SESSIONS]),
                    phones={p for p in phones if p})
    if site_id is None:  # a call no site claims: its own session only
        return person
    new_sessions, new_phones = set(person.sessions), set(person.phones)
    for _round in range(MAX_ROUNDS):
        found: dict[int, str] = {}
        if new_phones:
            found.update(dict.fromkeys(_sessions_of_phones(db, site_id, new_phones, since, until), "phone"))
        if new_sessions:
            found.update({k: v for k, v in _sessions_sharing_ids(db, site_id, new_sessions, since, until).items()
                          if k not in found})
        phones = _phones_of_sessions(db, new_sessions) if new_sessions else set()
        new_sessions = set()
        for session_id, how in found.items():
            if session_id in person.sessions:
                continue
            if len(person.sessions) >= MAX_SESSIONS:
                person.truncated = True
                break
            person.sessions[session_id] = how
            new_sessions.add(session_id)
        new_phones = set()
        for phone in phones - person.phones:
            if len(person.phones) >= MAX_PHONES:
                person.truncated = True
                break
            person.phones.add(phone)
            new_phones.add(phone)
        if not new_sessions and not new_phones:
            return person
    if new_sessions or new_phones:
        person.truncated = True
    return person


def _sessions_sharing_ids(db: Session, site_id: int, session_ids: set[int], since: dt.datetime,
                          until: dt.datetime) -> dict[int, str]:
    ids: dict[str, set[str]] = {name: set() for name in ID_FIELDS}
    for row in db.execute(select(*(getattr(VisitorSession, name) for name in ID_FIELDS))
                          .where(VisitorSession.id.in_(session_ids))):
        for name, value in zip(ID_FIELDS, row, strict=True):
            if value:
                ids[name].add(value)
    conditions = [getattr(VisitorSession, name).in_(values) for name, values in ids.items() if values]
    if not conditions:
        return {}
    rows = db.execute(select(VisitorSession.id, *(getattr(VisitorSession, name) for name in ID_FIELDS))
                      .where(VisitorSession.site_id == site_id, VisitorSession.first_seen >= since,
                             VisitorSession.first_seen <= until, VisitorSession.is_bot.is_(False), or_(*conditions))
                      .order_by(VisitorSession.first_seen.desc()).limit(MAX_SESSIONS + 1))
    out: dict[int, str] = {}
    for row in rows:
        out[row.id] = next(name for name in ID_FIELDS if getattr(row, name) and getattr(row, name) in ids[name])
    return out


def _sessions_of_phones(db: Session, site_id: int, phones: set[str], since: dt.datetime,
                        until: dt.datetime) -> list[int]:
    calls = select(Call.session_id).where(Call.caller_number.in_(phones), Call.site_id == site_id,
                                          Call.started_at >= since, Call.started_at <= until,
                                          Call.session_id.is_not(None)).limit(MAX_SESSIONS)
    leads = select(Lead.id).where(Lead.site_id == site_id, Lead.phone.in_(phones))
    enquiries = select(Enquiry.session_id).where(Enquiry.lead_id.in_(leads), Enquiry.at >= since, Enquiry.at <= until,
                                                 Enquiry.session_id.is_not(None)).limit(MAX_SESSIONS)
    return list(dict.fromkeys([*db.scalars(calls), *db.scalars(enquiries)]))


def _phones_of_sessions(db: Session, session_ids: set[int]) -> set[str]:
    calls = select(Call.caller_number).where(Call.session_id.in_(session_ids), Call.caller_number.is_not(None))
    enquiries = select(Enquiry.phone).where(Enquiry.session_id.in_(session_ids), Enquiry.phone.is_not(None))
    return {p for p in [*db.scalars(calls.limit(MAX_PHONES)), *db.scalars(enquiries.limit(MAX_PHONES))] if p}
