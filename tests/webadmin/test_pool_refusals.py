"""Issue #20: the pool-health page shows refused and unconfirmed allocations and the client
addresses behind them, in English and Russian, and keeps them out of the overflows."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.db.models import NumberAssignment, OverflowEvent, TrackingNumber, User, VisitorSession
from astertrack.db.types import utcnow


def _drain(db, data) -> None:
    """A drain from 203.0.113.7: two unconfirmed holds, three refusals; one page load with no Origin."""
    now = utcnow()
    numbers = db.scalars(select(TrackingNumber).where(TrackingNumber.pool_id == data.pool)
                         .order_by(TrackingNumber.id)).all()
    for number in numbers[:2]:
        visit = VisitorSession(site_id=data.site, ip="203.0.113.7", first_seen=now, last_seen=now)
        db.add(visit)
        db.flush()
        db.add(NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=now - dt.timedelta(minutes=3),
                                last_heartbeat_at=now - dt.timedelta(minutes=3), expires_at=now + dt.timedelta(minutes=7),
                                hard_expires_at=now + dt.timedelta(hours=1)))
    for ip, policy in [("203.0.113.7", "limit_ip")] * 3 + [("198.51.100.2", "no_origin")]:
        visit = VisitorSession(site_id=data.site, ip=ip, first_seen=now, last_seen=now)
        db.add(visit)
        db.flush()
        db.add(OverflowEvent(site_id=data.site, pool_id=data.pool, session_id=visit.id,
                             occurred_at=now - dt.timedelta(minutes=2), policy=policy))
    db.commit()


def test_pool_health_page_shows_refusals_and_the_busiest_addresses(client, auth, data, db):
    _drain(db, data)
    auth.login("admin")
    page = client.get("/reports/pools").get_data(as_text=True)
    assert "Refused" in page and "Unconfirmed" in page and "Busiest client addresses" in page
    assert 'title="over the per-address limit: 3; not a browser (no Origin): 1"' in page
    row = page[page.index('id="pool-clients"'):]
    assert "203.0.113.7</td><td class=\"n\">2</td><td class=\"n\">3</td>" in row.replace("\n", "")
    assert "198.51.100.2" not in row  # one refusal: not a busy client
    csv = client.get("/reports/pools?format=csv").get_data(as_text=True).splitlines()
    header, first = csv[0].lstrip("\ufeff").split(","), csv[1].split(",")
    values = dict(zip(header, first, strict=True))
    assert (values["overflow_count"], values["refused_total"], values["unconfirmed"]) == ("1", "4", "2")
    db.scalar(select(User).where(User.login == "admin")).locale = "ru"
    db.commit()
    russian = client.get("/reports/pools").get_data(as_text=True)
    assert "Отказано" in russian and "Без подтверждения" in russian and "Самые активные адреса клиентов" in russian
    assert "сверх лимита на адрес: 3" in russian
