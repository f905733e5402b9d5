"""Fixtures for the web admin (flaskr style): ``app`` on a fresh database of each backend,
``client``, ``runner``, a seeded data set and an ``auth`` helper that logs in with CSRF."""

from __future__ import annotations

import re

import pytest

from astertrack.config import load_config
from astertrack.db.engine import make_engine, make_session_factory
from tests.webadmin.seed import PASSWORD, seed
from webadmin import create_app

CSRF_META = re.compile(rb'<meta name="csrf-token" content="([^"]+)"')


def make_config(db_url: str, tmp_path):
    conf = tmp_path / "astertrack.conf"
    conf.write_text("")
    return load_config(conf, environ={}, overrides={
        "database": {"url": db_url},
        "web": {"secret_key": "test-secret-key", "secure_cookies": "no", "default_locale": "en"},
        "recordings": {"dir": str(tmp_path / "rec")},
    })


@pytest.fixture
def recordings_dir(tmp_path):
    path = tmp_path / "rec"
    path.mkdir()
    return path


@pytest.fixture
def app(db_url, tmp_path, recordings_dir):
    app = create_app(make_config(db_url, tmp_path), {"TESTING": True})
    yield app


@pytest.fixture
def db(app):
    engine = make_engine(app.config["DATABASE_URL"])
    factory = make_session_factory(engine)
    with factory() as session:
        yield session
    engine.dispose()


@pytest.fixture
def data(db, recordings_dir):
    return seed(db, recordings_dir)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token(client, path: str = "/auth/login") -> str:
    page = client.get(path)
    match = CSRF_META.search(page.data)
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1).decode()


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, login: str = "admin", password: str = PASSWORD):
        token = csrf_token(self.client)
        return self.client.post("/auth/login", data={"login": login, "password": password, "csrf_token": token})

    def post(self, path: str, data: dict | None = None, page: str = "/calls/", **kwargs):
        token = csrf_token(self.client, page)
        return self.client.post(path, data={**(data or {}), "csrf_token": token}, **kwargs)


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def live(app, data):
    """The seeded admin behind a real threaded HTTP server (browser tests); yields its base URL."""
    from tests.webadmin.browser import ServerThread

    app.config["SSE_MAX_SECONDS"] = 20
    with ServerThread(app) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture
def page(browser):
    """A Chromium page in a fresh context; ``page.errors`` lists its script and console errors."""
    from tests.webadmin.browser import open_page

    context, page = open_page(browser)
    yield page
    context.close()
