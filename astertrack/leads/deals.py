"""A lead's state and its deal: ``set_state`` is the ONE writer of ``Deal`` rows, so the funnel and
managers reports (which read ``Deal``) always agree with the lead.

A lead has at most one live deal (its latest ``Deal`` row): it exists once the lead is closed (won or
lost) or has an amount; won -> deal "won" with the amount as revenue (0 when none is known), lost ->
"lost", any open state -> "open".  Amounts are decimal with two places, never negative; currencies
are ISO 4217 codes in use today (Babel's CLDR data).
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Deal, Lead
from astertrack.leads import CLOSED_STATES, STATES
from astertrack.leads.enquiries import resolve
from astertrack.leads.errors import LeadError

DEFAULT_CURRENCY = "RUB"
MAX_AMOUNT = Decimal("999999999999.99")  # Numeric(14, 2)
_DEAL_STATUS = {"won": "won", "lost": "lost"}


@functools.cache
def currencies() -> frozenset[str]:
    """ISO 4217 codes legal tender somewhere today (CLDR via Babel), e.g. RUB, USD, EUR, KZT."""
    from babel.core import get_global
    from babel.numbers import get_territory_currencies

    today = dt.date.today()
    codes: set[str] = set()
    for territory in get_global("territory_currencies"):
        codes.update(get_territory_currencies(territory, today, tender=True))
    return frozenset(codes)


def parse_currency(value: str | None) -> str | None:
    """The upper-cased ISO 4217 code, None for nothing; LeadError for anything else."""
    if value is None or not str(value).strip():
        return None
    code = str(value).strip().upper()
    if code not in currencies():
        raise LeadError("currency", f"not an ISO 4217 currency code: {str(value)[:20]!r}")
    return code


def parse_amount(value: Decimal | int | float | str | None) -> Decimal | None:
    """A deal amount as Decimal with two places; LeadError when negative, too large or not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise LeadError("amount", "an amount is a number")
    try:
        amount = Decimal(str(value).strip().replace(",", ".") if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise LeadError("amount", f"not an amount: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise LeadError("amount", "an amount is a finite number")
    if amount < 0:
        raise LeadError("amount", "an amount cannot be negative")
    amount = amount.quantize(Decimal("0.01"))
    if amount > MAX_AMOUNT:
        raise LeadError("amount", f"an amount is at most {MAX_AMOUNT}")
    return amount


def deal_status(state: str) -> str:
    """The deal status a lead state means: won, lost, or open."""
    return _DEAL_STATUS.get(state, "open")


def current_deal(session: Session, lead: Lead) -> Deal | None:
    """The lead's live deal: its latest Deal row."""
    return session.scalar(select(Deal).where(Deal.lead_id == lead.id).order_by(Deal.id.desc()).limit(1))


def set_state(session: Session, lead: Lead, state: str, amount: Decimal | int | float | str | None = None,
              currency: str | None = None, *, now: dt.datetime | None = None) -> Lead:
    """Set the lead's state (``leads.STATES``) and, when given, its deal amount and currency; keep its
    Deal row in step.  A merged lead is followed to the lead it was merged into, which is returned.

    An amount without a currency keeps the lead's currency (RUB when it has none); ``amount=None``
    keeps the amount already known.  Raises LeadError (field ``state``, ``amount`` or ``currency``)
    before changing anything.  Nothing is committed here.
    """
    if state not in STATES:
        raise LeadError("state", f"unknown lead state {state!r}; one of {', '.join(STATES)}")
    value = parse_amount(amount)
    code = parse_currency(currency)
    now = now or dt.datetime.now(dt.UTC)
    lead = resolve(session, lead)
    before = (lead.status, lead.amount, lead.currency)
    lead.status = state
    if value is not None:
        lead.amount = value
    if code is not None:
        lead.currency = code
    elif lead.amount is not None and lead.currency is None:
        lead.currency = DEFAULT_CURRENCY
    lead.updated_at = now
    if (lead.status, lead.amount, lead.currency) != before:
        lead.deal_updated_at = now  # what the deal.updated webhook announces; a no-op save is no event

    deal = current_deal(session, lead)
    status = deal_status(state)
    if deal is None and (state in CLOSED_STATES or lead.amount is not None):
        deal = Deal(lead_id=lead.id, created_at=now)
        session.add(deal)
    if deal is not None:
        if deal.status != status or deal.closed_at is None:
            deal.closed_at = now if status != "open" else None
        deal.status = status
        deal.revenue = lead.amount if lead.amount is not None else Decimal("0")
        deal.currency = lead.currency or DEFAULT_CURRENCY
    session.flush()
    return lead
