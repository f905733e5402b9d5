"""Every user changes their own password: the current one is checked, the new one typed twice,
and every other session of theirs ends while this one goes on."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from astertrack.db.models import User, WebSession
from astertrack.passwords import verify_password
from tests.webadmin.conftest import AuthActions
from tests.webadmin.seed import PASSWORD

NEW = "a-new-password-42"


@pytest.mark.parametrize("login", ["admin", "super", "anna"])
def test_own_password_change_ends_other_sessions(app, client, auth, data, db, login):
    other = app.test_client()
    AuthActions(other).login(login)
    auth.login(login)
    assert other.get("/calls/").status_code == 200
    page = client.get("/users/me/password")
    assert page.status_code == 200 and 'id="own-password"' in page.get_data(as_text=True)
    assert 'id="own-password-link"' in client.get("/calls/").get_data(as_text=True)
    response = auth.post("/users/me/password", {"current": PASSWORD, "new": NEW, "confirm": NEW},
                         page="/users/me/password")
    assert response.status_code == 303
    assert client.get("/calls/").status_code == 200  # this browser stays logged in
    assert other.get("/calls/").status_code == 302  # the other session ended
    db.rollback()
    user = db.scalars(select(User).where(User.login == login)).one()
    assert verify_password(user.password_hash, NEW)
    assert len(db.scalars(select(WebSession).where(WebSession.user_id == user.id)).all()) == 1
    fresh = AuthActions(app.test_client())
    assert fresh.login(login, PASSWORD).status_code == 401
    assert fresh.login(login, NEW).status_code == 302


def test_wrong_current_password_or_mismatch_is_refused(client, auth, data, db):
    auth.login("super")
    cases = [({"current": "wrong-password", "new": NEW, "confirm": NEW}, "The current password is wrong."),
             ({"current": PASSWORD, "new": NEW, "confirm": NEW + "x"}, "The two new passwords differ."),
             ({"current": PASSWORD, "new": "short", "confirm": "short"}, "At least"),
             ({"current": PASSWORD, "new": PASSWORD, "confirm": PASSWORD}, "must differ")]
    for form, message in cases:
        response = auth.post("/users/me/password", form, page="/users/me/password")
        assert response.status_code == 400 and message in response.get_data(as_text=True), message
    db.rollback()
    user = db.scalars(select(User).where(User.login == "super")).one()
    assert verify_password(user.password_hash, PASSWORD)
    assert client.get("/calls/").status_code == 200


def test_password_page_needs_a_login(client, data):
    assert client.get("/users/me/password").status_code == 302
    assert client.post("/users/me/password", data={}).status_code in (302, 400)
