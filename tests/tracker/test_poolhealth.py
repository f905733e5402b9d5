"""Pool health figures from hand-built holds, the sampler, and ``astertrack pool-health``."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner
from sqlalchemy import func, select

from astertrack.cli.main import main
from astertrack.db.engine import session_scope
from astertrack.db.models import (
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    PoolUsageSample,
    TrackingNumber,
    VisitorSession,
)
from astertrack.db.types import utcnow
from astertrack.dni import allocation, poolhealth
from astertrack.dni.sources import load_site_routing
from astertrack.samples.factories import pooled_site

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def _hold(session, site, number, start, end):
    visit = VisitorSession(site_id=site.id, first_seen=start, last_seen=end)
    session.add(visit)
    session.flush()
    session.add(NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=start,
                                 last_heartbeat_at=end, expires_at=end, hard_expires_at=start + 2 * H,
                                 released_at=end, release_reason="expired"))
    return visit


def test_concurrency_overflows_and_recommendation(session):
    site = pooled_site(session, 4)
    pool = session.get(NumberPool, site.default_pool_id)
    n1, n2, n3, _ = session.scalars(select(TrackingNumber).where(TrackingNumber.pool_id == pool.id)
                                    .order_by(TrackingNumber.id)).all()
    _hold(session, site, n1, T0, T0 + 10 * H)
    _hold(session, site, n2, T0 + H, T0 + 2 * H)
    _hold(session, site, n3, T0 + 1.5 * H, T0 + 1.75 * H)
    for minute in (10, 20):
        turned_away = VisitorSession(site_id=site.id, first_seen=T0 + H, last_seen=T0 + H)
        session.add(turned_away)
        session.flush()
        session.add(OverflowEvent(site_id=site.id, pool_id=pool.id, session_id=turned_away.id,
                                  occurred_at=T0 + H + dt.timedelta(minutes=minute), policy="fallback"))
    session.commit()

    report = poolhealth.pool_health(session, pool, T0, T0 + 10 * H, T0 + 10 * H)
    # levels: 1 for 9 h, 2 for 45 min, 3 for 15 min
    assert (report.size, report.peak, report.p95) == (4, 3, 2)
    assert report.mean_concurrency == 1.125
    assert report.overflow_count == 2 and report.status == "exhausted"
    assert report.assignments == 3 and report.never_heartbeat == 0
    assert report.mean_hold_minutes == 225.0
    assert report.visits_per_day == 12.0 and report.rule_of_thumb == 2
    # Little's law on the 2 visitors turned away in the busiest hour, 3.75 h mean hold
    assert report.recommended == poolhealth.recommend(2, 3, 2 * 3.75) == 12
    hour_one = next(b for b in report.hourly if b["hour"] == T0 + H)
    assert hour_one == {"hour": T0 + H, "peak": 3, "mean": 2.25, "overflows": 2}
    assert report.as_dict()["hourly"][0]["hour"] == T0.isoformat()


def test_rule_of_thumb_and_recommendation_margin():
    assert poolhealth.rule_of_thumb(0) == 1
    assert poolhealth.rule_of_thumb(250) == 4  # 250/100 + 1 = 3.5, rounded up
    assert poolhealth.recommend(p95=8, peak=9, overflow_demand=0) == 10
    assert poolhealth.recommend(p95=8, peak=12, overflow_demand=0) == 12  # never below the peak
    assert poolhealth.recommend(p95=0, peak=0, overflow_demand=0) == 1


def test_idle_and_tight_status(session):
    site = pooled_site(session, 2)
    pool = session.get(NumberPool, site.default_pool_id)
    assert poolhealth.pool_health(session, pool, T0, T0 + H, T0 + H).status == "idle"
    numbers = session.scalars(select(TrackingNumber).where(TrackingNumber.pool_id == pool.id)).all()
    for number in numbers:
        _hold(session, site, number, T0, T0 + H)
    session.commit()
    report = poolhealth.pool_health(session, pool, T0, T0 + H, T0 + H)
    assert report.status == "tight" and report.p95_utilisation == 1.0


def test_sampler_writes_one_sample_per_interval(session_factory):
    with session_scope(session_factory) as db:
        site = pooled_site(db, 3)
        routing = load_site_routing(db, site.public_key)
    with session_scope(session_factory) as db:
        allocation.start(db, routing, allocation.clean_visit({"visitor_id": "a", "user_agent": UA}), T0)
    with session_scope(session_factory) as db:
        assert poolhealth.sample_pools(db, T0 + dt.timedelta(seconds=1), 60) == 1
    with session_scope(session_factory) as db:
        assert poolhealth.sample_pools(db, T0 + dt.timedelta(seconds=30), 60) == 0
    with session_scope(session_factory) as db:
        assert poolhealth.sample_pools(db, T0 + dt.timedelta(seconds=61), 60) == 1
        samples = db.execute(select(PoolUsageSample.live, PoolUsageSample.size)).all()
    assert samples == [(1, 3), (1, 3)]


def test_pool_health_cli(session_factory, db_url, tmp_path):
    with session_scope(session_factory) as db:
        site = pooled_site(db, 1)
        routing = load_site_routing(db, site.public_key)
    now = utcnow()
    with session_scope(session_factory) as db:
        for visitor in ("a", "b"):
            allocation.start(db, routing, allocation.clean_visit({"visitor_id": visitor, "user_agent": UA}), now)
    config = tmp_path / "astertrack.conf"
    config.write_text(f"[database]\nurl = {db_url}\n")
    config.chmod(0o600)
    runner = CliRunner()
    result = runner.invoke(main, ["-c", str(config), "pool-health", "--json", "--sample"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data) == 1
    assert data[0]["size"] == 1 and data[0]["live_now"] == 1 and data[0]["overflow_count"] == 1
    assert data[0]["status"] == "exhausted" and data[0]["samples"][0]["live"] == 1
    table = runner.invoke(main, ["-c", str(config), "pool-health"])
    assert table.exit_code == 0 and "recommended" in table.output and "exhausted" in table.output
    with session_scope(session_factory) as db:
        assert db.scalar(select(func.count()).select_from(PoolUsageSample)) == 1
