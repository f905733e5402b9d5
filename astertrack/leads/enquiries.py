"""Every enquiry — a call, a web form, a callback request — goes through ``record_enquiry``, which
opens a lead or joins one: the one place deduplication happens.

The rule (what buyers expect from "a repeat within 30 days joins"):

- The key is the normalised phone; an enquiry without a usable phone is keyed by its e-mail.  An
  enquiry with a phone joins a lead with that phone, or else a phone-less lead with its e-mail; an
  e-mail-only enquiry joins a lead with that e-mail.  A lead with another phone is never joined
  through the e-mail (no false merge).
- When neither finds a lead, the visitor does: an enquiry from a visit joins a lead of the same
  first-party visitor (``VisitorSession.visitor_id`` of any of its enquiries' visits) whose phone
  and e-mail do not differ from the enquiry's — a messenger conversation without a phone, then the
  form the same browser sent.  With no key at all the enquiry opens a lead of its own.
- A conversation (``CONVERSATION_CHANNELS``: a chat, a messenger) reaches the customer by itself, so
  it needs no phone or e-mail; its phone may come later (``messengers.add_phone``).
- The window is ``Site.lead_window_days`` measured from the lead's LAST enquiry: a customer who keeps
  calling every three weeks stays one lead.  (An enquiry dated before the lead's first one — the
  listener records a call a few seconds after it happened — joins when within the window of the
  first, and becomes the first.)
- A lead merged by hand (``merged_into_id``) is followed to the lead it was merged into.
- The lead keeps its first channel, first source, session and call: they are always those of its
  earliest enquiry (the first known one for source, session, call and manager); later ones are
  ``repeat``.  Its state and deal are not touched: a repeat of a won lead is still that customer.
- Concurrency: the lead's keys are locked for the transaction (a PostgreSQL advisory lock per site
  and phone / e-mail; on SQLite the write lock, ``BEGIN IMMEDIATE``, serialises writers), so two
  enquiries at once from one number make one lead.  (On SQLite, a caller that has already read in
  its transaction should have begun it with ``db.engine.begin_write``.)  A call makes at most one enquiry
  (``enquiries.call_id`` is unique; recording it again returns the first).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import BigInteger, bindparam, func, or_, select
from sqlalchemy.orm import Session

from astertrack.db.engine import begin_write
from astertrack.db.models import Call, Enquiry, Lead, Site, VisitorSession
from astertrack.leads import CHANNELS
from astertrack.leads.contacts import (
    MESSAGE_MAX,
    NAME_MAX,
    PAGE_URL_MAX,
    clean_text,
    normalize_phone,
    parse_email,
)
from astertrack.leads.errors import LeadError

# Attribution an enquiry copies from its call or visit, unless the caller gives it.
SESSION_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "keyword",
                  "gclid", "yclid", "fbclid", "ga_client_id", "ym_client_id", "ip", "user_agent")
CALL_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "keyword")
_FIELD_MAX = {"ga_client_id": 64, "ym_client_id": 64, "ip": 45, "user_agent": 512}
MAX_MERGE_HOPS = 20
# Channels whose enquiry may come without a phone or e-mail: the conversation is the way back.
CONVERSATION_CHANNELS = ("chat", "messenger")
_LOCK = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))


def joins_window(first_at: dt.datetime, last_at: dt.datetime, at: dt.datetime, days: int) -> bool:
    """Does an enquiry at ``at`` join a lead whose enquiries span ``first_at``..``last_at``?"""
    window = dt.timedelta(days=max(days, 0))
    return first_at - window <= at <= last_at + window


def lock_key(site_id: int, kind: str, value: str) -> int:
    """The advisory-lock key of one dedup key on one site (64 bits of a hash)."""
    digest = hashlib.blake2b(f"astertrack-lead\x00{site_id}\x00{kind}\x00{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lock(session: Session, site_id: int, keys: list[tuple[str, str]]) -> None:
    """Hold the lead's keys until the transaction ends (sorted, so two enquiries never deadlock).
    SQLite: the write lock taken at the start of ``record_enquiry`` already serialises."""
    if not _is_pg(session):
        return
    for key in sorted({lock_key(site_id, kind, value) for kind, value in keys}):
        session.execute(_LOCK, {"key": key}).all()


def resolve(session: Session, lead: Lead) -> Lead:
    """The lead a merged lead was merged into (followed to the end); the lead itself otherwise."""
    seen = {lead.id}
    while lead.merged_into_id is not None and len(seen) <= MAX_MERGE_HOPS:
        nxt = session.get(Lead, lead.merged_into_id)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        lead = nxt
    return lead


def _find_lead(session: Session, site: Site, phone: str | None, email: str | None,
               at: dt.datetime, visitor_id: str | None = None) -> Lead | None:
    lead = find_by_contact(session, site, phone, email, at)
    if lead is None and visitor_id:
        lead = _find_by_visitor(session, site, phone, email, at, visitor_id)
    return lead


def _joins(site: Site, lead: Lead, at: dt.datetime) -> bool:
    first = lead.created_at
    last = lead.last_enquiry_at or first
    return joins_window(min(first, last), last, at, site.lead_window_days)


def _find_by_visitor(session: Session, site: Site, phone: str | None, email: str | None,
                     at: dt.datetime, visitor_id: str) -> Lead | None:
    """The most recent lead of the same browser within the window whose phone and e-mail do not
    contradict the enquiry's (a lead with another phone is another person on a shared computer)."""
    lead_ids = session.scalars(
        select(Enquiry.lead_id).join(VisitorSession, VisitorSession.id == Enquiry.session_id)
        .where(Enquiry.site_id == site.id, VisitorSession.site_id == site.id,
               VisitorSession.visitor_id == visitor_id)
        .order_by(Enquiry.at.desc(), Enquiry.id.desc()).limit(50)).all()
    seen: set[int] = set()
    for lead_id in lead_ids:
        lead = resolve(session, session.get(Lead, lead_id))
        if lead.id in seen:
            continue
        seen.add(lead.id)
        if (lead.phone is not None and phone is not None and lead.phone != phone) or (
                lead.email is not None and email is not None and lead.email != email):
            continue
        if _joins(site, lead, at):
            return lead
    return None


def find_by_contact(session: Session, site: Site, phone: str | None, email: str | None,
                     at: dt.datetime) -> Lead | None:
    conds = []
    if phone:
        conds.append(Lead.phone == phone)
        if email:
            conds.append((Lead.email == email) & Lead.phone.is_(None))
    elif email:
        conds.append(Lead.email == email)
    if not conds:
        return None
    candidates = session.scalars(
        select(Lead).where(Lead.site_id == site.id, or_(*conds))
        .order_by(Lead.last_enquiry_at.desc().nulls_last(), Lead.id.desc()).limit(50)).all()
    # A phone match wins over an e-mail match; then the most recent lead.
    candidates = sorted(candidates, key=lambda lead: 0 if phone and lead.phone == phone else 1)
    for candidate in candidates:
        lead = resolve(session, candidate)
        if _joins(site, lead, at):
            return lead
    return None


def refresh_lead(session: Session, lead: Lead) -> None:
    """Derive the lead's firsts, counts and repeat marks from its enquiries (after a join or a merge)."""
    session.flush()
    enquiries = session.scalars(select(Enquiry).where(Enquiry.lead_id == lead.id)
                                .order_by(Enquiry.at, Enquiry.id)).all()
    lead.enquiries_count = len(enquiries)
    if not enquiries:
        return
    first = enquiries[0]
    lead.created_at = first.at
    lead.last_enquiry_at = max(e.at for e in enquiries)
    lead.first_channel = first.channel
    for enquiry in enquiries:
        enquiry.repeat = enquiry is not first

    def first_known(attr: str) -> Any:
        return next((getattr(e, attr) for e in enquiries if getattr(e, attr) is not None), None)

    lead.source_id = first_known("source_id")
    lead.session_id = first_known("session_id")
    lead.call_id = first_known("call_id")
    for attr in ("manager_id", "phone", "name"):
        if getattr(lead, attr) is None:
            setattr(lead, attr, first_known(attr))
    if lead.email is None:  # an e-mail kept as typed but not an address never becomes the lead's key
        lead.email = next((e.email for e in enquiries if e.email is not None and not e.email_invalid), None)


def record_enquiry(session: Session, site: Site | int, channel: str, *, at: dt.datetime,
                   phone: str | None = None, email: str | None = None, name: str | None = None,
                   message: str | None = None, page_url: str | None = None,
                   call: Call | None = None, visitor_session: VisitorSession | None = None,
                   source_id: int | None = None, manager_id: int | None = None,
                   region: str = "RU", **attribution: str | None) -> Enquiry:
    """Record one enquiry and open or join its lead (see the module's rule); returns the enquiry
    (``enquiry.lead_id`` is the lead, already followed past merges).

    ``call``: the call this enquiry is (its caller number is the phone when none is given; its
    source, session, manager and utm are copied).  ``visitor_session``: the visit it came from (its
    source, utm, click ids, GA/Metrica ids, ip and user agent are copied).  Attribution given here
    (``source_id``, ``utm_source``... any of ``SESSION_FIELDS``) wins over both.  ``region``: the
    ISO country for numbers written without ``+`` (``[general] default_region``).

    Raises LeadError (``field`` says which input) for an unknown channel, a naive ``at``, an
    e-mail that is not one, or nothing to reach the customer by; the caller's transaction is left
    for it to commit or roll back (nothing is committed here).
    """
    if channel not in CHANNELS:
        raise LeadError("channel", f"unknown enquiry channel {channel!r}; one of {', '.join(CHANNELS)}")
    if at is None or at.tzinfo is None:
        raise LeadError("at", "an enquiry's time must be timezone-aware")
    unknown = set(attribution) - set(SESSION_FIELDS)
    if unknown:
        raise TypeError(f"record_enquiry() got unexpected attribution fields: {', '.join(sorted(unknown))}")
    if not _is_pg(session) and not session.in_transaction():
        begin_write(session)  # SQLite: take the write lock before the first read
    site_row = site if isinstance(site, Site) else session.get(Site, site)
    if site_row is None:
        raise LeadError("site", f"no site {site!r}")

    if call is not None:
        existing = session.scalar(select(Enquiry).where(Enquiry.call_id == call.id))
        if existing is not None:
            return existing
        if phone is None:
            phone = call.caller_number or call.caller_raw
    contact = normalize_phone(phone, region)
    given_mail = parse_email(email)
    mail = given_mail.address  # only an address that parses finds or keys a lead
    if contact.raw is None and given_mail.raw is None and call is None and channel not in CONVERSATION_CHANNELS:
        raise LeadError("phone", "an enquiry needs a phone number or an e-mail address")

    if visitor_session is None and call is not None and call.session_id is not None:
        visitor_session = session.get(VisitorSession, call.session_id)
    values: dict[str, Any] = {}
    for attr in SESSION_FIELDS:
        value = attribution.get(attr)
        if value is None and call is not None and attr in CALL_FIELDS:
            value = getattr(call, attr)
        if value is None and visitor_session is not None:
            value = getattr(visitor_session, attr)
        values[attr] = clean_text(value, _FIELD_MAX.get(attr, 255))
    if source_id is None:
        source_id = (call.source_id if call is not None else None) or (
            visitor_session.source_id if visitor_session is not None else None)
    if manager_id is None and call is not None:
        manager_id = call.manager_id

    keys = [("phone", contact.e164)] if contact.e164 else []
    if mail:
        keys.append(("email", mail))
    visitor_id = visitor_session.visitor_id if visitor_session is not None else None
    if visitor_id:
        keys.append(("visitor", visitor_id))
    _lock(session, site_row.id, keys)
    if call is not None:  # a concurrent writer may have recorded this call while we waited
        existing = session.scalar(select(Enquiry).where(Enquiry.call_id == call.id))
        if existing is not None:
            return existing
    lead = _find_lead(session, site_row, contact.e164, mail, at, visitor_id)
    if lead is None:
        lead = Lead(site_id=site_row.id, phone=contact.e164, email=mail, status="new", first_channel=channel,
                    created_at=at, last_enquiry_at=at, enquiries_count=0)
        session.add(lead)
        session.flush()
    elif lead.phone is None and contact.e164:
        lead.phone = contact.e164
    enquiry = Enquiry(
        lead_id=lead.id, site_id=site_row.id, channel=channel, at=at, repeat=False,
        call_id=call.id if call is not None else None,
        session_id=visitor_session.id if visitor_session is not None else None,
        source_id=source_id, manager_id=manager_id,
        name=clean_text(name, NAME_MAX), phone=contact.e164, phone_raw=contact.raw, phone_invalid=contact.invalid,
        email=given_mail.raw, email_invalid=given_mail.invalid, message=clean_text(message, MESSAGE_MAX), page_url=clean_text(page_url, PAGE_URL_MAX),
        **values)
    session.add(enquiry)
    lead.updated_at = dt.datetime.now(dt.UTC)
    refresh_lead(session, lead)
    return enquiry

