"""The tracker's housekeeping: expired holds are released at their real end, pools sampled."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.db.engine import session_scope
from astertrack.db.models import NumberAssignment, PoolUsageSample, TrackingNumber
from astertrack.db.types import utcnow
from astertrack.dni import allocation
from astertrack.dni.sources import load_site_routing
from astertrack.samples.factories import pooled_site
from tracker.maintenance import Maintenance

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def test_run_once_releases_expired_holds_and_samples(session_factory):
    with session_scope(session_factory) as db:
        site = pooled_site(db, 2, hold=30)
        routing = load_site_routing(db, site.public_key)
    long_ago = utcnow() - dt.timedelta(minutes=5)
    with session_scope(session_factory) as db:
        expired = allocation.start(db, routing, allocation.clean_visit({"visitor_id": "old", "user_agent": UA}),
                                   long_ago)
        live = allocation.start(db, routing, allocation.clean_visit({"visitor_id": "new", "user_agent": UA}),
                                utcnow())
    released, sampled = Maintenance(session_factory, 30, 60).run_once()
    assert (released, sampled) == (1, 1)
    with session_scope(session_factory) as db:
        rows = {a.number.number: a for a in db.scalars(select(NumberAssignment))}
        gone = rows[expired.number]
        assert gone.release_reason == "expired" and gone.released_at == gone.expires_at
        number = db.scalar(select(TrackingNumber).where(TrackingNumber.number == expired.number))
        assert number.last_released_at == gone.expires_at
        assert rows[live.number].released_at is None
        assert db.scalar(select(PoolUsageSample.live)) == 1


def test_started_thread_runs_in_this_process_only_once(session_factory):
    maintenance = Maintenance(session_factory, 3600, 60)
    maintenance.ensure_started()
    first = maintenance._pid
    maintenance.ensure_started()
    assert maintenance._pid == first
    maintenance.stop()
    disabled = Maintenance(session_factory, 0, 60)
    disabled.ensure_started()
    assert disabled._pid is None
