"""What call tracking costs (#27): number rent and call minutes, per month, source, call and lead.

Prices (``TrackingPrice``) are set on a pool or on a number; a number's own field wins, else its
pool's (field by field: a number may have its own rent and its pool's per-minute price).

Rules, stated once so every page computes the same figures:

* **Rent** is per number-month.  A number rented for part of a month (``rented_from`` /
  ``rented_until`` on its price row, or archived during the month) costs
  ``rent × days held ÷ days in the month`` (both end days counted).
* **Minutes** are what carriers bill: an inbound call costs from the moment it is answered to its
  hang-up (``Call.talk_seconds``: Asterisk's dialplan does not answer the channel before a manager
  does, so ringing is not billed), rounded **up to whole minutes per call**; an unanswered call costs
  no minutes.  The price is the number's (or its pool's) per-minute price, the number found by the
  call's ``did``.
* **Per source**: a static source carries its own numbers' rent and the minutes of their calls.
  A pool's cost (its numbers' rent and the minutes of their calls) is shared out over the dynamic
  sources that used the pool by their share of the pool's calls in the month; a month in which the
  pool took no calls leaves its rent unshared (shown as "pool, no calls").
* **Per call / per lead**: the cost of a source divided by its calls (leads) in the period.

Money is ``Decimal``; totals are rounded to kopecks (0.01) only when shown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import TrackingNumber, TrackingPrice

CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """Rounded to kopecks, half up, as invoices are."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Price:
    """A number's effective prices: its own, else its pool's; None where neither sets one."""

    monthly_rent: Decimal | None
    minute_price: Decimal | None
    currency: str


def _price_rows(db: Session, *, pool_ids: set[int] | None = None,
                number_ids: set[int] | None = None) -> tuple[dict[int, TrackingPrice], dict[int, TrackingPrice]]:
    by_pool: dict[int, TrackingPrice] = {}
    by_number: dict[int, TrackingPrice] = {}
    query = select(TrackingPrice)
    for row in db.scalars(query):
        if row.pool_id is not None and (pool_ids is None or row.pool_id in pool_ids):
            by_pool[row.pool_id] = row
        if row.number_id is not None and (number_ids is None or row.number_id in number_ids):
            by_number[row.number_id] = row
    return by_pool, by_number


def effective_price(own: TrackingPrice | None, pool: TrackingPrice | None) -> Price:
    """A number's price, field by field: its own value, else its pool's."""
    rent = own.monthly_rent if own is not None and own.monthly_rent is not None else (
        pool.monthly_rent if pool is not None else None)
    minute = own.minute_price if own is not None and own.minute_price is not None else (
        pool.minute_price if pool is not None else None)
    if own is not None and (own.monthly_rent is not None or own.minute_price is not None):
        currency = own.currency
    else:
        currency = pool.currency if pool is not None else "RUB"
    return Price(rent, minute, currency)


def number_prices(db: Session, numbers: list[TrackingNumber]) -> dict[int, Price]:
    """Each number's effective price (id -> Price)."""
    by_pool, by_number = _price_rows(db)
    return {n.id: effective_price(by_number.get(n.id), by_pool.get(n.pool_id) if n.pool_id else None)
            for n in numbers}


def pool_monthly_cost(session: Session, pool_id: int, size: int | None = None) -> Decimal | None:
    """The monthly rent of the pool at ``size`` numbers (None: its current size, the enabled numbers as
    pool health counts them), for the pool-health page and its "what if".

    The current numbers are kept cheapest first (shrinking gives the dearest back); numbers beyond the
    current ones cost the pool's rent, or the mean of the current numbers' rents when the pool sets
    none.  Full months, no pro rata.  None when neither the pool nor any of its numbers has a rent.
    """
    if size is not None and size < 0:
        raise ValueError("size must be >= 0")
    numbers = list(session.scalars(select(TrackingNumber).where(TrackingNumber.pool_id == pool_id,
                                                                TrackingNumber.enabled.is_(True),
                                                                TrackingNumber.archived_at.is_(None))))
    pool_row = session.scalar(select(TrackingPrice).where(TrackingPrice.pool_id == pool_id))
    prices = number_prices(session, numbers)
    rents = sorted(p.monthly_rent for p in prices.values() if p.monthly_rent is not None)
    pool_rent = pool_row.monthly_rent if pool_row is not None else None
    if pool_rent is None and not rents:
        return None
    unpriced = len(numbers) - len(rents)  # no rent anywhere: they cost nothing known
    current = [Decimal(0)] * unpriced + rents
    if size is None:
        size = len(numbers)
    kept = current[:size]
    extra = size - len(kept)
    per_extra = pool_rent if pool_rent is not None else sum(rents, Decimal(0)) / len(rents)
    return money(sum(kept, Decimal(0)) + per_extra * extra)


def days_in_month(month: dt.date) -> int:
    first = month.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return (following - first).days
