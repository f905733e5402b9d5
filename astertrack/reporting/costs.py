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
* **Per source**: a call's minutes go to the call's own source (each call's cost is exact).  A
  static source carries its own numbers' rent.  A pool's rent (all its numbers, pro rata) is shared
  out over the sources of the calls its numbers took in the period, in proportion to their calls
  (calls with no source form a "no source" share); a pool that took no calls, and numbers of no
  source and no pool, leave their rent under "no source" (key None).
* **Per call / per lead**: a source's tracking cost ÷ its calls (leads) in the period; the page's
  "per enquiry" is the whole cost ÷ the enquiries (calls, forms, callbacks...) of the period.

Money is ``Decimal``; totals are rounded to kopecks (0.01) only when shown.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Enquiry, Lead, Source, TrackingNumber, TrackingPrice

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


# ---------------------------------------------------------------- a period's cost


def billed_minutes(talk_seconds: float | None) -> int:
    """Whole minutes a carrier bills for a call: its talk time rounded up (0 for an unanswered call)."""
    if not talk_seconds or talk_seconds <= 0:
        return 0
    return math.ceil(Decimal(str(round(talk_seconds, 3))) / 60)


def held_days(first: dt.date, last: dt.date, rented_from: dt.date | None, rented_until: dt.date | None) -> int:
    """Days of [first, last] (both counted) the number was rented."""
    start = max(first, rented_from) if rented_from else first
    end = min(last, rented_until) if rented_until else last
    return max(0, (end - start).days + 1)


def prorated_rent(rent: Decimal, first: dt.date, last: dt.date, rented_from: dt.date | None,
                  rented_until: dt.date | None) -> Decimal:
    """Rent of the days of [first, last] the number was held: each calendar month touched costs
    ``rent × days held in it ÷ days in that month`` (a whole month costs exactly the rent)."""
    total = Decimal(0)
    month = first.replace(day=1)
    while month <= last:
        month_last = month.replace(day=days_in_month(month))
        days = held_days(max(first, month), min(last, month_last), rented_from, rented_until)
        if days:
            total += rent * days / days_in_month(month)
        month = month_last + dt.timedelta(days=1)
    return total


@dataclass
class SourceCost:
    """A source's share of the tracking cost in the period (key None: no source: unattributed calls,
    numbers of no source, a pool that took no calls)."""

    rent: Decimal = Decimal(0)
    minutes: int = 0
    minute_cost: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.rent + self.minute_cost


@dataclass
class NumberCost:
    number_id: int
    number: str
    label: str | None
    pool_id: int | None
    source_id: int | None
    price: Price
    rent: Decimal
    calls: int
    minutes: int
    minute_cost: Decimal

    @property
    def total(self) -> Decimal:
        return self.rent + self.minute_cost


@dataclass
class TrackingCosts:
    first: dt.date
    last: dt.date
    numbers: list[NumberCost]
    by_source: dict[int | None, SourceCost]
    currencies: set[str]

    @property
    def rent(self) -> Decimal:
        return sum((n.rent for n in self.numbers), Decimal(0))

    @property
    def minutes(self) -> int:
        return sum(n.minutes for n in self.numbers)

    @property
    def minute_cost(self) -> Decimal:
        return sum((n.minute_cost for n in self.numbers), Decimal(0))

    @property
    def total(self) -> Decimal:
        return self.rent + self.minute_cost

    def source_total(self, source_id: int | None) -> Decimal:
        cost = self.by_source.get(source_id)
        return cost.total if cost is not None else Decimal(0)


def local_dates(start: dt.datetime, end: dt.datetime, tz: str) -> tuple[dt.date, dt.date]:
    """The first and last local calendar day of [start, end)."""
    zone = ZoneInfo(tz)
    return start.astimezone(zone).date(), (end - dt.timedelta(microseconds=1)).astimezone(zone).date()


def month_period(month: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in aware UTC of the local calendar month holding ``month``."""
    zone = ZoneInfo(tz)
    first = month.replace(day=1)
    following = first.replace(day=days_in_month(first)) + dt.timedelta(days=1)
    return (dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC),
            dt.datetime.combine(following, dt.time(), zone).astimezone(dt.UTC))


def tracking_costs(db: Session, start: dt.datetime, end: dt.datetime, *, site_id: int | None = None,
                   tz: str = "UTC") -> TrackingCosts:
    """The tracking cost of [start, end): every number's pro-rata rent and its calls' billed minutes,
    and the cost per source by the module's rules (rent of a pool shared by calls, minutes follow the
    call's own source)."""
    first, last = local_dates(start, end, tz)
    zone = ZoneInfo(tz)
    stmt = select(TrackingNumber)
    if site_id is not None:
        stmt = stmt.where(TrackingNumber.site_id == site_id)
    numbers = list(db.scalars(stmt.order_by(TrackingNumber.id)))
    by_pool, by_number = _price_rows(db)
    by_did = {n.number: n for n in numbers}
    call_stmt = select(Call.did, Call.source_id, Call.talk_seconds).where(
        Call.started_at >= start, Call.started_at < end, Call.did.in_(list(by_did)) if by_did else false())
    calls = db.execute(call_stmt).all()

    by_source: dict[int | None, SourceCost] = {}
    pool_calls: dict[int, dict[int | None, int]] = {}
    per_number: dict[int, list[Any]] = {n.id: [0, 0, Decimal(0)] for n in numbers}  # calls, minutes, cost
    prices = {n.id: effective_price(by_number.get(n.id), by_pool.get(n.pool_id) if n.pool_id else None)
              for n in numbers}
    for did, source_id, talk in calls:
        number = by_did[did]
        minutes = billed_minutes(talk)
        price = prices[number.id].minute_price
        cost = price * minutes if price is not None else Decimal(0)
        tally = per_number[number.id]
        tally[0] += 1
        tally[1] += minutes
        tally[2] += cost
        share = by_source.setdefault(source_id, SourceCost())
        share.minutes += minutes
        share.minute_cost += cost
        if number.pool_id is not None:
            counts = pool_calls.setdefault(number.pool_id, {})
            counts[source_id] = counts.get(source_id, 0) + 1

    rows: list[NumberCost] = []
    pool_rent: dict[int, Decimal] = {}
    currencies: set[str] = set()
    for number in numbers:
        price = prices[number.id]
        own = by_number.get(number.id)
        rent = Decimal(0)
        if price.monthly_rent is not None:
            until = own.rented_until if own is not None else None
            if number.archived_at is not None:
                archived = number.archived_at.astimezone(zone).date()
                until = min(until, archived) if until else archived
            rent = prorated_rent(price.monthly_rent, first, last, own.rented_from if own else None, until)
        if price.monthly_rent is not None or price.minute_price is not None:
            currencies.add(price.currency)
        calls_n, minutes, minute_cost = per_number[number.id]
        rows.append(NumberCost(number.id, number.number, number.label, number.pool_id, number.source_id, price,
                               rent, calls_n, minutes, minute_cost))
        if number.pool_id is not None:
            pool_rent[number.pool_id] = pool_rent.get(number.pool_id, Decimal(0)) + rent
        else:
            by_source.setdefault(number.source_id, SourceCost()).rent += rent
    for pool_id, rent in pool_rent.items():
        counts = pool_calls.get(pool_id) or {}
        total_calls = sum(counts.values())
        if not total_calls:
            by_source.setdefault(None, SourceCost()).rent += rent
            continue
        for source_id, n in counts.items():
            by_source.setdefault(source_id, SourceCost()).rent += rent * n / total_calls
    return TrackingCosts(first, last, rows, by_source, currencies or {"RUB"})


# ---------------------------------------------------------------- the "Tracking costs" page

COST_COLUMNS = ("label", "calls", "leads", "rent", "minutes", "minute_cost", "total", "per_call", "per_lead")


def _per(amount: Decimal, count: int) -> Decimal | None:
    return amount / count if count else None


def cost_report(db: Session, start: dt.datetime, end: dt.datetime, *, site_id: int | None = None,
                tz: str = "UTC") -> dict[str, Any]:
    """The page's figures: per source its calls, leads, rent share, minutes and their cost, total, per call
    and per lead; totals with the enquiries of the period and the cost per enquiry."""
    costs = tracking_costs(db, start, end, site_id=site_id, tz=tz)
    call_conds = [Call.started_at >= start, Call.started_at < end]
    lead_conds = [Lead.created_at >= start, Lead.created_at < end, Lead.merged_into_id.is_(None)]
    enquiry_conds = [Enquiry.at >= start, Enquiry.at < end]
    if site_id is not None:
        call_conds.append(Call.site_id == site_id)
        lead_conds.append(Lead.site_id == site_id)
        enquiry_conds.append(Enquiry.site_id == site_id)
    calls = dict(db.execute(select(Call.source_id, func.count()).where(*call_conds).group_by(Call.source_id)).all())
    leads = dict(db.execute(select(Lead.source_id, func.count()).where(*lead_conds).group_by(Lead.source_id)).all())
    enquiries = int(db.scalar(select(func.count()).select_from(Enquiry).where(*enquiry_conds)) or 0)
    keys = set(costs.by_source) | set(calls) | set(leads)
    names = dict(db.execute(select(Source.id, Source.name).where(Source.id.in_([k for k in keys if k]))).all())
    rows = []
    for key in keys:
        share = costs.by_source.get(key, SourceCost())
        n_calls, n_leads = int(calls.get(key, 0)), int(leads.get(key, 0))
        rows.append({"key": key, "label": names.get(key, f"#{key}") if key else None, "calls": n_calls,
                     "leads": n_leads, "rent": share.rent, "minutes": share.minutes, "minute_cost": share.minute_cost,
                     "total": share.total, "per_call": _per(share.total, n_calls),
                     "per_lead": _per(share.total, n_leads)})
    rows.sort(key=lambda r: (-r["total"], -r["calls"], str(r["label"] or "")))
    n_calls, n_leads = sum(r["calls"] for r in rows), sum(r["leads"] for r in rows)
    totals = {"key": None, "label": None, "calls": n_calls, "leads": n_leads, "rent": costs.rent,
              "minutes": costs.minutes, "minute_cost": costs.minute_cost, "total": costs.total,
              "per_call": _per(costs.total, n_calls), "per_lead": _per(costs.total, n_leads),
              "enquiries": enquiries, "per_enquiry": _per(costs.total, enquiries)}
    return {"rows": rows, "totals": totals, "numbers": costs.numbers, "currencies": sorted(costs.currencies),
            "first": costs.first, "last": costs.last}
