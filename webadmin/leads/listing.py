"""The lead list's filters, read from the query string, and the one query the page, its count and
its CSV export share (merged leads are left out: they live on in the lead they joined)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from astertrack.db.models import Enquiry, Lead, Manager, Site, Source
from astertrack.leads import CHANNELS, STATES
from astertrack.phones import try_normalize
from webadmin.filters import arg_int, arg_str, period
from webadmin.leads.access import visible_condition

SEARCH_MAX = 100
_DIGITS = re.compile(r"\D")


@dataclass(frozen=True)
class LeadFilter:
    start: dt.datetime
    end: dt.datetime
    site_id: int | None = None
    source_id: int | None = None
    manager_id: int | None = None
    status: str | None = None
    first_channel: str | None = None
    channel: str | None = None  # the channel of any of the lead's enquiries
    search: str | None = None  # phone, e-mail, name or #id


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = arg_str(name, 30)
    return value if value in allowed else None


def lead_filter() -> tuple[LeadFilter, dict[str, Any]]:
    """The filters from the query string (bad choices ignored, bad dates a 400) and the form's values."""
    date_from, date_to, start, end, tz = period()
    f = LeadFilter(start=start, end=end, site_id=arg_int("site"), source_id=arg_int("source"),
                   manager_id=arg_int("manager"), status=_choice("status", STATES),
                   first_channel=_choice("first_channel", CHANNELS), channel=_choice("channel", CHANNELS),
                   search=arg_str("q", SEARCH_MAX))
    form = {"from": date_from.isoformat(), "to": date_to.isoformat(), "site": f.site_id, "source": f.source_id,
            "manager": f.manager_id, "status": f.status or "", "first_channel": f.first_channel or "",
            "channel": f.channel or "", "q": f.search or "", "tz": tz}
    return f, form


def _search_condition(text: str):
    """Phone (as typed or normalised), e-mail, name, or ``#id``."""
    needle = text.strip().lower()
    conditions = [func.lower(Lead.email).contains(needle, autoescape=True),
                  func.lower(Lead.name).contains(needle, autoescape=True)]
    if needle.lstrip("#").isdigit() and len(needle) < 12:
        conditions.append(Lead.id == int(needle.lstrip("#")))
    phone = try_normalize(text)
    if phone:
        conditions.append(Lead.phone == phone)
    digits = _DIGITS.sub("", text)
    if len(digits) >= 3 and re.fullmatch(r"[\d+()\-.\s]+", text):
        conditions.append(Lead.phone.contains(digits, autoescape=True))
    return or_(*conditions)


def conditions(f: LeadFilter) -> list:
    where = [Lead.merged_into_id.is_(None), Lead.created_at >= f.start, Lead.created_at < f.end,
             visible_condition()]
    if f.site_id is not None:
        where.append(Lead.site_id == f.site_id)
    if f.source_id is not None:
        where.append(Lead.source_id == f.source_id)
    if f.manager_id is not None:
        where.append(or_(Lead.manager_id == f.manager_id, exists(select(Enquiry.id).where(
            Enquiry.lead_id == Lead.id, Enquiry.manager_id == f.manager_id))))
    if f.status:
        where.append(Lead.status == f.status)
    if f.first_channel:
        where.append(Lead.first_channel == f.first_channel)
    if f.channel:
        where.append(exists(select(Enquiry.id).where(Enquiry.lead_id == Lead.id, Enquiry.channel == f.channel)))
    if f.search:
        where.append(_search_condition(f.search))
    return where


def _rows(f: LeadFilter) -> Select:
    return (select(Lead, Site.name, Source.name, Manager.name)
            .outerjoin(Site, Site.id == Lead.site_id).outerjoin(Source, Source.id == Lead.source_id)
            .outerjoin(Manager, Manager.id == Lead.manager_id)
            .where(*conditions(f)).order_by(Lead.created_at.desc(), Lead.id.desc()))


def page(db: Session, f: LeadFilter, number: int, size: int) -> list:
    """One page of (lead, site name, source name, manager name), newest first."""
    return db.execute(_rows(f).limit(size).offset((number - 1) * size)).all()


def count(db: Session, f: LeadFilter) -> int:
    return db.scalar(select(func.count()).select_from(Lead).where(*conditions(f))) or 0


CSV_HEADER = ["id", "created_at", "site", "status", "amount", "currency", "phone", "phone_as_given", "email", "name",
              "first_channel", "source", "manager", "enquiries", "last_enquiry_at", "external_id"]


def csv_rows(db: Session, f: LeadFilter) -> Iterator[list]:
    """The export's rows, streamed from the cursor; codes stay codes (stable for spreadsheets).
    ``phone_as_given`` is a phone that did not parse (the lead then has no E.164 phone)."""
    raw_phone = (select(Enquiry.phone_raw).where(Enquiry.lead_id == Lead.id, Enquiry.phone_invalid.is_(True))
                 .order_by(Enquiry.at, Enquiry.id).limit(1).scalar_subquery())
    statement = _rows(f).add_columns(raw_phone).execution_options(yield_per=500)
    for lead, site, source, manager, given in db.execute(statement):
        yield [lead.id, lead.created_at, site, lead.status, lead.amount, lead.currency, lead.phone,
               None if lead.phone else given, lead.email, lead.name, lead.first_channel, source, manager,
               lead.enquiries_count, lead.last_enquiry_at, lead.external_id]
