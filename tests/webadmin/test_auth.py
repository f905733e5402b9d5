"""Login, logout, rate limit, CSRF, session invalidation, cookie flags, security headers."""

from __future__ import annotations

from astertrack.config import load_config
from astertrack.db.models import User
from astertrack.passwords import hash_password
from tests.webadmin.conftest import csrf_token
from webadmin import create_app


def test_login_and_logout(client, auth, data):
    response = auth.login("admin")
    assert response.status_code == 302 and response.location == "/"
    assert client.get("/").location == "/reports/sources"
    assert client.get("/reports/sources").status_code == 200
    # logout is a POST with a CSRF token; a GET is not allowed
    assert client.get("/auth/logout").status_code == 405
    assert auth.post("/auth/logout", page="/reports/sources").status_code == 302
    assert client.get("/reports/sources").status_code == 302


def test_manager_lands_on_call_log(client, auth, data):
    auth.login("anna")
    assert client.get("/").location == "/calls/"


def test_wrong_password_and_unknown_login(client, auth, data):
    wrong = auth.login("admin", "wrong-password")
    assert wrong.status_code == 401 and b"Wrong login or password" in wrong.data
    assert auth.login("nobody", "whatever-123").status_code == 401
    assert client.get("/reports/sources").status_code == 302


def test_login_rate_limit(client, auth, data):
    for _ in range(5):
        assert auth.login("super", "bad-password").status_code == 401
    blocked = auth.login("super")  # even the right password waits out the window
    assert blocked.status_code == 429
    assert b"Too many failed attempts" in blocked.data


def test_inactive_user_cannot_log_in_and_loses_session(client, auth, data, db):
    auth.login("super")
    assert client.get("/reports/sources").status_code == 200
    user = db.get(User, data.users["super"])
    user.active = False
    db.commit()
    assert client.get("/reports/sources").status_code == 302
    assert auth.login("super").status_code == 401


def test_password_change_ends_existing_sessions(client, auth, data, db):
    auth.login("super")
    assert client.get("/reports/sources").status_code == 200
    db.get(User, data.users["super"]).password_hash = hash_password("another-password-9")
    db.commit()
    assert client.get("/reports/sources").status_code == 302


def test_open_redirect_is_refused(client, auth, data):
    token = csrf_token(client)
    response = client.post("/auth/login?next=//evil.example/x",
                           data={"login": "admin", "password": "correct-horse-1", "csrf_token": token})
    assert response.location == "/"


def test_post_without_csrf_token_is_rejected(client, auth, data, db):
    auth.login("admin")
    before = db.query(User).count()
    response = client.post("/users/new", data={"login": "eve", "role": "admin", "password": "long-enough-1"})
    assert response.status_code == 400
    assert b"did not come from this site" in response.data
    response = client.post("/users/new", data={"login": "eve", "role": "admin", "password": "long-enough-1",
                                               "csrf_token": "forged"})
    assert response.status_code == 400
    assert db.query(User).count() == before
    assert client.post("/auth/login", data={"login": "admin", "password": "correct-horse-1"}).status_code == 400


def test_secure_cookie_flags_and_headers(db_url, tmp_path, data):
    conf = tmp_path / "secure.conf"
    conf.write_text("")
    config = load_config(conf, environ={}, overrides={"database": {"url": db_url},
                                                       "web": {"secret_key": "k" * 32, "secure_cookies": "yes"}})
    app = create_app(config, {"TESTING": True})
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/auth/login", data={"login": "admin", "password": "correct-horse-1", "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/auth/login")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_empty_secret_key_refuses_to_start(db_url, tmp_path):
    conf = tmp_path / "nokey.conf"
    conf.write_text("")
    config = load_config(conf, environ={}, overrides={"database": {"url": db_url}})
    try:
        create_app(config)
    except RuntimeError as exc:
        assert "secret_key" in str(exc)
    else:
        raise AssertionError("an app without a secret key must not start")


def test_address_limit_is_looser_than_login_limit(client, auth, data):
    """Behind one NAT or proxy many users share an address: one user's typos lock only that login."""
    for _ in range(5):
        auth.login("super", "bad-password")
    assert auth.login("super").status_code == 429
    assert auth.login("admin").status_code == 302


def test_forwarded_for_is_used_only_when_trusted(db_url, tmp_path, data):
    conf = tmp_path / "proxy.conf"
    conf.write_text("")
    config = load_config(conf, environ={}, overrides={"database": {"url": db_url},
                                                       "web": {"secret_key": "k" * 32, "trust_forwarded_for": "yes"}})
    app = create_app(config, {"TESTING": True})
    seen = []

    @app.get("/_addr")
    def addr():
        from flask import request

        seen.append((request.remote_addr, request.scheme))
        return ""

    app.test_client().get("/_addr", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert seen == [("203.0.113.9", "https")]
