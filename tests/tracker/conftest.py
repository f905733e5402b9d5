"""A real tracker HTTP server on loopback for each test that asks for one."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from astertrack.config import load_config
from tracker import create_app


@contextmanager
def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def tracker_config(db_url: str, **tracker_overrides):
    """Tests that play a crowd from one loopback address turn the per-client limits off, as they
    turn the rate limit off; tests/tracker/test_abuse.py runs the limits an installation runs."""
    overrides = {"database": {"url": db_url, "pool_size": 20},
                 "tracker": {"maintenance_seconds": 0, "rate_limit_per_minute": 0, "max_holds_per_ip": 0,
                             "max_holds_per_visitor": 0, "pool_pressure": 0, **tracker_overrides}}
    return load_config(environ={}, overrides=overrides)


@pytest.fixture
def tracker_app(db_url, session_factory):
    """Factory: tracker_app(**[tracker] overrides) -> Flask app on the test database."""

    def build(**overrides):
        return create_app(tracker_config(db_url, **overrides), session_factory=session_factory)

    return build


@pytest.fixture
def tracker_url(tracker_app):
    with serve(tracker_app()) as url:
        yield url


BROWSER_ORIGIN = "http://127.0.0.1"  # in pooled_site's domains


def post(url: str, body, headers=None, raw: bytes | None = None, timeout: float = 30):
    """POST as the snippet in a browser does (with the page's Origin; ``"Origin": None`` sends
    none) and return (status, parsed JSON or None, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    sent = {"Content-Type": "text/plain;charset=UTF-8", "Origin": BROWSER_ORIGIN, **(headers or {})}
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={k: v for k, v in sent.items() if v is not None})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            return response.status, (json.loads(payload) if payload else None), response.headers
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        return exc.code, (json.loads(payload) if payload else None), exc.headers
