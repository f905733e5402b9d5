"""Admin sessions end on the server, and the login limiter is shared by every worker.

Two ``create_app`` instances on one database stand in for two gunicorn workers: each has its
own process memory, so only what is kept in the database is seen by both.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import zlib

import pytest
from sqlalchemy import func, select, update

from astertrack.config import load_config
from astertrack.db.models import LoginFailure, User, WebSession
from astertrack.db.types import utcnow
from tests.webadmin.conftest import AuthActions, csrf_token, make_config
from tests.webadmin.seed import PASSWORD
from webadmin import create_app

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


def client_from(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def login(client, user: str = "admin", password: str = PASSWORD, next_url: str | None = None):
    token = csrf_token(client)
    path = "/auth/login" + (f"?next={next_url}" if next_url else "")
    return client.post(path, data={"login": user, "password": password, "csrf_token": token})


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def replay(app, cookie: str):
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief


def cookie_payload(cookie: str) -> dict:
    """What Flask's signed (not encrypted) session cookie tells anyone who holds it."""
    compressed = cookie.startswith(".")
    body = cookie.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


@pytest.fixture
def second_app(db_url, tmp_path, app):
    """Another worker: its own process state, the same database."""
    return create_app(make_config(db_url, tmp_path), {"TESTING": True})


# ---------------------------------------------------------------- sessions


def test_a_cookie_copied_before_logout_is_refused_after_it(app, client, auth, data):
    assert auth.login("admin").status_code == 302
    assert client.get("/users/").status_code == 200
    stolen = session_cookie(client)
    assert replay(app, stolen).get("/users/").status_code == 200  # the copy works while the session lives
    assert auth.post("/auth/logout", page="/users/").status_code == 302
    response = replay(app, stolen).get("/users/")
    assert response.status_code == 302 and "/auth/login" in response.location


def test_logout_in_one_worker_ends_the_session_in_the_other(app, second_app, client, auth, data):
    auth.login("admin")
    stolen = session_cookie(client)
    assert replay(second_app, stolen).get("/users/").status_code == 200
    auth.post("/auth/logout", page="/users/")
    assert replay(second_app, stolen).get("/users/").status_code == 302


def test_password_change_ends_every_session_of_that_user(app, client, auth, data, db):
    first, second = app.test_client(), app.test_client()
    AuthActions(first).login("super")
    AuthActions(second).login("super")
    cookies = [session_cookie(first), session_cookie(second)]
    assert db.scalar(select(func.count()).select_from(WebSession).where(WebSession.user_id == data.users["super"])) == 2
    auth.login("admin")
    token = csrf_token(client, f"/users/{data.users['super']}")
    response = client.post(f"/users/{data.users['super']}", data={
        "login": "super", "role": "supervisor", "manager_id": "", "locale": "en", "active": "y",
        "password": "a-brand-new-pass-9", "csrf_token": token})
    assert response.status_code == 302
    db.rollback()  # a fresh snapshot: see what the app committed
    assert db.scalar(select(func.count()).select_from(WebSession).where(WebSession.user_id == data.users["super"])) == 0
    for cookie in cookies:
        assert replay(app, cookie).get("/reports/sources").status_code == 302
    assert client.get("/users/").status_code == 200  # the admin who changed it keeps working


def test_the_cookie_carries_no_piece_of_the_password_hash(client, auth, data, db):
    auth.login("super")
    payload = cookie_payload(session_cookie(client))
    stored = db.get(User, data.users["super"]).password_hash
    assert not any(stored[-12:] in str(value) for value in payload.values()), payload


def test_idle_session_ends_after_the_configured_minutes(db_url, tmp_path, data, db):
    conf = tmp_path / "idle.conf"
    conf.write_text("[web]\nsession_idle_minutes = 30\n")
    config = load_config(conf, environ={}, overrides={
        "database": {"url": db_url}, "web": {"secret_key": "k" * 32, "secure_cookies": "no"}})
    app = create_app(config, {"TESTING": True})
    client = app.test_client()
    AuthActions(client).login("super")
    assert client.get("/reports/sources").status_code == 200

    # 20 minutes without a request: still inside the window, and the request renews it
    db.execute(update(WebSession).values(last_seen_at=utcnow() - dt.timedelta(minutes=20)))
    db.commit()
    assert client.get("/reports/sources").status_code == 200
    db.rollback()  # a fresh snapshot: see what the app committed
    seen = db.scalar(select(WebSession.last_seen_at))
    assert utcnow() - seen < dt.timedelta(minutes=1)

    # 31 minutes without a request: the session is over, on the server
    db.execute(update(WebSession).values(last_seen_at=utcnow() - dt.timedelta(minutes=31)))
    db.commit()
    response = client.get("/reports/sources")
    assert response.status_code == 302 and "/auth/login" in response.location
    db.rollback()  # a fresh snapshot: see what the app committed
    assert db.scalar(select(func.count()).select_from(WebSession)) == 0


@pytest.mark.parametrize("user,path", [("anna", "/live/popup/stream"), ("super", "/live/board/stream")])
def test_an_open_live_stream_ends_soon_after_its_session_does(app, client, auth, data, user, path):
    """The pop-up and the board stream for minutes: a stolen cookie's stream stops at logout too."""
    app.config["SSE_MAX_SECONDS"] = 40
    auth.login(user)
    response = replay(app, session_cookie(client)).get(path)
    chunks = iter(response.response)
    try:
        assert next(chunks).startswith(b"retry:")
        started = time.monotonic()
        auth.post("/auth/logout", page="/calls/")
        for _ in chunks:
            if time.monotonic() - started > 15:
                break
        assert time.monotonic() - started < 15, "the stream outlived its session"
    finally:
        response.close()


# ---------------------------------------------------------------- login limiter


def test_failures_are_counted_across_workers(app, second_app, data):
    one, two = client_from(app, ATTACKER), client_from(second_app, ATTACKER)
    for client in (one, one, one, two, two):
        assert login(client, "admin", "guess-123456").status_code == 401
    # five failures in all, split over the two workers: both refuse even the right password
    assert login(one, "admin").status_code == 429
    assert login(two, "admin").status_code == 429


@pytest.mark.parametrize("same_worker", [True, False])
def test_the_owner_from_another_address_still_gets_in(app, second_app, data, same_worker):
    attacker = client_from(app, ATTACKER)
    for _ in range(6):
        login(attacker, "admin", "guess-123456")
    assert login(attacker, "admin").status_code == 429
    owner = client_from(app if same_worker else second_app, OWNER)
    response = login(owner, "admin")
    assert response.status_code == 302 and owner.get("/users/").status_code == 200


def test_an_address_spraying_many_logins_is_stopped_across_workers(app, second_app, data):
    one, two = client_from(app, ATTACKER), client_from(second_app, ATTACKER)
    for i in range(20):
        assert login(one if i % 2 else two, f"user{i}", "guess-123456").status_code == 401
    assert login(one, "admin").status_code == 429
    assert login(two, "super").status_code == 429
    assert login(client_from(app, OWNER), "admin").status_code == 302


def test_concurrent_guesses_on_two_workers_get_one_budget(app, second_app, data):
    """Ten guesses at once, five on each worker: no more than five passwords are checked."""
    statuses: list[int] = []
    lock = threading.Lock()
    clients = [client_from(app if i % 2 else second_app, ATTACKER) for i in range(10)]
    tokens = [csrf_token(c) for c in clients]
    barrier = threading.Barrier(len(clients))

    def guess(client, token):
        barrier.wait()
        status = client.post("/auth/login", data={"login": "admin", "password": "guess-123456",
                                                  "csrf_token": token}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [401] * 5 + [429] * 5


def test_the_lockout_ends_with_the_window(app, data, db):
    attacker = client_from(app, ATTACKER)
    for _ in range(5):
        login(attacker, "admin", "guess-123456")
    assert login(attacker, "admin").status_code == 429
    window = app.config["LOGIN_WINDOW_SECONDS"]
    db.execute(update(LoginFailure).values(at=utcnow() - dt.timedelta(seconds=window + 1)))
    db.commit()
    assert login(attacker, "admin").status_code == 302


def test_a_success_clears_that_login_s_failures_from_that_address(app, data):
    owner = client_from(app, OWNER)
    for _ in range(4):
        login(owner, "admin", "typo-typo-typo")
    assert login(owner, "admin").status_code == 302
    owner.post("/auth/logout", data={"csrf_token": csrf_token(owner, "/users/")})
    for _ in range(4):  # a fresh budget after the successful login
        assert login(owner, "admin", "typo-typo-typo").status_code == 401
    assert login(owner, "admin").status_code == 302


# ---------------------------------------------------------------- post-login redirect


@pytest.mark.parametrize("target", ["/%5Cevil.example", "/%5C/evil.example", "%5C%5Cevil.example",
                                    "/%09/evil.example", "/%0A/evil.example", "/%00evil", "//evil.example",
                                    "https://evil.example/", "/%5Cevil.example/calls/"])
def test_post_login_redirect_refuses_backslashes_and_control_characters(client, data, target):
    response = login(client, "admin", next_url=target)
    assert response.status_code == 302 and response.location == "/", response.location
    # already logged in: the login page redirects through the same check
    assert client.get(f"/auth/login?next={target}").location == "/"


def test_post_login_redirect_keeps_a_local_path(client, data):
    response = login(client, "admin", next_url="/calls/%3Foutcome%3Dmissed")
    assert response.location == "/calls/?outcome=missed"


def test_language_switch_refuses_a_backslash_next(client, auth, data):
    auth.login("admin")
    response = auth.post("/auth/locale", {"locale": "ru", "next": "/\\evil.example"}, page="/users/")
    assert response.location == "/"
    response = auth.post("/auth/locale", {"locale": "en", "next": "/users/"}, page="/users/")
    assert response.location == "/users/"
