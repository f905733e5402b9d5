"""The managers' chats stream over real HTTP under uvicorn (the event worker's own pieces, as in
test_live_streams): a visitor's message written through the core reaches the manager it was
offered to within a second, and never a manager it was not offered to."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from astertrack.chat import conversations as chats
from astertrack.db.engine import begin_write
from astertrack.db.models import Manager, Site, VisitorSession
from astertrack.db.types import utcnow
from astertrack.samples.factories import add_group, add_rule
from tests.webadmin.live_client import Browser
from tests.webadmin.test_live_streams import served


@pytest.fixture
def server(app, data):
    app.config["CHAT_POLL_SECONDS"] = 0.25
    with served(app) as (server, port, _):
        yield server, port


def test_a_visitor_message_reaches_the_offered_manager_only(server, data, db):
    _, port = server
    site = db.get(Site, data.site)
    add_rule(db, "chat sales", add_group(db, "chat sales", [db.get(Manager, data.anna)]), site=site)
    db.commit()
    anna = Browser(port).login("anna").stream("/chats/stream")
    boris = Browser(port).login("boris").stream("/chats/stream")
    supervisor = Browser(port).login("super").stream("/chats/stream")
    try:
        assert anna.status == boris.status == 200
        assert anna.events(0.6) == [] and boris.events(0.1) == []
        now = utcnow()
        chat, _ = chats.start(db, site, at=now, visit=db.get(VisitorSession, data.visit))
        db.commit()
        assert [name for name, _ in anna.events(2, until="chat")] == ["chat"]
        started = time.monotonic()
        chats.post(db, chat, "visitor", "<b>Is the sofa in stock?</b>", at=utcnow(), client_id="v1")
        db.commit()
        found = anna.events(1.0, until="message")
        elapsed = time.monotonic() - started
        messages = [body for name, body in found if name == "message"]
        assert elapsed < 1.0 and [(m["chat_id"], m["seq"], m["text"]) for m in messages] == [
            (chat.id, 1, "<b>Is the sofa in stock?</b>")]
        summary = [body for name, body in found if name == "chat"][-1]
        assert summary["source"] == "Yandex Direct" and summary["section"] == "waiting"
        assert summary["notify_in"] == 0  # the first (only) one offered: notified at once
        assert "chat" in [name for name, _ in supervisor.events(2, until="message")]  # staff see every chat
        assert boris.events(1.0) == []  # not offered to him: nothing at all
        # Anna takes it: the list moves it to her chats; sent once, by its number
        chats.claim(db, chat, db.get(Manager, data.anna), at=utcnow() + dt.timedelta(seconds=1))
        db.commit()
        found = anna.events(2, until="chat")
        assert [body["seq"] for name, body in found if name == "message"] == [2]  # the "took the chat" line
        assert [body["section"] for name, body in found if name == "chat"][-1] == "mine"
        assert anna.events(0.8) == []  # nothing twice
        assert boris.events(0.2) == []
    finally:
        for stream in (anna, boris, supervisor):
            stream.close()


def test_a_chat_taken_by_another_leaves_the_list(server, data, db):
    """Offered to nobody (everybody sees it); Boris takes it: Anna gets its last summary, not visible."""
    _, port = server
    site = db.get(Site, data.site)
    anna = Browser(port).login("anna").stream("/chats/stream")
    try:
        db.commit()
        begin_write(db)  # SQLite: the write lock before this transaction's first read
        managers = [db.get(Manager, data.anna), db.get(Manager, data.boris)]
        for manager in managers:
            manager.paused = True
        db.commit()
        chat, _ = chats.start(db, site, at=utcnow())
        for manager in managers:
            manager.paused = False
        db.commit()
        assert [body["visible"] for name, body in anna.events(2, until="chat") if name == "chat"] == [True]
        chats.claim(db, chat, db.get(Manager, data.boris), at=utcnow())
        db.commit()
        found = [body for name, body in anna.events(2, until="chat") if name == "chat"]
        assert [(c["id"], c["visible"]) for c in found] == [(chat.id, False)]
        chats.post(db, chat, "manager", "Boris here", at=utcnow(), manager=db.get(Manager, data.boris))
        db.commit()
        assert anna.events(1.0) == []  # his conversation is not hers to read
    finally:
        anna.close()
