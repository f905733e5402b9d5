"""The pre-forked workers' figures merged into one exposition, and a worker that stays silent."""

from __future__ import annotations

import json
import socket

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agi.metrics_fanin import merge_expositions, start_fanin
from agi.server import resolve_workers
from astertrack.ops import metrics
from tests.agi.conftest import http_get


def _worker_exposition(calls: int, busy: float) -> str:
    registry = CollectorRegistry()
    Counter("astertrack_agi_requests_total", "AGI requests", ["route", "result"],
            registry=registry).labels(route="inbound", result="ok").inc(calls)
    Gauge("astertrack_test_busy", 'a "quoted" help\\ line', registry=registry).set(busy)
    return generate_latest(registry).decode()


def _families(body: bytes) -> dict:
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def test_merge_labels_every_sample_with_its_worker_and_keeps_one_family_each():
    body = merge_expositions({0: _worker_exposition(3, 0.5), 1: _worker_exposition(4, 1.5)})
    families = _families(body)
    totals = {s.labels["worker"]: s.value for s in families["astertrack_agi_requests"].samples
              if s.name == "astertrack_agi_requests_total"}
    assert totals == {"0": 3.0, "1": 4.0}
    assert families["astertrack_agi_requests"].type == "counter"
    assert families["astertrack_test_busy"].documentation == 'a "quoted" help\\ line'
    assert body.decode().count("# TYPE astertrack_agi_requests_total counter") == 1
    assert {s.labels["worker"]: s.value for s in families["astertrack_agi_worker_up"].samples} == {"0": 1.0, "1": 1.0}


def test_a_silent_or_garbled_worker_shows_as_down_and_the_others_still_count():
    families = _families(merge_expositions({0: _worker_exposition(2, 0), 1: None}))
    up = {s.labels["worker"]: s.value for s in families["astertrack_agi_worker_up"].samples}
    assert up == {"0": 1.0, "1": 0.0}

    garbled = _families(merge_expositions({0: _worker_exposition(2, 0), 1: "astertrack_x{worker=\"1\" 1\n"}))
    assert {s.labels["worker"]: s.value for s in garbled["astertrack_agi_worker_up"].samples} == {"0": 1.0, "1": 0.0}
    totals = [s for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")]
    assert [(s.labels["worker"], s.value) for s in totals] == [("0", 2.0)]



def test_fanin_serves_the_union_and_fails_health_while_a_worker_is_gone():
    registry = CollectorRegistry()
    Counter("astertrack_agi_requests_total", "AGI requests", ["route", "result"],
            registry=registry).labels(route="inbound", result="ok").inc(5)
    alive = metrics.start_http_server("127.0.0.1", 0, {"database": lambda: True}, registry=registry)
    with socket.socket() as probe:  # a port nobody listens on: a worker that died
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    public = socket.create_server(("127.0.0.1", 0))
    public.setblocking(False)
    fanin = start_fanin(public, [alive.server_address[1], dead_port])
    port = public.getsockname()[1]
    try:
        status, body = http_get(port, "/metrics")
        families = _families(body)
        assert status == 200
        assert {s.labels["worker"]: s.value for s in families["astertrack_agi_worker_up"].samples} == {"0": 1.0, "1": 0.0}
        assert [s.value for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")] == [5.0]

        status, body = http_get(port, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["status"] == "fail"
        assert health["workers"]["0"]["status"] == "ok" and health["workers"]["1"]["error"] == "no answer"
        assert http_get(port, "/nothing")[0] == 404
    finally:
        fanin.shutdown()
        fanin.server_close()
        alive.shutdown()
        alive.server_close()
    assert public.fileno() != -1  # the shared socket is the parent's: a worker's stop leaves it open
    public.close()


def test_auto_workers_one_per_core_capped_by_database():
    assert resolve_workers(0, "sqlite:////var/lib/astertrack/astertrack.db.engine", cpus=1) == 1
    assert resolve_workers(0, "sqlite:////var/lib/astertrack/astertrack.db.engine", cpus=2) == 2
    assert resolve_workers(0, "sqlite:////var/lib/astertrack/astertrack.db.engine", cpus=16) == 2
    assert resolve_workers(0, "postgresql+psycopg://astertrack@db/astertrack", cpus=2) == 2
    assert resolve_workers(0, "postgresql+psycopg://astertrack@db/astertrack", cpus=16) == 4
    assert resolve_workers(3, "sqlite:////tmp/x.db", cpus=1) == 3  # a number is taken as configured
    assert resolve_workers(0, "sqlite:////tmp/x.db") >= 1
