"""Tracking costs in the admin (#27): the costs page, the funnel's and pool health's cost figures for a
supervisor, refused to a manager; the prices CSV import's preview, errors and apply."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from astertrack.db.models import TrackingPrice
from tests.reporting import costs_fixture


@pytest.fixture
def costs_data(data, db):
    return costs_fixture.build(db)


def test_costs_page_shows_the_month_for_a_supervisor(client, auth, costs_data):
    """The figures of tests/reporting/test_costs.py::test_fixture_month_exact, as the page prints them."""
    auth.login("super")
    site = costs_data["site"].id
    page = client.get(f"/reports/tracking-costs?month=2026-11&site={site}")
    body = page.data.decode()
    assert page.status_code == 200
    assert re.search(r'id="cost-total">\s*2,117\.50', body)
    assert re.search(r'id="cost-per-enquiry">\s*211\.75', body)
    assert re.search(r'id="cost-rent">\s*2,100\.00', body)
    for figure in ("Billboard", "77.50", "155.00", "452.50", "678.75", "1,357.50", "264.69", "423.50"):
        assert figure in body, figure
    assert 'data-chart-kind="bar"' in body and "chart.umd.js" in body
    csv = client.get(f"/reports/tracking-costs?month=2026-11&site={site}&format=csv")
    lines = csv.data.decode("utf-8-sig").splitlines()
    assert csv.status_code == 200 and lines[0].startswith("label,calls,leads,rent")
    assert any(line.startswith("Google,3,2,") and "1357.50" in line for line in lines), lines
    assert lines[-1].startswith("Total,8,5,")


def test_costs_page_rejects_a_bad_month(client, auth, costs_data):
    auth.login("super")
    page = client.get("/reports/tracking-costs?month=2026-13")
    assert page.status_code == 400 and b"2026-11" in page.data


def test_funnel_shows_costs_with_and_without_tracking(client, auth, costs_data):
    auth.login("super")
    site = costs_data["site"].id
    body = client.get(f"/reports/funnel?from=2026-11-01&to=2026-11-30&site={site}").data.decode()
    google = body[body.index(">Google</a>"):]
    google = google[:google.index("</tr>")]
    assert "300.00" in google and "450.00" in google  # ad cost only
    assert "1,357.50" in google and "752.50" in google and "1,128.75" in google  # with tracking
    assert "Tracking cost" in body


def test_pool_health_shows_monthly_cost_now_and_recommended(client, auth, costs_data, db):
    """Pool P now: P1 600 + P2 600 (inherited; the page shows a whole month) + P3 900 = 2,100.00."""
    auth.login("super")
    site = costs_data["site"].id
    body = client.get(f"/reports/pools?site={site}").data.decode()
    block = body[body.index('id="pool-costs"'):]
    block = block[:block.index("</table>")]
    assert re.search(r'pool-cost-now">\s*2,100\.00', block)
    recommended = int(re.findall(r'<td class="n">(\d+)</td><td class="n pool-cost-recommended">', block)[0])
    # recommended beyond 3 numbers costs 600 each (the pool's rent); fewer give back the dearest first
    expected = {0: "0.00", 1: "600.00", 2: "1,200.00", 3: "2,100.00"}.get(recommended,
                                                                          f"{2100 + 600 * (recommended - 3):,}.00")
    assert re.search(r'pool-cost-recommended">\s*' + re.escape(expected), block)


@pytest.mark.parametrize("path", ["/reports/tracking-costs", "/reports/tracking-costs?format=csv",
                                  "/reports/funnel", "/reports/pools"])
def test_manager_is_refused(client, auth, costs_data, path):
    auth.login("anna")
    assert client.get(path).status_code == 403


PRICES = """number;pool;site;monthly_rent;minute_price;currency;rented_from;rented_until
+7 495 111-00-01;;;350;2,5;;2026-11-01;
;P;Costs;650;;;;
+74952220002;;;;;;2026-11-20;2026-11-10
;P;Costs;1;;;;
+79990000000;;;100;;;;
;Nowhere;;100;;;;
+74952220003;;;abc;-1;EURO;;
;P;Costs;;;;2026-11-01;
"""


def test_prices_import_preview_errors_then_apply(client, auth, costs_data, db):
    auth.login("admin")
    preview = auth.post("/settings/prices/import", {"text": PRICES}, page="/settings/prices/import")
    body = preview.data.decode()
    assert preview.status_code == 200
    assert "2 rows ready, 6 rows with errors" in body
    for problem in ("rented_from is after rented_until", "already appears on line 3", "no tracking number",
                    "no single pool named &#39;Nowhere&#39;", "monthly_rent must be a number",
                    "minute_price must be a number", "currency must be a 3-letter code",
                    "rented_from is for numbers, not pools"):
        assert problem in body, problem
    # updates say what they change: S1 300 → 350, 2.00 → 2.5; P 600 → 650, 1.50 → none
    assert "<del>300.00</del> → <ins>350.00</ins>" in body and "<del>600.00</del> → <ins>650.00</ins>" in body
    assert db.query(TrackingPrice).filter_by(pool_id=costs_data["pool"].id).one().monthly_rent == Decimal("600")
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', body).group(1)
    applied = auth.post("/settings/prices/import", {"text": PRICES, "confirm": "1", "digest": digest},
                        page="/settings/prices/import")
    assert applied.status_code == 302
    db.rollback()
    pool_price = db.query(TrackingPrice).filter_by(pool_id=costs_data["pool"].id).one()
    assert (pool_price.monthly_rent, pool_price.minute_price) == (Decimal("650.00"), None)
    s1 = db.query(TrackingPrice).filter_by(number_id=costs_data["numbers"]["s1"].id).one()
    assert (s1.monthly_rent, s1.minute_price) == (Decimal("350.00"), Decimal("2.5000"))


def test_prices_import_is_admin_only(client, auth, costs_data):
    auth.login("super")
    assert client.get("/settings/prices/import").status_code == 403


def test_prices_import_explains_a_bad_header(client, auth, costs_data):
    auth.login("admin")
    bad = auth.post("/settings/prices/import", {"text": "phone,rent\n1,2\n"}, page="/settings/prices/import")
    assert bad.status_code == 400 and b"Missing column" in bad.data


def test_pool_and_number_prices_edited_in_settings(client, auth, data, db):
    """A pool's prices apply to its numbers; a number's own rent overrides it; both land in the history."""
    from astertrack.db.models import AuditLog, NumberPool, TrackingNumber
    from astertrack.reporting.costs import number_prices, pool_monthly_cost

    auth.login("admin")
    pool = db.get(NumberPool, data.pool)
    form = {"site_id": str(pool.site_id), "name": pool.name, "monthly_rent": "600", "minute_price": "1,5",
            "currency": "rub"}
    assert auth.post(f"/settings/pools/{pool.id}", form, page="/settings/pools/").status_code == 302
    db.rollback()
    stored = db.query(TrackingPrice).filter_by(pool_id=pool.id).one()
    assert (stored.monthly_rent, stored.minute_price, stored.currency) == (Decimal("600.00"), Decimal("1.5000"), "RUB")
    page = client.get(f"/settings/pools/{pool.id}").data.decode()
    assert 'value="600.00"' in page and 'value="1.5000"' in page
    numbers = db.query(TrackingNumber).filter_by(pool_id=pool.id).order_by(TrackingNumber.id).all()
    own = numbers[0]
    number_form = {"number": own.number, "site_id": str(own.site_id), "pool_id": str(pool.id), "enabled": "on",
                   "monthly_rent": "900", "rented_from": "2026-11-16"}
    assert auth.post(f"/settings/numbers/{own.id}", number_form, page="/settings/numbers/").status_code == 302
    db.rollback()
    prices = number_prices(db, numbers)
    assert prices[own.id].monthly_rent == Decimal("900.00") and prices[own.id].minute_price == Decimal("1.5000")
    assert all(prices[n.id].monthly_rent == Decimal("600.00") for n in numbers[1:])
    enabled = [n for n in numbers if n.enabled and n.archived_at is None]
    assert pool_monthly_cost(db, pool.id) == Decimal(900 + 600 * (len(enabled) - 1))
    entry = db.query(AuditLog).filter_by(entity_kind="numbers", entity_id=own.id).order_by(AuditLog.id.desc()).first()
    assert "900.00" in str(entry.after) and "2026-11-16" in str(entry.after)
    # a bad price is an error on its field, nothing saved
    bad = auth.post(f"/settings/numbers/{own.id}", {**number_form, "monthly_rent": "-5", "currency": "rubles"},
                    page="/settings/numbers/")
    assert bad.status_code == 400
    assert b"Enter an amount such as 450 or 1.35." in bad.data and b"A three-letter currency code" in bad.data


def test_costs_page_in_russian(client, auth, costs_data, db):
    """A supervisor reading Russian gets the page's labels and the formula in Russian, same figures."""
    from astertrack.db.models import User

    db.rollback()
    db.query(User).filter_by(login="super").one().locale = "ru"
    db.commit()
    auth.login("super")
    body = client.get(f"/reports/tracking-costs?month=2026-11&site={costs_data['site'].id}").data.decode()
    for words in ("Стоимость коллтрекинга за месяц", "На обращение", "Аренда", "Цена минуты",
                  "Стоимость коллтрекинга: аренда номеров"):
        assert words in body, words
    assert "Tracking cost this month" not in body
    assert "211,75" in body or "211.75" in body


def test_names_are_shown_as_text(client, auth, costs_data, db):
    """A source or pool named with markup is printed as text on the costs and pool-health pages."""
    from astertrack.db.models import NumberPool, Source

    db.get(Source, costs_data["billboard"].id).name = "<img src=x onerror=alert(1)>"
    db.get(NumberPool, costs_data["pool"].id).name = "<script>alert(2)</script>"
    db.commit()
    auth.login("super")
    site = costs_data["site"].id
    costs_page = client.get(f"/reports/tracking-costs?month=2026-11&site={site}").data.decode()
    pools_page = client.get(f"/reports/pools?site={site}").data.decode()
    assert "<img src=x" not in costs_page and "&lt;img src=x onerror=alert(1)&gt;" in costs_page
    assert "<script>alert(2)" not in pools_page and "&lt;script&gt;alert(2)&lt;/script&gt;" in pools_page
