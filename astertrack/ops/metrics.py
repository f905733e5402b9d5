"""Prometheus metrics and health checks for every astertrack process.

Two kinds of figures, because the apps run differently:

* **In-process** metrics live in the daemons: the FastAGI server (decision latency,
  decisions by result) and the AMI listener (connection state, last event age, events, calls
  finished by outcome).  They are module-level objects in ``REGISTRY``; the daemon updates
  them and serves them with :func:`start_http_server` (the pre-forked FastAGI workers: see
  *multiprocess mode* below).
* **Database-derived** metrics (calls by outcome, pool utilisation, overflows, webhook
  queue depth) are computed at scrape time by :class:`DatabaseCollector`.  The web admin
  and the tracker run under gunicorn with several workers, and several PBXs share one
  database, so a per-process counter would show whatever worker the scrape hit; the
  database is the one place where the whole fleet's figures agree.

Health endpoints answer ``200 {"status": "ok", ...}`` or ``503 {"status": "fail", ...}``
from a dict of named check functions (see :func:`health`).

**Multiprocess mode.**  The pre-forked FastAGI daemon runs several worker processes behind one
metrics port, so it puts prometheus-client in its multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
set before the library is imported: every metric then keeps its value in a memory-mapped file
per process) and answers scrapes from :func:`multiprocess_registry`.  Every gauge here therefore
says how its per-process values combine (``multiprocess_mode``); ``live*`` modes drop a process's
value once it is marked dead.  The other daemons are single processes and never set the variable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# ---------------------------------------------------------------- FastAGI server (agi/)

AGI_DECISION_SECONDS = Histogram(
    "astertrack_agi_decision_seconds",
    "Time from an AGI request's arrival to the routing decision being sent to Asterisk",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
    registry=REGISTRY,
)
AGI_REQUESTS = Counter(
    "astertrack_agi_requests_total",
    "AGI requests handled, by route and result (as the FastAGI server labels them: ok, fallback, failed, ...)",
    ["route", "result"],
    registry=REGISTRY,
)
AGI_INLINE_BUSY = Counter(
    "astertrack_agi_inline_busy_total",
    "Database steps the AGI found busy on its event loop (a lock, a slow statement, a lost connection) "
    "and handed to its thread pool instead",
    registry=REGISTRY,
)

# ---------------------------------------------------------------- AMI listener (ami_listener/)

AMI_CONNECTED = Gauge(
    "astertrack_ami_connected",
    "1 while the AMI session is logged in, 0 otherwise",
    registry=REGISTRY,
    multiprocess_mode="livemax",  # logged in if any live process is
)
AMI_LAST_EVENT_TIMESTAMP = Gauge(
    "astertrack_ami_last_event_timestamp_seconds",
    "Unix time the last AMI event was received (0 = none yet)",
    registry=REGISTRY,
    multiprocess_mode="max",  # the latest event any process saw
)
# Computed at scrape time with set_function, which multiprocess mode cannot do (it reads only
# the files); the AMI listener is a single process, so it never runs in that mode.
AMI_LAST_EVENT_AGE = Gauge(
    "astertrack_ami_last_event_age_seconds",
    "Seconds since the last AMI event (-1 = none yet); alert when high on a box that has calls",
    registry=REGISTRY,
    multiprocess_mode="livemin",
)



class _AmiStatus:
    """What the listener's health check and the age gauge read: kept here, because a gauge's
    value can only be read back through prometheus-client's private attributes."""

    connected = False
    last_event_at = 0.0  # Unix time; 0 = no event yet


AMI_STATUS = _AmiStatus()
AMI_LAST_EVENT_AGE.set_function(
    lambda: time.time() - AMI_STATUS.last_event_at if AMI_STATUS.last_event_at else -1.0
)
AMI_EVENTS = Counter("astertrack_ami_events_total", "AMI events received", registry=REGISTRY)
AMI_RECONNECTS = Counter("astertrack_ami_reconnects_total", "AMI (re)connections after the first", registry=REGISTRY)
AMI_LOGIN_FAILURES = Counter("astertrack_ami_login_failures_total", "AMI logins refused", registry=REGISTRY)
CALLS_FINISHED = Counter(
    "astertrack_calls_finished_total",
    "Calls this listener closed, by outcome (answered, missed, busy, ...)",
    ["outcome"],
    registry=REGISTRY,
)

CALLS_RECONCILED = Counter(
    "astertrack_calls_reconciled_total",
    "Calls a gap in the AMI stream touched, by how they were finished: cdr (from Asterisk's CDR) "
    "or no_cdr (no CDR line came within [ami] cdr_wait: the listener's account was kept)",
    ["result"],
    registry=REGISTRY,
)


def ami_connected(connected: bool) -> None:
    """Call on login success (True) and on connection loss (False)."""
    AMI_STATUS.connected = connected
    AMI_CONNECTED.set(1 if connected else 0)


def ami_events_seen(count: int = 1, now: float | None = None) -> None:
    """Call once per read of AMI events (cheap: a few in-memory updates)."""
    AMI_EVENTS.inc(count)
    AMI_STATUS.last_event_at = time.time() if now is None else now
    AMI_LAST_EVENT_TIMESTAMP.set(AMI_STATUS.last_event_at)


def call_finished(outcome: str | None) -> None:
    CALLS_FINISHED.labels(outcome=outcome or "unknown").inc()


@contextlib.contextmanager
def agi_decision(route: str) -> Iterator[dict[str, str]]:
    """Time one AGI request: ``with agi_decision("inbound") as r: ...; r["result"] = "fallback"``.

    The result defaults to ``ok``; an exception counts as ``error`` and is re-raised.
    """
    outcome = {"result": "ok"}
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        outcome["result"] = "error"
        raise
    finally:
        AGI_DECISION_SECONDS.labels(route=route).observe(time.perf_counter() - started)
        AGI_REQUESTS.labels(route=route, result=outcome["result"]).inc()


# ---------------------------------------------------------------- figures from the database


class DatabaseCollector(Collector):
    """Scrape-time gauges read from the shared database (fleet-wide, worker-independent).

    Each scrape runs a handful of aggregate queries; a database error gives
    ``astertrack_database_up 0`` instead of a failed scrape.
    """

    def __init__(self, session_factory: sessionmaker[Session], window_hours: int = 24,
                 clock: Callable[[], dt.datetime] | None = None):
        self.session_factory = session_factory
        self.window = dt.timedelta(hours=window_hours)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def describe(self):  # no auto-describe: collect() would hit the database at registration
        return []

    def collect(self):
        up = GaugeMetricFamily("astertrack_database_up", "1 if the database answered the metrics queries")
        try:
            families = self._families()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is down
            log.exception("metrics: database query failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[GaugeMetricFamily]:
        from astertrack.db.models import (
            Call,
            NumberAssignment,
            NumberPool,
            OverflowEvent,
            Site,
            TrackingNumber,
            WebhookOutbox,
        )
        from astertrack.dni.allocation import OVERFLOW_POLICIES, REFUSALS

        now = self.clock()
        since = now - self.window
        hours = int(self.window.total_seconds() // 3600)
        calls = GaugeMetricFamily(
            f"astertrack_calls_{hours}h", f"Calls started in the last {hours} h, by node and outcome",
            labels=["node", "outcome"])
        active = GaugeMetricFamily("astertrack_calls_active", "Calls not finished yet, by node", labels=["node"])
        pool_labels = ["pool_id", "pool", "site"]
        size = GaugeMetricFamily("astertrack_pool_numbers", "Enabled numbers in each pool", labels=pool_labels)
        used = GaugeMetricFamily("astertrack_pool_numbers_in_use", "Numbers held by a live visitor session",
                                 labels=pool_labels)
        ratio = GaugeMetricFamily("astertrack_pool_utilisation_ratio", "In use / enabled numbers per pool",
                                  labels=pool_labels)
        overflows = GaugeMetricFamily(
            f"astertrack_pool_overflows_{hours}h", f"Visitors who found the pool empty in the last {hours} h",
            labels=pool_labels)
        refused = GaugeMetricFamily(
            f"astertrack_pool_refusals_{hours}h",
            f"Pool numbers refused in the last {hours} h to a client over its share (limit_ip, limit_visitor) "
            "or without a browser Origin (no_origin): a drain attempt, not demand", labels=[*pool_labels, "reason"])
        pending = GaugeMetricFamily("astertrack_webhook_queue_depth", "Webhook deliveries not yet delivered")
        oldest = GaugeMetricFamily("astertrack_webhook_oldest_pending_age_seconds",
                                   "Age of the oldest undelivered webhook (0 when the queue is empty)")
        with self.session_factory() as session:
            for node, outcome, count in session.execute(
                select(Call.node, Call.outcome, func.count()).where(Call.started_at >= since)
                .group_by(Call.node, Call.outcome)
            ):
                calls.add_metric([node or "", outcome or "in_progress"], count)
            for node, count in session.execute(
                select(Call.node, func.count()).where(Call.state != "finished").group_by(Call.node)
            ):
                active.add_metric([node or ""], count)
            sizes = dict(session.execute(
                select(TrackingNumber.pool_id, func.count())
                .where(TrackingNumber.pool_id.is_not(None), TrackingNumber.enabled.is_(True))
                .group_by(TrackingNumber.pool_id)
            ).all())
            in_use = dict(session.execute(
                select(TrackingNumber.pool_id, func.count(func.distinct(NumberAssignment.number_id)))
                .join(TrackingNumber, TrackingNumber.id == NumberAssignment.number_id)
                .where(TrackingNumber.pool_id.is_not(None), NumberAssignment.released_at.is_(None),
                       NumberAssignment.expires_at > now)
                .group_by(TrackingNumber.pool_id)
            ).all())
            over: dict[int, int] = {}
            refusals: dict[int, dict[str, int]] = {}
            for pool_id, policy, count in session.execute(
                select(OverflowEvent.pool_id, OverflowEvent.policy, func.count())
                .where(OverflowEvent.occurred_at >= since, OverflowEvent.pool_id.is_not(None))
                .group_by(OverflowEvent.pool_id, OverflowEvent.policy)
            ):
                if policy in OVERFLOW_POLICIES:
                    over[pool_id] = over.get(pool_id, 0) + count
                elif policy in REFUSALS:
                    refusals.setdefault(pool_id, {})[policy] = count
            names = {pool_id: (pool_name, site_name) for pool_id, pool_name, site_name in session.execute(
                select(NumberPool.id, NumberPool.name, Site.name).join(Site, Site.id == NumberPool.site_id))}
            for pool_id in sorted(set(sizes) | set(in_use) | set(over) | set(refusals)):
                label = [str(pool_id), *names.get(pool_id, ("", ""))]
                total, busy = sizes.get(pool_id, 0), in_use.get(pool_id, 0)
                size.add_metric(label, total)
                used.add_metric(label, busy)
                ratio.add_metric(label, (busy / total) if total else 0.0)
                overflows.add_metric(label, over.get(pool_id, 0))
                for reason in REFUSALS:
                    refused.add_metric([*label, reason], refusals.get(pool_id, {}).get(reason, 0))
            count, first = session.execute(
                select(func.count(), func.min(WebhookOutbox.created_at)).where(
                    WebhookOutbox.delivered_at.is_(None),
                    # rows the worker gave up on are parked a century ahead: not a backlog
                    WebhookOutbox.next_attempt_at < now + dt.timedelta(days=365))
            ).one()
            pending.add_metric([], count)
            oldest.add_metric([], max(0.0, (now - _aware(first)).total_seconds()) if first else 0.0)
        return [calls, active, size, used, ratio, overflows, refused, pending, oldest]


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------- exposition and health

HealthCheck = Callable[[], Any]


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Prometheus text exposition: ``(body, content_type)``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def health(checks: Mapping[str, HealthCheck]) -> tuple[int, dict[str, Any]]:
    """Run named checks; each returns truthy/None for ok, False or raises for a failure.

    A check may return a string, which is reported as its detail.  Result: ``(200|503, body)``.
    """
    results: dict[str, Any] = {}
    ok = True
    for name, check in checks.items():
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a crash
            ok = False
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            continue
        passed = value is not False
        ok = ok and passed
        results[name] = {"ok": passed} if value in (None, True, False) else {"ok": passed, "detail": value}
    return (200 if ok else 503), {"status": "ok" if ok else "fail", "checks": results}


def database_check(session_factory: sessionmaker[Session]) -> HealthCheck:
    """A health check that runs ``SELECT 1`` on the database."""
    from sqlalchemy import text

    def check() -> bool:
        with session_factory() as session:
            session.execute(text("SELECT 1"))
        return True

    return check


def ami_check(max_event_age: float | None = None) -> HealthCheck:
    """Healthy while logged in (and, if given, an event arrived within ``max_event_age`` s)."""

    def check() -> str:
        if not AMI_STATUS.connected:
            raise RuntimeError("AMI not connected")
        last = AMI_STATUS.last_event_at
        age = time.time() - last if last else None
        if max_event_age is not None and age is not None and age > max_event_age:
            raise RuntimeError(f"no AMI event for {age:.0f} s")
        return "no events yet" if age is None else f"last event {age:.1f} s ago"

    return check


class _Only(Collector):
    """The families of another collector whose names start with one of ``prefixes`` (all if
    none), except those named in ``exclude``."""

    def __init__(self, collector: Collector, prefixes: tuple[str, ...], exclude: frozenset[str]):
        self.collector = collector
        self.prefixes = prefixes
        self.exclude = exclude

    def collect(self):
        return (family for family in self.collector.collect()
                if family.name.startswith(self.prefixes or "") and family.name not in self.exclude)


def daemon_registry(*prefixes: str) -> CollectorRegistry:
    """This process's own figures for one daemon's metrics port: the families starting with
    ``prefixes`` plus the process and Python figures.  This module declares every daemon's
    metrics, so the whole :data:`REGISTRY` would have the AGI export ``astertrack_ami_connected
    0`` and fire the AMI alert against the AGI's target."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Only(REGISTRY, (*prefixes, "process_", "python_"), frozenset()))
    return registry


def multiprocess_registry(*prefixes: str, path: str | None = None, exclude: Iterable[str] = ()) -> CollectorRegistry:
    """A registry that answers for every process writing to ``path`` (default: the
    ``PROMETHEUS_MULTIPROC_DIR`` of this process), prometheus-client's multiprocess mode.

    Counters and histograms are summed over all the processes that ever wrote there, dead ones
    included (so a restarted process does not make a total go backwards); gauges combine as
    their ``multiprocess_mode`` says.  ``prefixes``, if given, keep only the families whose
    names start with one of them: in multiprocess mode every metric a process instantiated is
    exported, and this module declares every daemon's metrics, so without a filter the AGI
    would also export the AMI listener's figures as zeros (``astertrack_ami_connected 0``
    firing the AMI alert against the AGI's target).  ``exclude``: family names kept out (figures
    the processes share only among themselves).

    A new registry, separate from :data:`REGISTRY`: metrics registered in a registry that also
    holds a ``MultiProcessCollector`` would be exported twice.  Process figures (``process_*``)
    are not in it: a ``ProcessCollector`` only sees the process that answers the scrape.
    """
    files = MultiProcessCollector(None, path)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Only(files, tuple(prefixes), frozenset(exclude)))
    return registry


def registry_with_database(session_factory: sessionmaker[Session]) -> CollectorRegistry:
    """A registry for a web process: process figures plus the database-derived gauges."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(DatabaseCollector(session_factory))
    return registry


def init_flask(app, session_factory: sessionmaker[Session], checks: Mapping[str, HealthCheck] | None = None,
               registry: CollectorRegistry | None = None, health_path: str | None = "/healthz",
               token: str = "") -> None:
    """Add ``GET /metrics`` and ``GET /healthz`` to a Flask app (web admin, tracker).

    ``/metrics`` (site names, pool usage, call counts) answers only a request bearing
    ``Authorization: Bearer <token>`` (``[general] metrics_token``); without a token configured
    it is not served at all (404).  A web app cannot tell a local scraper from a visitor relayed
    by its own reverse proxy: both arrive from loopback, and a proxy need not add
    X-Forwarded-For (nginx's plain ``proxy_pass`` does not) nor strip one a visitor sent, and
    ``//metrics`` or ``/%6Detrics`` pass a proxy's ``location = /metrics`` rule yet reach this
    view.  So the check is the token, whatever the path, address or headers.  The daemons
    (AGI, AMI listener) serve their own figures on a loopback listener instead
    (:func:`start_http_server`).  ``health_path=None`` leaves an app's own health endpoint alone.
    """
    from flask import Response, abort, jsonify, request

    registry = registry or registry_with_database(session_factory)
    all_checks = {"database": database_check(session_factory), **(checks or {})}
    expected = f"Bearer {token}".encode() if token else None

    def metrics_view():
        if expected is None:
            abort(404)
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return Response("metrics need the bearer token ([general] metrics_token)\n", status=401,
                            content_type="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        body, content_type = render(registry)
        return Response(body, content_type=content_type)

    def health_view():
        status, body = health(all_checks)
        return jsonify(body), status

    app.add_url_rule("/metrics", "astertrack_metrics", metrics_view, methods=["GET"])
    if health_path:
        app.add_url_rule(health_path, "astertrack_healthz", health_view, methods=["GET"])


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.server.metrics_answer()
            status = 200
        elif path in ("/healthz", "/health"):
            status, payload = self.server.health_answer()
            body, content_type = json.dumps(payload).encode(), "application/json"
        else:
            status, body, content_type = 404, b"not found\n", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep scrapes out of the journal
        return


class MetricsServer(ThreadingHTTPServer):
    """``/metrics`` and ``/healthz`` of one process; subclasses change what the two answer."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, registry: CollectorRegistry, checks: Mapping[str, HealthCheck],
                 sock: socket.socket | None = None):
        super().__init__(address, _Handler, bind_and_activate=sock is None)
        if sock is not None:  # bound and listening already (by the parent of pre-forked workers)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()[:2]
        self.registry = registry
        self.checks = dict(checks)

    def metrics_answer(self) -> tuple[bytes, str]:
        return render(self.registry)

    def health_answer(self) -> tuple[int, dict[str, Any]]:
        return health(self.checks)


def start_http_server(host: str, port: int, checks: Mapping[str, HealthCheck] | None = None,
                      registry: CollectorRegistry = REGISTRY, sock: socket.socket | None = None) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` from a daemon thread (for the AGI and AMI daemons).

    Returns the server; call ``.shutdown()`` on stop.  ``port=0`` picks a free port
    (``server.server_address[1]``); ``sock``, a listening socket, is used instead of binding one.
    """
    server = MetricsServer((host, port), registry, checks or {}, sock)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics and health on http://%s:%s/metrics", host, server.server_address[1])
    return server
