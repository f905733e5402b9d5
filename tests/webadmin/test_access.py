"""Every view behind login and role checks; managers see only their own calls and recordings."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from astertrack.db.models import Call, User
from astertrack.passwords import hash_password

STAFF_PAGES = ["/reports/sources", "/reports/sources?dimension=campaign", "/reports/missed", "/reports/first-repeat",
               "/reports/managers", "/reports/funnel", "/reports/pools", "/live/"]
ADMIN_PAGES = ["/settings/", "/settings/sites/", "/settings/sites/new", "/settings/sources/", "/settings/pools/",
               "/settings/numbers/", "/settings/managers/", "/settings/groups/", "/settings/rules/",
               "/settings/rules/new", "/settings/numbers/import", "/settings/costs/import", "/users/", "/users/new"]
ALL_PAGES = ["/calls/"]


def test_anonymous_gets_the_login_page_everywhere(client, data):
    pages = STAFF_PAGES + ADMIN_PAGES + ALL_PAGES + [f"/calls/{data.answered}", f"/calls/{data.answered}/recording",
                                                      "/live/board/stream", "/live/popup/stream"]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 302, page
        assert "/auth/login" in response.location, page
    assert client.get("/").location.endswith("/auth/login")
    assert b'name="password"' in client.get("/auth/login").data


@pytest.mark.parametrize("role,login", [("admin", "admin"), ("supervisor", "super"), ("manager", "anna")])
def test_role_matrix(client, auth, data, role, login):
    assert auth.login(login).status_code == 302
    for page in STAFF_PAGES:
        assert client.get(page).status_code == (200 if role != "manager" else 403), page
    for page in ADMIN_PAGES:
        assert client.get(page).status_code == (200 if role == "admin" else 403), page
    for page in ALL_PAGES:
        assert client.get(page).status_code == 200, page
    edit_pages = [f"/settings/sites/{data.site}", f"/settings/sources/{data.yandex}", f"/settings/managers/{data.anna}",
                  f"/users/{data.users['anna']}"]
    for page in edit_pages:
        assert client.get(page).status_code == (200 if role == "admin" else 403), page


def test_manager_sees_only_own_calls_and_recordings(client, auth, data):
    auth.login("anna")
    own = client.get(f"/calls/{data.answered}")
    assert own.status_code == 200 and b"Ivan" in own.data
    assert client.get(f"/calls/{data.answered}/recording").status_code == 200
    # Boris's missed call and its recording: not found for Anna, not merely hidden
    assert client.get(f"/calls/{data.missed}").status_code == 404
    assert client.get(f"/calls/{data.missed}/recording").status_code == 404
    assert client.get(f"/calls/{data.missed}/recording?download=1").status_code == 404
    log = client.get("/calls/").data
    assert f"/calls/{data.answered}\"".encode() in log
    assert f"/calls/{data.missed}\"".encode() not in log
    assert f"/calls/{data.callback}\"".encode() not in log
    # even asking for Boris's calls by filter shows nothing of his
    assert f"/calls/{data.callback}\"".encode() not in client.get(f"/calls/?manager={data.boris}").data


def test_supervisor_opens_any_call_and_recording(client, auth, data):
    auth.login("super")
    for call_id in (data.answered, data.missed, data.callback):
        assert client.get(f"/calls/{call_id}").status_code == 200
    assert client.get(f"/calls/{data.missed}/recording").status_code == 200


def test_manager_user_without_manager_link_sees_no_calls(client, auth, data, db):
    db.add(User(login="orphan", password_hash=hash_password("correct-horse-1"), role="manager"))
    db.commit()
    auth.login("orphan")
    assert client.get(f"/calls/{data.answered}").status_code == 404
    assert b"No calls match" in client.get("/calls/").data
    assert client.get("/live/popup/stream").status_code == 404


def test_recording_supports_range_and_download(client, auth, data):
    auth.login("admin")
    full = client.get(f"/calls/{data.answered}/recording")
    assert full.status_code == 200 and full.mimetype == "audio/wav"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.data[:4] == b"RIFF"
    part = client.get(f"/calls/{data.answered}/recording", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(full.data)}"
    assert part.data == full.data[100:200]
    download = client.get(f"/calls/{data.answered}/recording?download=1")
    assert "attachment" in download.headers["Content-Disposition"]
    assert f"call-{data.answered}.wav" in download.headers["Content-Disposition"]


def test_recording_path_escaping_the_directory_is_refused(client, auth, data, db, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFFsecret")
    call = db.get(Call, data.answered)
    call.recording_path = "../secret.wav"
    db.commit()
    auth.login("admin")
    assert client.get(f"/calls/{data.answered}/recording").status_code == 404
    call.recording_path = str(secret)  # absolute path outside the recordings dir
    db.commit()
    assert client.get(f"/calls/{data.answered}/recording").status_code == 404
    page = client.get(f"/calls/{data.answered}").data
    assert b'id="recording-missing"' in page and b"<audio" not in page


def test_missing_recording_file_is_404_not_500(client, auth, data, recordings_dir):
    (recordings_dir / "2026/01/01/rec-answered.wav").unlink()
    auth.login("admin")
    assert client.get(f"/calls/{data.answered}/recording").status_code == 404
    page = client.get(f"/calls/{data.answered}").data
    assert b'id="recording-missing"' in page and b"<audio" not in page


def test_call_never_recorded_says_so_in_both_languages(client, auth, data, db):
    call = db.get(Call, data.answered)
    call.recording_path, call.recording_state = None, None
    db.commit()
    auth.login("admin")
    page = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert 'id="recording-none"' in page and "This call was not recorded." in page and "<audio" not in page
    db.scalar(select(User).where(User.login == "admin")).locale = "ru"
    db.commit()
    page = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert "Этот звонок не записывался." in page


def test_missed_reason_and_where_the_facts_came_from_are_words_not_codes(client, auth, data, db):
    call = db.get(Call, data.answered)
    call.outcome, call.missed_reason, call.closed_by = "missed", "queue_timeout", "cdr"
    db.commit()
    auth.login("admin")
    page = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert "queue timed out (nobody answered)" in page and "the AMI stream had a gap" in page
    assert "queue_timeout" not in page
    log = client.get("/calls/").get_data(as_text=True)
    assert "queue timed out (nobody answered)" in log


def test_every_view_declares_its_roles(app):
    """A new view without @roles_required fails here before it can ship unprotected."""
    public = {"static", "auth.login", "healthz", "index",
              "astertrack_metrics",  # scrape endpoint: answers only the [general] metrics_token bearer
              "api.openapi_json"}  # the API's description for programs: no data in it
    login_only = {"auth.logout", "auth.set_locale"}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in public:
            continue
        view = app.view_functions[rule.endpoint]
        if rule.endpoint.startswith("api.") and getattr(view, "token_scope", None) in ("read", "write"):
            continue  # the CRM API: a bearer token of a scope (webadmin/api/auth.token_required), no login
        if rule.endpoint in login_only:
            assert hasattr(view, "__wrapped__"), rule.endpoint
            continue
        assert set(getattr(view, "allowed_roles", ())) <= {"admin", "supervisor", "manager"}, rule.endpoint
        assert getattr(view, "allowed_roles", None), f"{rule.rule} has no role check"


def _earlier_calls_from_ivan(db, data):
    """Ivan (+79161234567, whose answered call Anna took two hours ago) called before: once to
    Boris, who answered, and once to Anna, who missed it."""
    from datetime import timedelta

    from astertrack.db.types import utcnow

    now = utcnow()
    to_boris = Call(site_id=data.site, caller_number="+79161234567", started_at=now - timedelta(hours=5),
                    state="finished", outcome="answered", manager_id=data.boris, routed_manager_id=data.boris)
    to_anna = Call(site_id=data.site, caller_number="+79161234567", started_at=now - timedelta(hours=4),
                   state="finished", outcome="missed", routed_manager_id=data.anna)
    db.add_all([to_boris, to_anna])
    db.commit()
    return to_boris, to_anna


def test_call_card_lists_only_the_manager_s_own_earlier_calls(client, auth, data, db):
    to_boris, to_anna = _earlier_calls_from_ivan(db, data)
    auth.login("anna")
    page = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert f'href="/calls/{to_anna.id}"' in page
    assert f'href="/calls/{to_boris.id}"' not in page
    assert "1 earlier call<" in page  # one call: the singular (a plural entry, not "1 earlier calls")
    other = client.application.test_client()
    from tests.webadmin.conftest import AuthActions

    AuthActions(other).login("super")  # staff see the caller's whole history
    page = other.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert f'href="/calls/{to_anna.id}"' in page and f'href="/calls/{to_boris.id}"' in page
    assert "2 earlier calls" in page


def test_popup_counts_only_the_manager_s_own_earlier_calls(app, client, auth, data, db):
    import json

    from astertrack.db.types import utcnow

    _earlier_calls_from_ivan(db, data)
    app.config["SSE_MAX_SECONDS"] = 1.0
    ringing = Call(site_id=data.site, caller_number="+79161234567", state="ringing", started_at=utcnow(),
                   routed_manager_id=data.anna)
    db.add(ringing)
    db.commit()
    answered_at = db.get(Call, data.answered).started_at
    auth.login("anna")
    body = b"".join(client.get("/live/popup/stream").response).decode()
    card = json.loads(next(line[6:] for line in body.splitlines() if line.startswith("data: ")))
    assert card["id"] == ringing.id
    assert card["previous"] == 2  # the answered call two hours ago and the missed one: Boris's is not hers
    assert card["last_call_at"] == answered_at.isoformat()
