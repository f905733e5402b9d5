"""The one record every builder reads: a conversion made from a call or a lead plus the visit it
came from.  Pure: the caller passes the rows, nothing here touches the database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from astertrack.dni.allocation import ga_client_id as _ga_client_id
from astertrack.integrations.conversions import rules


@dataclass(frozen=True)
class Conversion:
    site_id: int
    subject: str  # "call:12" or "lead:5@won": unique per site and platform in the log
    kind: str  # call|lead
    occurred_at: dt.datetime  # aware UTC
    counts: bool  # the site's rule is met
    value: Decimal | None = None
    currency: str | None = None
    call_id: int | None = None
    lead_id: int | None = None
    ga_client_id: str | None = None  # "1234567890.1699999999" (from the _ga cookie)
    ym_client_id: str | None = None  # the _ym_uid cookie
    gclid: str | None = None
    yclid: str | None = None
    phone: str | None = None
    outcome: str | None = None  # answered|missed|busy (calls)
    talk_seconds: int | None = None
    wait_seconds: int | None = None
    first_time: bool | None = None
    url: str | None = None  # the visit's landing page
    tag: str | None = None  # the source's name
    lead_state: str | None = None


def _first(*values):
    for value in values:
        if value:
            return value
    return None


def _seconds(value: float | None) -> int | None:
    return None if value is None else max(int(round(value)), 0)


def from_call(call, visit, site, rule, settings_currency: str, source_name: str | None = None) -> Conversion:
    """A finished call (``Call``) with its visit (``VisitorSession`` or None) under the site's rule."""
    counts = rules.call_counts(rule.calls, rule.first_time_only, call.outcome, call.talk_seconds,
                               site.target_call_seconds, call.is_first_call)
    return Conversion(
        site_id=site.id, subject=f"call:{call.id}", kind="call", occurred_at=call.started_at, counts=counts,
        value=rule.call_value, currency=settings_currency, call_id=call.id,
        ga_client_id=_ga_client_id(visit.ga_client_id) if visit else None,
        ym_client_id=visit.ym_client_id if visit else None,
        gclid=visit.gclid if visit else None, yclid=visit.yclid if visit else None,
        phone=call.caller_number, outcome=call.outcome, talk_seconds=_seconds(call.talk_seconds),
        wait_seconds=_seconds(call.wait_seconds), first_time=call.is_first_call,
        url=visit.landing_page if visit else None, tag=source_name)


def from_lead(lead, visit, enquiries, site, rule, settings_currency: str, source_name: str | None = None) -> Conversion:
    """A lead that reached ``rule.lead_state``; click and client ids from its visit, else from the
    first of its enquiries that has them (a web form carries its own)."""
    enquiries = list(enquiries or [])

    def pick(name: str):
        return _first(getattr(visit, name, None) if visit else None, *(getattr(e, name, None) for e in enquiries))

    value = rules.lead_value(rule.lead_value, rule.lead_fixed_value, lead.amount)
    currency = (lead.currency if rule.lead_value == "amount" and lead.amount is not None and lead.currency
                else settings_currency)
    return Conversion(
        site_id=site.id, subject=f"lead:{lead.id}@{rule.lead_state}", kind="lead",
        occurred_at=lead.updated_at or lead.created_at,
        counts=rules.lead_reached(lead.status, rule.lead_state), value=value, currency=currency, lead_id=lead.id,
        call_id=lead.call_id, ga_client_id=_ga_client_id(pick("ga_client_id")), ym_client_id=pick("ym_client_id"),
        gclid=pick("gclid"), yclid=pick("yclid"), phone=lead.phone,
        url=_first(visit.landing_page if visit else None, *(e.page_url for e in enquiries)), tag=source_name,
        lead_state=lead.status)
