"""Metrics and health: exposition format, database-derived gauges on both backends, HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from astertrack.db.models import (
    Call,
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    Site,
    TrackingNumber,
    VisitorSession,
    WebhookOutbox,
    WebhookSubscription,
)
from astertrack.ops import metrics

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def seed(session) -> int:
    site = Site(name="shop")
    session.add(site)
    session.flush()
    pool = NumberPool(site_id=site.id, name="ads")
    session.add(pool)
    session.flush()
    numbers = [TrackingNumber(number=f"+7495000010{i}", site_id=site.id, pool_id=pool.id) for i in range(4)]
    numbers.append(TrackingNumber(number="+74950000199", site_id=site.id, pool_id=pool.id, enabled=False))
    session.add_all(numbers)
    session.flush()
    for i, number in enumerate(numbers[:3]):
        visit = VisitorSession(site_id=site.id)
        session.add(visit)
        session.flush()
        released = NOW - dt.timedelta(minutes=1) if i == 2 else None  # third one already released
        session.add(NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=NOW,
                                     expires_at=NOW + dt.timedelta(minutes=10),
                                     hard_expires_at=NOW + dt.timedelta(hours=1), released_at=released))
    session.add_all([
        OverflowEvent(site_id=site.id, pool_id=pool.id, occurred_at=NOW - dt.timedelta(hours=1), policy="fallback"),
        OverflowEvent(site_id=site.id, pool_id=pool.id, occurred_at=NOW - dt.timedelta(days=3), policy="fallback"),
    ])
    for outcome, node, age in [("answered", "pbx1", 1), ("answered", "pbx1", 2), ("missed", "pbx2", 3),
                               ("answered", "pbx1", 48)]:
        session.add(Call(node=node, outcome=outcome, state="finished", started_at=NOW - dt.timedelta(hours=age)))
    session.add(Call(node="pbx2", state="up", started_at=NOW - dt.timedelta(minutes=2)))
    sub = WebhookSubscription(url="https://crm.example/hook")
    session.add(sub)
    session.flush()
    session.add_all([
        WebhookOutbox(subscription_id=sub.id, event="call.finished", created_at=NOW - dt.timedelta(seconds=90)),
        WebhookOutbox(subscription_id=sub.id, event="call.finished", created_at=NOW - dt.timedelta(seconds=10)),
        WebhookOutbox(subscription_id=sub.id, event="call.finished", created_at=NOW - dt.timedelta(hours=5),
                      delivered_at=NOW - dt.timedelta(hours=4)),
    ])
    session.commit()
    return pool.id


def test_database_collector_reports_fleet_figures(session, session_factory):
    pool = (("pool", "ads"), ("pool_id", str(seed(session))), ("site", "shop"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DatabaseCollector(session_factory, clock=lambda: NOW))
    body, content_type = metrics.render(registry)
    assert content_type.startswith("text/plain")
    got = samples(body.decode())
    assert got[("astertrack_database_up", ())] == 1
    assert got[("astertrack_calls_24h", (("node", "pbx1"), ("outcome", "answered")))] == 2  # 48 h old one excluded
    assert got[("astertrack_calls_24h", (("node", "pbx2"), ("outcome", "missed")))] == 1
    assert got[("astertrack_calls_24h", (("node", "pbx2"), ("outcome", "in_progress")))] == 1
    assert got[("astertrack_calls_active", (("node", "pbx2"),))] == 1
    assert got[("astertrack_pool_numbers", pool)] == 4  # disabled number not counted
    assert got[("astertrack_pool_numbers_in_use", pool)] == 2
    assert got[("astertrack_pool_utilisation_ratio", pool)] == 0.5
    assert got[("astertrack_pool_overflows_24h", pool)] == 1
    assert got[("astertrack_webhook_queue_depth", ())] == 2
    assert got[("astertrack_webhook_oldest_pending_age_seconds", ())] == pytest.approx(90)


def test_refused_allocations_are_their_own_gauge_not_overflows(session, session_factory):
    pool_id = seed(session)
    site_id = session.get(NumberPool, pool_id).site_id
    for policy in ("limit_ip", "limit_ip", "no_origin"):
        session.add(OverflowEvent(site_id=site_id, pool_id=pool_id, occurred_at=NOW - dt.timedelta(minutes=5),
                                  policy=policy))
    session.commit()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DatabaseCollector(session_factory, clock=lambda: NOW))
    got = samples(metrics.render(registry)[0].decode())
    pool = (("pool", "ads"), ("pool_id", str(pool_id)))
    assert got[("astertrack_pool_overflows_24h", (*pool, ("site", "shop")))] == 1  # the seeded one only
    refusals = {reason: got[("astertrack_pool_refusals_24h", (*pool, ("reason", reason), ("site", "shop")))]
                for reason in ("limit_ip", "limit_visitor", "no_origin")}
    assert refusals == {"limit_ip": 2, "limit_visitor": 0, "no_origin": 1}


def test_database_down_is_a_gauge_not_a_failed_scrape(tmp_path):
    from astertrack.db.engine import make_engine, make_session_factory

    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'missing-tables.db'}"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DatabaseCollector(factory))
    got = samples(metrics.render(registry)[0].decode())
    assert got[("astertrack_database_up", ())] == 0


def test_agi_decision_times_and_counts_results():
    before = metrics.REGISTRY.get_sample_value("astertrack_agi_decision_seconds_count", {"route": "t-inbound"}) or 0
    with metrics.agi_decision("t-inbound"):
        pass
    with metrics.agi_decision("t-inbound") as result:
        result["result"] = "fallback"
    with pytest.raises(KeyError), metrics.agi_decision("t-inbound"):
        raise KeyError("boom")
    get = metrics.REGISTRY.get_sample_value
    assert get("astertrack_agi_decision_seconds_count", {"route": "t-inbound"}) == before + 3
    assert get("astertrack_agi_requests_total", {"route": "t-inbound", "result": "ok"}) == 1
    assert get("astertrack_agi_requests_total", {"route": "t-inbound", "result": "fallback"}) == 1
    assert get("astertrack_agi_requests_total", {"route": "t-inbound", "result": "error"}) == 1


def test_ami_state_and_event_age():
    metrics.ami_connected(False)
    assert metrics.health({"ami": metrics.ami_check()})[0] == 503
    metrics.ami_connected(True)
    metrics.ami_events_seen(now=1000.0)
    age = metrics.REGISTRY.get_sample_value("astertrack_ami_last_event_age_seconds")
    assert age > 1_000_000  # measured from a 1970 timestamp: stale
    status, body = metrics.health({"ami": metrics.ami_check(max_event_age=600)})
    assert status == 503 and "no AMI event" in body["checks"]["ami"]["error"]
    metrics.ami_events_seen()
    assert metrics.REGISTRY.get_sample_value("astertrack_ami_last_event_age_seconds") < 5
    assert metrics.health({"ami": metrics.ami_check(max_event_age=600)})[0] == 200
    metrics.call_finished("answered")
    metrics.call_finished(None)
    assert metrics.REGISTRY.get_sample_value("astertrack_calls_finished_total", {"outcome": "unknown"}) >= 1


def test_daemon_http_server_serves_metrics_and_health():
    state = {"ok": True}
    server = metrics.start_http_server("127.0.0.1", 0, checks={"flag": lambda: state["ok"]})
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
        assert "astertrack_ami_connected" in text and "process_cpu_seconds_total" in text
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok", "checks": {"flag": {"ok": True}}}
        state["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert failed.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nope", timeout=5)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


TOKEN = "s3cret-metrics-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_flask_wiring(session, session_factory):
    seed(session)
    app = Flask("t")
    metrics.init_flask(app, session_factory, checks={"extra": lambda: "fine"}, token=TOKEN)
    client = app.test_client()
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert "astertrack_webhook_queue_depth 2.0" in response.get_data(as_text=True)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["checks"] == {"database": {"ok": True}, "extra": {"ok": True, "detail": "fine"}}


def test_flask_wiring_can_leave_an_apps_own_health_endpoint(session_factory):
    app = Flask("t2")

    @app.get("/healthz")
    def own():
        return {"mine": True}

    metrics.init_flask(app, session_factory, health_path=None, token=TOKEN)
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"mine": True}
    assert client.get("/metrics", headers=BEARER).status_code == 200


def test_web_metrics_answer_the_token_only_whatever_the_address_or_headers(session_factory):
    """Issue #20: the "loopback only" check trusted X-Forwarded-For; behind a proxy that adds
    none (nginx's plain proxy_pass) every visitor arrives from 127.0.0.1."""
    app = Flask("t3")
    metrics.init_flask(app, session_factory, health_path=None, token=TOKEN)
    client = app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    assert client.get("/metrics", environ_base=local).status_code == 401  # a relayed visitor looks like this
    assert client.get("/metrics", environ_base=local, headers={"X-Real-IP": "127.0.0.1"}).status_code == 401
    wrong = client.get("/metrics", environ_base=local, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"astertrack_" not in wrong.data
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers=BEARER).status_code == 200


def test_without_a_token_web_metrics_are_not_served(session_factory):
    app = Flask("t4")
    metrics.init_flask(app, session_factory, health_path=None)
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_web_admin_serves_fleet_metrics_to_a_scraper_with_the_token(db_url, session):
    from astertrack.config import load_config
    from webadmin import create_app

    seed(session)
    web = {"secret_key": "k" * 32, "secure_cookies": "no"}
    config = load_config(environ={}, overrides={"database": {"url": db_url}, "web": web,
                                                "general": {"metrics_token": TOKEN}})
    client = create_app(config).test_client()
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200 and "astertrack_webhook_queue_depth 2.0" in response.get_data(as_text=True)
    assert client.get("/metrics").status_code == 401  # from loopback, no X-Forwarded-For: a relayed visitor too
    assert client.get("/metrics", headers={"X-Real-IP": "127.0.0.1"}).status_code == 401
    untokened = create_app(load_config(environ={}, overrides={"database": {"url": db_url}, "web": web})).test_client()
    assert untokened.get("/metrics").status_code == 404


def test_tracker_metrics_over_http_need_the_token_on_every_spelling_of_the_path(db_url, session, session_factory):
    """The tracker is public: a proxy's ``location = /ct/metrics { deny all; }`` does not match
    ``//metrics`` or ``/%6Detrics``, which Werkzeug still routes to the metrics view."""
    from tests.tracker.conftest import serve, tracker_config
    from tracker import create_app

    seed(session)
    spellings = ("/metrics", "//metrics", "/%6Detrics", "/metrics?x=1")
    open_app = create_app(tracker_config(db_url), session_factory=session_factory)
    with serve(open_app) as url:
        for path in spellings:
            for headers in ({}, {"X-Real-IP": "127.0.0.1"}, {"X-Forwarded-For": "127.0.0.1"}):
                status, body = _get(url + path, headers)
                assert status == 404 and b"astertrack_" not in body, (path, headers)
    config = tracker_config(db_url)
    config.values["general"]["metrics_token"] = TOKEN
    with serve(create_app(config, session_factory=session_factory)) as url:
        for path in spellings:
            status, body = _get(url + path, {})
            assert status == 401 and b"astertrack_" not in body, path
        status, body = _get(url + "/metrics", BEARER)
        assert status == 200 and b"astertrack_pool_numbers" in body


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:  # http.client sends the path exactly as written (urllib would tidy it)
        conn.request("GET", url[len(f"http://{parts.netloc}"):], headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_multiprocess_registry_sums_processes_and_keeps_a_daemons_own_families(tmp_path):
    script = ("from astertrack.ops import metrics\n"
              "metrics.AGI_REQUESTS.labels(route='inbound', result='ok').inc(2)\n"
              "metrics.ami_connected(True)\n")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two processes in multiprocess mode (this one is not: the library chose at import)
        subprocess.run([sys.executable, "-c", script], env=env, check=True)

    everything = samples(metrics.render(metrics.multiprocess_registry(path=str(tmp_path)))[0].decode())
    assert everything[("astertrack_agi_requests_total", (("result", "ok"), ("route", "inbound")))] == 4
    assert everything[("astertrack_ami_connected", ())] == 1  # livemax over the processes not marked dead

    agi_only = samples(metrics.render(metrics.multiprocess_registry(
        "astertrack_agi_", path=str(tmp_path), exclude=["astertrack_agi_inline_busy"]))[0].decode())
    assert {name for name, _ in agi_only} == {"astertrack_agi_requests_total"}

    for name in os.listdir(tmp_path):  # both writers exited: marking them dead drops their live gauges
        mark_process_dead(int(name.rsplit("_", 1)[1][:-3]), str(tmp_path))
    after = samples(metrics.render(metrics.multiprocess_registry(path=str(tmp_path)))[0].decode())
    assert ("astertrack_ami_connected", ()) not in after
    assert after[("astertrack_agi_requests_total", (("result", "ok"), ("route", "inbound")))] == 4


def test_a_daemon_registry_exports_only_its_own_families():
    """Every daemon's metrics are declared in one module: the AGI must not export the AMI
    listener's ``astertrack_ami_connected 0`` (it would fire the AMI alert on the AGI's target)."""
    metrics.ami_connected(True)
    agi = {family.name for family in metrics.daemon_registry("astertrack_agi_").collect()}
    assert "astertrack_agi_requests" in agi and "process_resident_memory_bytes" in agi
    assert not any(name.startswith(("astertrack_ami_", "astertrack_calls_")) for name in agi)
    ami = {family.name for family in metrics.daemon_registry("astertrack_ami_", "astertrack_calls_").collect()}
    assert {"astertrack_ami_connected", "astertrack_calls_finished"} <= ami
    assert not any(name.startswith("astertrack_agi_") for name in ami)
