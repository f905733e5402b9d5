"""The live streams served in the event loop (``webadmin.live.streams``) over real HTTP: they
hold no request thread, the shared poller sends each ring to the right manager only and every
board change to the board, and the gate (login, roles, sessions) holds as for any page.

The admin runs under a real uvicorn server in a thread, built from the event worker's own
pieces (``with_native_paths`` in front of ``BufferedWsgi``, ``DeadlineH11Protocol``), with only
two request threads.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from astertrack.db.models import Call, Manager, User
from astertrack.db.types import utcnow
from astertrack.ops.serving import BufferedWsgi, with_native_paths
from astertrack.passwords import hash_password
from astertrack.samples.processes import asgi_in_thread
from tests.webadmin.live_client import Browser
from webadmin.live.state import ringing_calls, ringing_for, rings_at
from webadmin.live.streams import SESSION_CHECK_SECONDS

THREADS = 2


@contextmanager
def served(app):
    """(server, port, thread): ``app`` behind the event worker's pieces, with its native stream paths."""
    asgi = with_native_paths(app, BufferedWsgi(app, threads=THREADS, max_body=1 << 20, body_timeout=5.0))
    with asgi_in_thread(asgi, graceful=10) as running:
        yield running


@pytest.fixture
def server(app, data):
    app.config["SSE_POLL_SECONDS"] = 0.2
    with served(app) as (server, port, _):
        yield server, port


def _ringing(db, data, manager_id, **extra) -> Call:
    call = Call(site_id=data.site, caller_number="+79161234567", state="ringing", started_at=utcnow(),
                routed_manager_id=manager_id, source_id=data.yandex, session_id=data.visit, **extra)
    db.add(call)
    db.commit()
    return call


def test_forty_open_streams_hold_no_thread(server, data):
    _, port = server
    supervisor = Browser(port).login("super")
    anna = Browser(port).login("anna")
    streams = [(supervisor if i % 2 else anna).stream("/live/board/stream" if i % 2 else "/live/popup/stream")
               for i in range(40)]
    try:
        assert all(s.status == 200 for s in streams)
        board = streams[1].events(5, until="board")
        assert board and board[0][0] == "board"
        assert streams[0].events(0.5) == [] and "retry: 1000" in streams[0].comments
        for browser, path in ((Browser(port), "/auth/login"), (supervisor, "/calls/"), (anna, "/calls/")):
            started = time.monotonic()
            status, _, _ = browser.request("GET", path, timeout=5)
            assert status == 200 and time.monotonic() - started < 2.0, path
    finally:
        for s in streams:
            s.close()


def test_a_ring_reaches_its_managers_pop_up_only(server, data, db):
    _, port = server
    anna = Browser(port).login("anna").stream("/live/popup/stream")
    boris = Browser(port).login("boris").stream("/live/popup/stream")
    try:
        assert anna.events(0.6) == [] and boris.events(0.1) == []
        call = _ringing(db, data, data.anna, utm_campaign="winter-sale")
        started = time.monotonic()
        events = anna.events(3, until="ring")
        assert [name for name, _ in events] == ["ring"] and time.monotonic() - started < 2.0
        card = events[0][1]
        assert (card["id"], card["card_url"], card["campaign"]) == (call.id, f"/calls/{call.id}", "winter-sale")
        assert card["previous"] == 1  # her answered call two hours ago
        assert boris.events(1.0) == []
        assert anna.events(1.0) == []  # once per call
        group = _ringing(db, data, None, ringing_endpoint="PJSIP/101,PJSIP/102")
        assert [c["id"] for _, c in boris.events(3, until="ring")] == [group.id]
        assert [c["id"] for _, c in anna.events(3, until="ring")] == [group.id]
    finally:
        anna.close()
        boris.close()


def test_the_board_follows_calls_and_device_states(server, data, db):
    _, port = server
    board = Browser(port).login("super").stream("/live/board/stream")
    try:
        first = board.events(3, until="board")
        assert first[0][1]["calls"] == []
        _ringing(db, data, data.anna)
        db.get(Manager, data.boris).device_state = "RINGING"
        db.commit()
        state = board.events(3, until="board")[0][1]
        assert [c["caller"] for c in state["calls"]] == ["+79161234567"]
        assert {m["name"]: m["device_state"] for m in state["managers"]}["Boris"] == "RINGING"
        assert board.events(0.8) == []  # nothing changed, nothing sent
    finally:
        board.close()


def test_roles_hold_at_the_gate(server, data, db):
    _, port = server
    anonymous = Browser(port).stream("/live/popup/stream")
    assert anonymous.status == 302 and "/auth/login" in anonymous.headers["location"]
    manager_board = Browser(port).login("anna").stream("/live/board/stream")
    assert manager_board.status == 403
    admin_popup = Browser(port).login("admin").stream("/live/popup/stream")  # no phone of their own
    assert admin_popup.status == 404
    for s in (anonymous, manager_board, admin_popup):
        s.close()


def test_logout_and_a_password_change_end_the_stream(server, data, db):
    _, port = server
    anna = Browser(port).login("anna")
    stream = anna.stream("/live/popup/stream")
    boris_stream = Browser(port).login("boris").stream("/live/popup/stream")
    board = Browser(port).login("super").stream("/live/board/stream")
    try:
        assert not stream.ended_within(0.5)
        anna.logout()
        assert stream.ended_within(SESSION_CHECK_SECONDS + 2)
        assert anna.stream("/live/popup/stream").status == 302  # and it does not come back
        db.get(User, data.users["boris"]).password_hash = hash_password("another-password-1")
        db.commit()
        assert boris_stream.ended_within(SESSION_CHECK_SECONDS + 2)
        assert not board.ended_within(0.1)  # the others' streams go on
    finally:
        for s in (stream, boris_stream, board):
            s.close()


def test_a_stop_closes_open_streams_at_once(app, data):
    app.config["SSE_POLL_SECONDS"] = 0.2
    with served(app) as (server, port, thread):
        streams = [Browser(port).login("super").stream("/live/board/stream") for _ in range(3)]
        assert all(s.events(3, until="board") for s in streams)
        started = time.monotonic()
        server.should_exit = True  # what the worker's signal handler does
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - started < 3  # not the 10 s graceful timeout
        assert all(s.ended_within(1) for s in streams)


def test_rings_at_agrees_with_ringing_for(data, db):
    """The poller matches all managers in Python with the rule ringing_for applies in SQL."""
    calls = [_ringing(db, data, data.anna), _ringing(db, data, data.boris),
             _ringing(db, data, None, ringing_endpoint="PJSIP/101,PJSIP/102"),
             _ringing(db, data, data.anna, ringing_endpoint="PJSIP/102"),
             _ringing(db, data, None, ringing_endpoint="PJSIP/1010,PJSIP/10")]
    assert calls
    rows = ringing_calls(db)
    for manager in db.query(Manager).all():
        expected = [c.id for c in ringing_for(db, manager)]
        assert [r.id for r in rows if rings_at(r.ringing_endpoint, r.routed_manager_id, manager.id,
                                               manager.endpoint)] == expected, manager.name
