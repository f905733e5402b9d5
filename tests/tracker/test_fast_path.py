"""The PostgreSQL hot path: one-statement create and heartbeat, autocommit connections from
the engine's pool, plain-WSGI endpoints.  Each is checked for doing the same thing as the
general path, and for handing over to it whenever the one statement cannot decide."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest
from sqlalchemy import func, select, text

from astertrack.db.engine import session_scope
from astertrack.db.models import NumberAssignment, OverflowEvent, TrackingNumber, VisitorSession
from astertrack.dni import allocation
from astertrack.dni.sources import load_site_routing
from astertrack.samples.factories import FALLBACK_NUMBER, pooled_site
from tests.tracker.conftest import post, serve, tracker_config
from tracker import create_app

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the one-statement paths are PostgreSQL's")


@pytest.fixture
def slow_path_calls(monkeypatch):
    """Counts entries into the general allocation path (_allocate)."""
    calls = []
    original = allocation._allocate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("record_overflow"))
        return original(*args, **kwargs)

    monkeypatch.setattr(allocation, "_allocate", counting)
    return calls


def _visit(visitor: str) -> dict:
    return allocation.clean_visit({"visitor_id": visitor, "user_agent": UA})


def test_create_takes_over_an_expired_unswept_hold_in_one_statement(db_url, session_factory, slow_path_calls):
    _pg_only(db_url)
    with session_scope(session_factory) as db:
        site = load_site_routing(db, pooled_site(db, 1, hold=30, cap=100).public_key)
    with session_scope(session_factory) as db:
        first = allocation.start(db, site, _visit("a"), T0, new_visitor=True)
    later = T0 + dt.timedelta(seconds=31)  # the hold ran out; nobody swept it
    with session_scope(session_factory) as db:
        second = allocation.start(db, site, _visit("b"), later, new_visitor=True)
    assert slow_path_calls == []
    assert first.kind == second.kind == "pool" and second.number == first.number
    assert second.expires_at == later + dt.timedelta(seconds=30)
    with session_scope(session_factory) as db:
        rows = db.execute(select(NumberAssignment).order_by(NumberAssignment.id)).scalars().all()
        assert [r.release_reason for r in rows] == ["expired", None]
        assert rows[0].released_at == T0 + dt.timedelta(seconds=30)  # when the hold really ended
        number = db.scalar(select(TrackingNumber).where(TrackingNumber.number == first.number))
        assert number.last_released_at == T0 + dt.timedelta(seconds=30)
        sessions = db.scalars(select(VisitorSession.visitor_id).order_by(VisitorSession.id)).all()
        assert sessions == ["a", "b"]


def test_full_pool_records_one_overflow_in_the_same_statement(db_url, session_factory, slow_path_calls):
    _pg_only(db_url)
    with session_scope(session_factory) as db:
        site = load_site_routing(db, pooled_site(db, 1).public_key)
    with session_scope(session_factory) as db:
        allocation.start(db, site, _visit("a"), T0, new_visitor=True)
    with session_scope(session_factory) as db:
        offer = allocation.start(db, site, {**_visit("b"), "utm_source": "ya"}, T0, new_visitor=True)
    assert slow_path_calls == []
    assert offer.kind == "fallback" and offer.number == FALLBACK_NUMBER
    with session_scope(session_factory) as db:
        event = db.scalars(select(OverflowEvent)).one()
        session_row = db.scalar(select(VisitorSession).where(VisitorSession.visitor_id == "b"))
        assert (event.session_id, event.policy, event.pool_id) == (session_row.id, "fallback", site.default_pool_id)
        assert event.visitor["utm_source"] == "ya" and "ip" not in event.visitor


def test_reuse_oldest_policy_still_takes_the_general_path(db_url, session_factory, slow_path_calls):
    _pg_only(db_url)
    with session_scope(session_factory) as db:
        site = load_site_routing(db, pooled_site(db, 1, policy="reuse_oldest").public_key)
    with session_scope(session_factory) as db:
        first = allocation.start(db, site, _visit("a"), T0, new_visitor=True)
    with session_scope(session_factory) as db:
        offer = allocation.start(db, site, _visit("b"), T0 + dt.timedelta(seconds=1), new_visitor=True)
    assert slow_path_calls == [True]
    assert offer.kind == "reused" and offer.number == first.number
    with session_scope(session_factory) as db:
        assert db.scalar(select(func.count()).select_from(OverflowEvent)) == 1


def test_common_heartbeat_slides_the_hold_and_a_navigation_counts_a_page_view(db_url, session_factory):
    _pg_only(db_url)
    with session_scope(session_factory) as db:
        site = load_site_routing(db, pooled_site(db, 2, hold=30, cap=45).public_key)
    with session_scope(session_factory) as db:
        offer = allocation.start(db, site, {**_visit("a"), "landing_page": "https://x.ru/1",
                                            "current_page": "https://x.ru/1"}, T0, new_visitor=True)
    with session_scope(session_factory) as db:
        beat = allocation.heartbeat(db, site, offer.session_id, T0 + dt.timedelta(seconds=20),
                                    current_page="https://x.ru/1")
    assert (beat.number, beat.kind, beat.session_id) == (offer.number, "pool", offer.session_id)
    assert beat.expires_at == T0 + dt.timedelta(seconds=45)  # capped by the hard expiry
    with session_scope(session_factory) as db:
        row = db.scalar(select(VisitorSession))
        assert row.last_seen == T0 + dt.timedelta(seconds=20) and row.page_views == 1
    with session_scope(session_factory) as db:
        moved = allocation.heartbeat(db, site, offer.session_id, T0 + dt.timedelta(seconds=25),
                                     current_page="https://x.ru/2")
    assert moved.number == offer.number
    with session_scope(session_factory) as db:
        row = db.scalar(select(VisitorSession))
        assert row.page_views == 2 and row.current_page == "https://x.ru/2"
    with session_scope(session_factory) as db:  # past the hard cap: the one statement finds nothing
        late = allocation.heartbeat(db, site, offer.session_id, T0 + dt.timedelta(seconds=46))
    assert late.kind == "pool" and late.live


def test_tracker_connections_autocommit_with_the_tuned_settings(db_url):
    _pg_only(db_url)
    app = create_app(tracker_config(db_url, synchronous_commit=False))
    engine = app.extensions["astertrack_tracker"]["api"].engine
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_generic_plan"
            # autocommit: every statement is a transaction of its own (inside one transaction,
            # now() would keep the transaction's start time)
            first = conn.exec_driver_sql("SELECT now()").scalar()
            assert conn.exec_driver_sql("SELECT now()").scalar() > first
    finally:
        engine.dispose()


def test_a_dropped_database_connection_answers_503_then_recovers(db_url, session, session_factory):
    _pg_only(db_url)
    site = pooled_site(session, 3)
    app = create_app(tracker_config(db_url))  # the tracker's own engine: no pre-ping
    body = {"k": site.public_key, "visitor_id": "x", "new": True}
    with serve(app) as url:
        assert post(f"{url}/v/start", body, {"User-Agent": UA})[0] == 200
        session.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                             "AND application_name = ''"))
        session.commit()
        status, payload, _ = post(f"{url}/v/start", body, {"User-Agent": UA})
        assert status == 503 and payload == {"error": "temporarily unavailable"}
        status, payload, _ = post(f"{url}/v/start", body, {"User-Agent": UA})
        assert status == 200 and payload["kind"] == "pool"
    app.extensions["astertrack_tracker"]["api"].engine.dispose()


def test_hot_endpoints_keep_flask_answers_for_other_methods_and_bodies(session, tracker_url):
    site = pooled_site(session, 1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{tracker_url}/v/start")  # GET
    assert refused.value.code == 405
    request = urllib.request.Request(f"{tracker_url}/v/nowhere", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request)
    assert missing.value.code == 404  # no such endpoint (and no preflight for it either)
    status, payload, headers = post(f"{tracker_url}/v/start", None, raw=b"")
    assert status == 400 and payload == {"error": "empty request body: expected a JSON object"}
    status, payload, headers = post(f"{tracker_url}/v/start", {"k": site.public_key, "visitor_id": "v"},
                                    {"User-Agent": UA, "Origin": "http://localhost"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "http://localhost" and headers["Vary"] == "Origin"
    assert int(headers["Content-Length"]) == len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    status, payload, _ = post(f"{tracker_url}/v/leave", {"k": site.public_key, "sid": payload["sid"]})
    assert status == 204 and payload is None


def test_writes_that_belong_together_get_a_transaction_on_an_autocommit_connection(db_url):
    _pg_only(db_url)
    app = create_app(tracker_config(db_url))
    engine = app.extensions["astertrack_tracker"]["api"].engine
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            with allocation._atomic(conn):
                first = conn.exec_driver_sql("SELECT now()").scalar()
                assert conn.exec_driver_sql("SELECT now()").scalar() == first  # one transaction
            assert conn.exec_driver_sql("SELECT now()").scalar() > first  # autocommit again
            with pytest.raises(ZeroDivisionError), allocation._atomic(conn):
                conn.exec_driver_sql("CREATE TEMP TABLE probe (x int)")
                raise ZeroDivisionError
            assert conn.exec_driver_sql("SELECT to_regclass('pg_temp.probe') IS NULL").scalar()  # rolled back
    finally:
        engine.dispose()
