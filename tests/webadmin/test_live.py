"""Live board and the manager pop-up (Server-Sent Events read through the test client)."""

from __future__ import annotations

import json

from astertrack.db.models import Call, CallerProfile, Manager
from astertrack.db.types import utcnow
from tests.webadmin.conftest import AuthActions
from webadmin.live.state import crm_link


def _events(response) -> list[tuple[str, dict]]:
    text = b"".join(response.response).decode()
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def _ringing(db, data, manager_id, **extra) -> Call:
    call = Call(site_id=data.site, caller_number="+79161234567", caller_name=None, state="ringing",
                started_at=utcnow(), routed_manager_id=manager_id, source_id=data.yandex, session_id=data.visit,
                utm_campaign="winter-sale", keyword="buy sofa", **extra)
    db.add(call)
    db.commit()
    return call


def test_popup_stream_sends_ringing_call_to_its_manager_only(app, client, auth, data, db):
    app.config["SSE_MAX_SECONDS"] = 1.0
    db.add(CallerProfile(site_id=data.site, number="+79161234567", name="Ivan Petrov"))
    db.commit()
    call = _ringing(db, data, data.anna)
    auth.login("anna")
    response = client.get("/live/popup/stream")
    assert response.mimetype == "text/event-stream"
    events = _events(response)
    assert [name for name, _ in events] == ["ring"]
    card = events[0][1]
    assert card["id"] == call.id and card["caller"] == "+7 (916) 123-45-67"
    assert card["caller_name"] == "Ivan Petrov"
    assert (card["source"], card["campaign"], card["keyword"]) == ("Yandex Direct", "winter-sale", "buy sofa")
    assert card["landing_page"].startswith("https://shop.example/sofas")
    assert card["previous"] == 1  # the answered call two hours ago
    assert card["crm_url"] == "https://crm.example/search?phone=%2B79161234567"
    assert card["card_url"] == f"/calls/{call.id}"
    other = app.test_client()  # Boris, in his own browser, gets nothing
    AuthActions(other).login("boris")
    assert _events(other.get("/live/popup/stream")) == []


def test_popup_ignores_answered_and_old_calls(app, client, auth, data, db):
    app.config["SSE_MAX_SECONDS"] = 0.6
    _ringing(db, data, data.anna).state = "up"
    db.commit()
    auth.login("anna")
    assert _events(client.get("/live/popup/stream")) == []


def test_board_stream_shows_calls_and_device_states(app, client, auth, data, db):
    app.config["SSE_MAX_SECONDS"] = 0.6
    _ringing(db, data, data.anna)
    db.get(Manager, data.boris).device_state = "RINGING"
    db.commit()
    auth.login("super")
    events = _events(client.get("/live/board/stream"))
    assert events and events[0][0] == "board"
    state = events[0][1]
    assert [c["caller"] for c in state["calls"]] == ["+79161234567"]
    assert {m["name"]: m["device_state"] for m in state["managers"]} == {"Anna": "NOT_INUSE", "Boris": "RINGING"}
    page = client.get("/live/").data
    assert b"+79161234567" in page and b"RINGING" in page


def test_manager_cannot_open_board(client, auth, data):
    auth.login("anna")
    assert client.get("/live/board/stream").status_code == 403


def test_crm_link_is_encoded_and_http_only():
    call = Call(id=7, call_uid="abc", caller_number="+79161234567", caller_name="A&B <x>")
    assert crm_link("https://crm/x?p={phone}&n={caller_name}", call) == "https://crm/x?p=%2B79161234567&n=A%26B%20%3Cx%3E"
    assert crm_link("javascript:alert({phone})", call) is None
    assert crm_link(None, call) is None


def test_ring_all_call_pops_up_at_the_phone_that_rings(app, data, db):
    """With ring-all there is no routed manager: the AMI listener's ringing_endpoint decides."""
    app.config["SSE_MAX_SECONDS"] = 0.8
    call = _ringing(db, data, None, ringing_endpoint="PJSIP/102")
    boris, anna = app.test_client(), app.test_client()
    AuthActions(boris).login("boris")
    AuthActions(anna).login("anna")
    assert [card["id"] for _, card in _events(boris.get("/live/popup/stream"))] == [call.id]
    assert _events(anna.get("/live/popup/stream")) == []
    assert boris.get(f"/calls/{call.id}").status_code == 200  # the card link in the pop-up works for him
    assert anna.get(f"/calls/{call.id}").status_code == 404


def test_ring_group_call_pops_up_at_every_phone_it_rings_and_only_those(app, data, db):
    """The AMI listener lists every ringing phone of a ring-all call, comma-separated."""
    app.config["SSE_MAX_SECONDS"] = 0.8
    group_call = _ringing(db, data, None, ringing_endpoint="PJSIP/101,PJSIP/102")
    boris, anna = app.test_client(), app.test_client()
    AuthActions(boris).login("boris")
    AuthActions(anna).login("anna")
    assert [card["id"] for _, card in _events(boris.get("/live/popup/stream"))] == [group_call.id]
    assert [card["id"] for _, card in _events(anna.get("/live/popup/stream"))] == [group_call.id]
    assert anna.get(f"/calls/{group_call.id}").status_code == 200
    group_call.state = "finished"
    other = _ringing(db, data, None, ringing_endpoint="PJSIP/1010,PJSIP/10")  # look-alike endpoints only
    assert _events(anna.get("/live/popup/stream")) == []
    assert anna.get(f"/calls/{other.id}").status_code == 404
