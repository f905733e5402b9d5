"""Issue #24, adaptive hold: the site form turns it on with its threshold (bad input refused,
nothing lost), and the pool-health page counts the holds it ended early, in English and Russian."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.db.models import NumberAssignment, Site, TrackingNumber, User, VisitorSession
from astertrack.db.types import utcnow
from tests.webadmin.test_settings import SITE_FORM


def test_site_form_sets_the_adaptive_hold_and_refuses_a_bad_threshold(client, auth, data, db):
    auth.login("admin")
    page = client.get("/settings/sites/new").get_data(as_text=True)
    assert "Adaptive hold" in page and 'name="adaptive_free_percent"' in page and 'value="20"' in page
    bad = {**SITE_FORM, "adaptive_hold": "y", "adaptive_free_percent": "95"}
    response = auth.post("/settings/sites/new", bad, page="/settings/sites/new")
    assert response.status_code == 400 and 'value="95"' in response.get_data(as_text=True)
    assert db.query(Site).filter_by(name="Blog").count() == 0
    db.rollback()  # end the read: the app commits over its own connection
    good = {**SITE_FORM, "adaptive_hold": "y", "adaptive_free_percent": "30"}
    assert auth.post("/settings/sites/new", good, page="/settings/sites/new").status_code == 302
    site = db.query(Site).filter_by(name="Blog").one()
    assert (site.adaptive_hold, site.adaptive_free_percent) == (True, 30)
    default = db.query(Site).filter(Site.name != "Blog").first()
    assert default.adaptive_hold is False  # off unless a site turns it on
    db.scalar(select(User).where(User.login == "admin")).locale = "ru"
    db.commit()
    russian = client.get("/settings/sites/new").get_data(as_text=True)
    assert "Адаптивное удержание" in russian and "Порог адаптивного удержания" in russian


def test_pool_health_page_counts_holds_ended_early(client, auth, data, db):
    now = utcnow()
    number = db.scalars(select(TrackingNumber).where(TrackingNumber.pool_id == data.pool)).first()
    for reason in ["adaptive", "adaptive", "expired", "unload"]:  # released holds, one after another
        visit = VisitorSession(site_id=data.site, first_seen=now, last_seen=now)
        db.add(visit)
        db.flush()
        start = now - dt.timedelta(minutes=10)
        db.add(NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=start, last_heartbeat_at=start,
                                expires_at=now, hard_expires_at=now + dt.timedelta(hours=1),
                                released_at=now - dt.timedelta(minutes=1), release_reason=reason))
    db.commit()
    auth.login("admin")
    page = client.get("/reports/pools").get_data(as_text=True)
    assert "Ended early" in page
    cell = page[page.index('class="n adaptive-ended"'):].split("</td>")[0]
    assert cell.endswith(">2 (50.0%)")
    csv = client.get("/reports/pools?format=csv").get_data(as_text=True).splitlines()
    values = dict(zip(csv[0].lstrip("\ufeff").split(","), csv[1].split(","), strict=True))
    assert (values["adaptive_ended"], values["adaptive_share"]) == ("2", "0.5")
    db.scalar(select(User).where(User.login == "admin")).locale = "ru"
    db.commit()
    assert "Завершено досрочно" in client.get("/reports/pools").get_data(as_text=True)
