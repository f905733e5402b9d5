"""A month of known rents, minutes and calls (November 2026, 30 days, site in UTC), shared by the core's and
the admin's cost tests.  The hand computation is in ``EXPECTED``'s comments and in test_costs.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from astertrack.db.models import AdCost, Call, Enquiry, Lead, TrackingNumber, TrackingPrice
from astertrack.samples import factories

UTC = dt.UTC
START = dt.datetime(2026, 11, 1, tzinfo=UTC)
END = dt.datetime(2026, 12, 1, tzinfo=UTC)


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, tzinfo=UTC)


def build(session) -> dict:
    """Billboard (static, own number S1 at 300/month, 2.00/min); pool P at 600/month and 1.50/min with P1,
    P2 (rented from 16 November: 15 of 30 days), P3 (its own rent 900, the pool's minute price); Google and
    Yandex draw from P."""
    site = factories.add_site(session, "Costs", timezone="UTC")
    billboard = factories.add_static_source(session, site, "Billboard", ["+74951110001"])
    pool = factories.add_pool(session, site, "P", ["+74952220001", "+74952220002", "+74952220003"])
    google = factories.add_dynamic_source(session, site, "Google", pool)
    yandex = factories.add_dynamic_source(session, site, "Yandex", pool)
    s1 = session.query(TrackingNumber).filter_by(number="+74951110001").one()
    p1, p2, p3 = sorted(pool.numbers, key=lambda n: n.number)
    session.add_all([
        TrackingPrice(number_id=s1.id, monthly_rent=Decimal("300"), minute_price=Decimal("2.00")),
        TrackingPrice(pool_id=pool.id, monthly_rent=Decimal("600"), minute_price=Decimal("1.50")),
        TrackingPrice(number_id=p2.id, rented_from=dt.date(2026, 11, 16)),  # inherits both prices
        TrackingPrice(number_id=p3.id, monthly_rent=Decimal("900")),  # inherits the minute price
        AdCost(source_id=google.id, day=dt.date(2026, 11, 5), amount=Decimal("900.00")),
    ])

    def call(number, source, day, talk, outcome="answered"):
        row = Call(site_id=site.id, did=number.number, source_id=source.id if source else None, started_at=at(day),
                   outcome=outcome, talk_seconds=talk, caller_number=f"+7916000{day:02d}{int(talk or 0):03d}")
        session.add(row)
        return row

    # Billboard: 61 s → 2 min, 120 s → 2 min, missed → 0, 1 s → 1 min: 5 min × 2.00 = 10.00
    call(s1, billboard, 2, 61)
    call(s1, billboard, 3, 120)
    call(s1, billboard, 4, None, "missed")
    call(s1, billboard, 5, 1)
    # Google on the pool: 30 s → 1, 125 s (on P3) → 3, 59.5 s → 1: 5 min × 1.50 = 7.50
    call(p1, google, 6, 30)
    call(p3, google, 7, 125)
    call(p1, google, 8, 59.5)
    # Yandex on the pool: one missed call on P2: 0 min
    call(p2, yandex, 20, None, "missed")
    # Outside the month: not counted
    session.add(Call(site_id=site.id, did=p1.number, source_id=google.id, outcome="answered", talk_seconds=600,
                     started_at=dt.datetime(2026, 10, 31, 23, 59, tzinfo=UTC)))
    session.add(Call(site_id=site.id, did=p1.number, source_id=google.id, outcome="answered", talk_seconds=600,
                     started_at=END))
    session.flush()
    # Leads: Billboard 2, Google 2, Yandex 1; ten enquiries in the month
    leads = []
    for source, count in ((billboard, 2), (google, 2), (yandex, 1)):
        for i in range(count):
            lead = Lead(site_id=site.id, source_id=source.id, phone=f"+7926{source.id:03d}{i:04d}",
                        created_at=at(10 + i))
            session.add(lead)
            leads.append(lead)
    session.flush()
    for i in range(10):
        session.add(Enquiry(lead_id=leads[i % 5].id, site_id=site.id, channel="call" if i < 8 else "form",
                            at=at(10 + i % 5), source_id=leads[i % 5].source_id))
    session.commit()
    return {"site": site, "billboard": billboard, "google": google, "yandex": yandex, "pool": pool,
            "numbers": {"s1": s1, "p1": p1, "p2": p2, "p3": p3}}
