"""Tracking costs (#27): exact figures from known rents, minutes and calls; pro rata; inheritance."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from astertrack.db.models import TrackingPrice
from astertrack.reporting import costs, reports
from astertrack.samples import factories
from tests.reporting import costs_fixture


def test_fixture_month_exact(session):
    """November (30 days):
    rent: S1 300; pool P: P1 600 + P2 600 × 15/30 = 300 + P3 900 (own) = 1800 → 2100.
    minutes: Billboard 2+2+0+1 = 5 × 2.00 = 10.00; Google 1+3+1 = 5 × 1.50 = 7.50; Yandex 0.
    pool rent shared by the pool's calls (Google 3, Yandex 1 of 4): Google 1350, Yandex 450.
    Billboard 300 + 10 = 310.00 / 4 calls = 77.50 per call / 2 leads = 155.00 per lead.
    Google 1350 + 7.50 = 1357.50 / 3 calls = 452.50 / 2 leads = 678.75.
    Yandex 450 / 1 call = 450 / 1 lead = 450.
    total 2117.50 / 8 calls = 264.6875; / 5 leads = 423.50; / 10 enquiries = 211.75."""
    data = costs_fixture.build(session)
    report = costs.cost_report(session, costs_fixture.START, costs_fixture.END, site_id=data["site"].id)
    rows = {r["label"]: r for r in report["rows"]}
    assert rows["Billboard"]["rent"] == Decimal("300")
    assert rows["Billboard"]["minutes"] == 5 and rows["Billboard"]["minute_cost"] == Decimal("10.00")
    assert rows["Billboard"]["per_call"] == Decimal("77.50") and rows["Billboard"]["per_lead"] == Decimal("155")
    assert rows["Google"]["rent"] == Decimal("1350") and rows["Google"]["minute_cost"] == Decimal("7.50")
    assert rows["Google"]["per_call"] == Decimal("452.50") and rows["Google"]["per_lead"] == Decimal("678.75")
    assert rows["Yandex"]["total"] == Decimal("450") and rows["Yandex"]["per_call"] == Decimal("450")
    t = report["totals"]
    assert (t["rent"], t["minutes"], t["minute_cost"], t["total"]) == (Decimal("2100"), 10, Decimal("17.50"),
                                                                      Decimal("2117.50"))
    assert (t["calls"], t["leads"], t["enquiries"]) == (8, 5, 10)
    assert t["per_call"] == Decimal("264.6875")
    assert t["per_lead"] == Decimal("423.50") and t["per_enquiry"] == Decimal("211.75")
    assert set(rows) == {"Billboard", "Google", "Yandex"}  # nothing left unshared


def test_funnel_with_and_without_tracking(session):
    """Google's ad cost 900 over 3 calls = 300.00 per call, 450.00 per lead; with its tracking cost 1357.50:
    2257.50 / 3 = 752.50 per call, / 2 = 1128.75 per lead.  Billboard has no ad cost: tracking only,
    77.50 and 155.00."""
    data = costs_fixture.build(session)
    f = reports.ReportFilter(start=costs_fixture.START, end=costs_fixture.END, site_id=data["site"].id)
    rows = {r["label"]: r for r in reports.funnel(session, f)["rows"]}
    google = rows["Google"]
    assert google["cost_per_call"] == 300.0 and google["cost_per_lead"] == 450.0
    assert google["tracking_cost"] == Decimal("1357.50")
    assert google["cost_per_call_tracking"] == Decimal("752.50")
    assert google["cost_per_lead_tracking"] == Decimal("1128.75")
    billboard = rows["Billboard"]
    assert billboard["cost_per_call"] is None
    assert billboard["cost_per_call_tracking"] == Decimal("77.50")
    assert billboard["cost_per_lead_tracking"] == Decimal("155")


def test_partial_months_pro_rata():
    """310 a month, rented 21 Dec → 15 Jan: December 11/31 × 310 = 110, January 15/31 × 310 = 150."""
    rent = Decimal("310")
    assert costs.prorated_rent(rent, dt.date(2026, 12, 1), dt.date(2026, 12, 31), dt.date(2026, 12, 21), None) == 110
    assert costs.prorated_rent(rent, dt.date(2026, 12, 1), dt.date(2027, 1, 31), dt.date(2026, 12, 21),
                               dt.date(2027, 1, 15)) == 260
    # a whole month is exactly the rent, whatever its length; a number rented after the period costs nothing
    assert costs.prorated_rent(Decimal("280"), dt.date(2027, 2, 1), dt.date(2027, 2, 28), None, None) == 280
    assert costs.prorated_rent(rent, dt.date(2026, 11, 1), dt.date(2026, 11, 30), dt.date(2026, 12, 1), None) == 0


def test_archived_number_rent_ends(session):
    """Rent 280 in February 2027 (28 days), archived on the 14th: 14 days = 140.00."""
    site = factories.add_site(session, "Arch", timezone="UTC")
    source = factories.add_static_source(session, site, "Radio", ["+74953330001"])
    number = source_number = session.query(costs.TrackingNumber).filter_by(source_id=source.id).one()
    session.add(TrackingPrice(number_id=number.id, monthly_rent=Decimal("280")))
    source_number.archived_at = dt.datetime(2027, 2, 14, 18, tzinfo=dt.UTC)
    session.flush()
    result = costs.tracking_costs(session, dt.datetime(2027, 2, 1, tzinfo=dt.UTC),
                                  dt.datetime(2027, 3, 1, tzinfo=dt.UTC), site_id=site.id)
    assert result.rent == Decimal("140")
    assert result.by_source[source.id].rent == Decimal("140")


def test_pool_price_inherited_and_overridden(session):
    """A pool's price applies to its numbers field by field; a number's own value wins."""
    site = factories.add_site(session)
    pool = factories.add_pool(session, site, "P", ["+74954440001", "+74954440002"])
    first, second = sorted(pool.numbers, key=lambda n: n.number)
    session.add_all([TrackingPrice(pool_id=pool.id, monthly_rent=Decimal("600"), minute_price=Decimal("1.50"),
                                   currency="USD"),
                     TrackingPrice(number_id=second.id, monthly_rent=Decimal("900"), currency="EUR")])
    session.flush()
    prices = costs.number_prices(session, [first, second])
    assert prices[first.id] == costs.Price(Decimal("600"), Decimal("1.50"), "USD")
    assert prices[second.id] == costs.Price(Decimal("900"), Decimal("1.50"), "EUR")


def test_billed_minutes_round_up():
    assert [costs.billed_minutes(s) for s in (None, 0, 0.4, 1, 59.999, 60, 60.001, 120, 121)] == \
        [0, 0, 1, 1, 1, 1, 2, 2, 3]


def test_pool_without_calls_rent_unshared(session):
    """A pool that took no calls: its rent is under "no source" (key None), not lost."""
    site = factories.add_site(session, timezone="UTC")
    pool = factories.add_pool(session, site, "P", ["+74955550001"])
    factories.add_dynamic_source(session, site, "Ads", pool)
    session.add(TrackingPrice(pool_id=pool.id, monthly_rent=Decimal("500")))
    session.flush()
    result = costs.tracking_costs(session, costs_fixture.START, costs_fixture.END, site_id=site.id)
    assert result.by_source[None].rent == Decimal("500") and result.total == Decimal("500")
