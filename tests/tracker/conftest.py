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
    overrides = {"database": {"url": db_url, "pool_size": 20},
                 "tracker": {"maintenance_seconds": 0, "rate_limit_per_minute": 0, **tracker_overrides}}
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


def post(url: str, body, headers=None, raw: bytes | None = None, timeout: float = 30):
    """POST and return (status, parsed JSON or None, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "text/plain;charset=UTF-8", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            return response.status, (json.loads(payload) if payload else None), response.headers
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        return exc.code, (json.loads(payload) if payload else None), exc.headers
