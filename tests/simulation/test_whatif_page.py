"""Pool health's "what if" (#27): fitted from the site's stored sessions and calls, accuracy at the
current, recommended and typed sizes with their monthly cost, chart, CSV/JSON, hostile input as text,
English and Russian; bounded so the page answers in seconds."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from sqlalchemy import select

from astertrack.db.models import Call, TrackingPrice, User, VisitorSession
from astertrack.db.types import utcnow
from astertrack.simulation.generate import generate
from astertrack.simulation.model import ProductSettings, TrafficModel

HISTORY = TrafficModel(visits_per_day=150, caller_share=0.1, return_visit_share=0.0, repeat_caller_share=0.0)


def store_history(db, site_id: int, source_id: int):
    """A week of the site's traffic as the product stores it, ending now."""
    import datetime as dt

    stream = generate(HISTORY, ProductSettings(), days=7, seed=9)
    shift = (utcnow() - dt.timedelta(days=7, minutes=5)) - stream.start
    rows = [VisitorSession(site_id=site_id, source_id=source_id, is_bot=v.is_bot, first_seen=v.start + shift,
                           last_seen=v.end + shift, page_views=v.pages) for v in stream.visits]
    db.add_all(rows)
    db.flush()
    db.add_all(Call(site_id=site_id, started_at=c.at + shift, session_id=rows[c.visit].id, caller_number=c.caller,
                    is_first_call=True) for c in stream.calls if c.at + shift < utcnow())
    db.commit()
    return len(rows)


def test_what_if_simulates_the_pools_own_traffic_at_current_recommended_and_typed_sizes_with_costs(
        client, auth, data, db):
    stored = store_history(db, data.site, data.yandex)
    db.add(TrackingPrice(pool_id=data.pool, monthly_rent=Decimal("500.00")))
    db.commit()
    auth.login("admin")
    health = client.get("/reports/pools").get_data(as_text=True)
    assert f'/reports/pools/{data.pool}/what-if"' in health  # reached from the pool-health page
    started = time.monotonic()
    response = client.get(f"/reports/pools/{data.pool}/what-if?sizes=1,9")
    elapsed = time.monotonic() - started
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and elapsed < 30, elapsed
    assert 'id="whatif-chart"' in page and 'id="shape-chart"' in page
    found = json.loads(client.get(f"/reports/pools/{data.pool}/what-if?sizes=1,9&format=json").get_data())
    rows = {row["size"]: row for row in found["rows"]}
    assert {1, 3, 9} <= set(rows) and rows[3]["current"] and rows[9]["typed"] and rows[1]["typed"]
    assert found["recommended"] in rows and rows[found["recommended"]]["recommended"]
    assert abs(found["fit"]["model"]["visits_per_day"] / (stored / 7) - 1) < 0.05  # the site's own traffic
    assert rows[9]["monthly_cost"] == "4500.00" and rows[1]["monthly_cost"] == "500.00"
    assert rows[9]["calls"] > 10 and rows[9]["accuracy"] > rows[1]["accuracy"]
    assert "4,500.00" in page  # the cost column, at the pool's rent
    csv = client.get(f"/reports/pools/{data.pool}/what-if?sizes=1,9&format=csv").get_data(as_text=True).splitlines()
    header = csv[0].lstrip("\ufeff").split(",")
    assert header[:2] == ["size", "accuracy"] and len(csv) == 1 + len(rows)
    by_size = {line.split(",")[0]: dict(zip(header, line.split(","), strict=True)) for line in csv[1:]}
    assert by_size["9"]["accuracy"] == str(rows[9]["accuracy"])  # the export is what the page computed


def test_what_if_refuses_bad_sizes_as_text_and_speaks_russian(client, auth, data, db):
    auth.login("admin")
    page = client.get(f"/reports/pools/{data.pool}/what-if?sizes=<script>alert(1)</script>").get_data(as_text=True)
    assert 'id="whatif-error"' in page and "<script>alert(1)" not in page and "&lt;script&gt;" in page
    assert client.get("/reports/pools/999999/what-if").status_code == 404
    db.scalar(select(User).where(User.login == "admin")).locale = "ru"
    db.commit()
    russian = client.get(f"/reports/pools/{data.pool}/what-if").get_data(as_text=True)
    assert "Что если" in russian and "Точность" in russian
