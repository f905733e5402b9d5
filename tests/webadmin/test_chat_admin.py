"""The chats page and its JSON actions with the test client (both databases): who sees which chat,
claiming, replying (a resend stored once), transferring, closing, the away status, the visitor's
text shown as text, and the one-shot stream without the event worker."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from astertrack.chat import conversations as chats
from astertrack.db.models import Chat, ChatMessage, Manager, Site, VisitorSession
from astertrack.db.types import utcnow
from astertrack.samples.factories import add_group, add_rule
from tests.webadmin.chat_data import HOSTILE

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@pytest.fixture
def talk(db, data):
    """A chat from the Yandex visit offered to Anna only (the site's rule has her alone), with the
    visitor's hostile message; and a chat started while nobody was available (offered to nobody:
    every manager sees it)."""
    site = db.get(Site, data.site)
    rule = add_rule(db, "chat sales", add_group(db, "chat sales", [db.get(Manager, data.anna)]), site=site)
    db.commit()
    at = utcnow() - dt.timedelta(seconds=30)
    offered, _ = chats.start(db, site, at=at, visit=db.get(VisitorSession, data.visit),
                             page_url="https://shop.example/sofas")
    chats.post(db, offered, "visitor", HOSTILE, at=at, client_id="v1")
    db.commit()
    db.delete(rule)
    managers = [db.get(Manager, data.anna), db.get(Manager, data.boris)]
    for manager in managers:
        manager.paused = True
    db.commit()
    nobody, _ = chats.start(db, site, at=at)
    chats.post(db, nobody, "visitor", "anyone there?", at=at, client_id="v1")
    for manager in managers:
        manager.paused = False
    db.commit()
    db.add(Manager(name="Gone", endpoint="PJSIP/199", enabled=True, archived_at=utcnow()))
    db.commit()
    assert offered.offered_to == [data.anna] and nobody.offered_to == []
    return SimpleNamespace(offered=offered.id, nobody=nobody.id)


def login(client, user):
    page = client.get("/auth/login").get_data(as_text=True)
    client.post("/auth/login", data={"login": user, "password": "correct-horse-1",
                                     "csrf_token": CSRF.search(page).group(1)})
    return client


def act(client, path, **fields):
    token = CSRF.search(client.get("/chats/").get_data(as_text=True)).group(1)
    response = client.post(path, data={**fields, "csrf_token": token})
    return response.status_code, response.get_json()


def events(response) -> list[tuple[str, dict]]:
    text = response.get_data(as_text=True)
    return [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n", text)]


@pytest.fixture
def clients(app, data):
    return {user: login(app.test_client(), user) for user in ("anna", "boris", "super")}


def listed(client) -> list[int]:
    page = client.get("/chats/").get_data(as_text=True)
    return sorted(int(i) for i in re.findall(r'<li class="chat-item" data-chat-id="(\d+)"', page) if i != "0")


def test_who_sees_which_chat(app, clients, talk):
    assert listed(clients["anna"]) == sorted([talk.offered, talk.nobody])
    assert listed(clients["boris"]) == [talk.nobody]  # not offered to him
    assert listed(clients["super"]) == sorted([talk.offered, talk.nobody])
    assert clients["boris"].get(f"/chats/?chat={talk.offered}").status_code == 404
    assert clients["boris"].get(f"/chats/{talk.offered}/messages").status_code == 404
    assert clients["anna"].get(f"/chats/{talk.offered}/messages").status_code == 200
    assert app.test_client().get("/chats/").status_code == 302  # to the login page
    nav = clients["boris"].get("/calls/").get_data(as_text=True)
    assert re.search(r'id="nav-chats-count"[^>]*>1<', nav)  # the chat offered to nobody
    nav = clients["anna"].get("/calls/").get_data(as_text=True)
    assert re.search(r'id="nav-chats-count"[^>]*>2<', nav)


def test_a_manager_cannot_act_on_a_chat_not_offered_to_them(clients, talk, db):
    boris = clients["boris"]
    for action, fields in (("claim", {}), ("reply", {"text": "mine now"}), ("close", {}), ("typing", {}),
                           ("read", {"seq": "1"}), ("transfer", {"manager_id": "1"})):
        status, _ = act(boris, f"/chats/{talk.offered}/{action}", **fields)
        assert status == 404, action
    db.rollback()  # a fresh snapshot
    chat = db.get(Chat, talk.offered)
    assert (chat.manager_id, chat.status, chat.seq) == (None, "waiting", 1)


def test_claim_reply_resend_transfer_close(clients, talk, data, db):
    anna, boris = clients["anna"], clients["boris"]
    status, body = act(anna, f"/chats/{talk.offered}/claim")
    assert status == 200 and body["chat"]["manager_id"] == data.anna and body["chat"]["section"] == "mine"
    status, body = act(anna, f"/chats/{talk.offered}/reply", text="Hello! Which sofa?", client_id="r-1")
    assert status == 200 and body["created"] and body["message"]["text"] == "Hello! Which sofa?"
    status, again = act(anna, f"/chats/{talk.offered}/reply", text="Hello! Which sofa?", client_id="r-1")
    assert status == 200 and not again["created"] and again["message"]["seq"] == body["message"]["seq"]
    db.rollback()  # a fresh snapshot
    assert [(m.author, m.kind) for m in chats.messages(db, talk.offered)] == [
        ("visitor", "text"), ("system", "claimed"), ("manager", "text")]

    # the chat nobody was offered: Anna takes it, Boris may not claim it from her
    assert act(anna, f"/chats/{talk.nobody}/claim")[0] == 200
    status, body = act(boris, f"/chats/{talk.nobody}/claim")
    assert status == 404  # it is Anna's now: Boris no longer sees it
    assert act(boris, f"/chats/{talk.nobody}/transfer", manager_id=str(data.boris))[0] == 404

    status, body = act(anna, f"/chats/{talk.offered}/reply", text="x" * 2001, client_id="r-2")
    assert status == 400 and body["field"] == "text"
    status, body = act(anna, f"/chats/{talk.offered}/reply", text="hi", client_id="../etc")
    assert status == 400 and body["field"] == "client_id"

    # an archived manager is no target; Boris is
    archived = db.scalar(select(Manager).where(Manager.name == "Gone"))
    assert act(anna, f"/chats/{talk.offered}/transfer", manager_id=str(archived.id))[0] == 400
    status, body = act(anna, f"/chats/{talk.offered}/transfer", manager_id=str(data.boris))
    assert status == 200 and body["chat"]["manager_id"] == data.boris
    assert act(anna, f"/chats/{talk.offered}/reply", text="still me?")[0] == 404  # gone from her view
    assert listed(boris) == [talk.offered]
    status, body = act(boris, f"/chats/{talk.offered}/close")
    assert status == 200 and body["chat"]["status"] == "closed"
    assert act(boris, f"/chats/{talk.offered}/reply", text="after close")[0] == 409
    db.rollback()  # a fresh snapshot
    assert [m.kind for m in chats.messages(db, talk.offered)][-2:] == ["transferred", "closed"]
    assert db.scalar(select(ChatMessage.text).where(ChatMessage.chat_id == talk.offered,
                                                    ChatMessage.author == "manager")) == "Hello! Which sofa?"


def test_the_supervisor_transfers_but_a_user_without_a_manager_cannot_reply(clients, talk, data, db):
    sup = clients["super"]
    assert act(sup, f"/chats/{talk.offered}/reply", text="hi")[0] == 409
    status, body = act(sup, f"/chats/{talk.offered}/transfer", manager_id=str(data.boris))
    assert status == 200 and body["chat"]["manager"] == "Boris"
    page = sup.get(f"/chats/?chat={talk.offered}").get_data(as_text=True)
    assert "transferred to Boris" in page or "given to Boris" in page


def test_without_the_csrf_token_nothing_changes(clients, talk, db):
    response = clients["anna"].post(f"/chats/{talk.offered}/claim", data={})
    assert response.status_code == 400
    db.rollback()  # a fresh snapshot
    assert db.get(Chat, talk.offered).manager_id is None


def test_away_status(clients, data, db):
    assert act(clients["anna"], "/chats/away", away="y") == (200, {"ok": True, "away": True})
    db.rollback()  # a fresh snapshot
    assert db.get(Manager, data.anna).chat_away is True
    assert 'id="chat-away" class="away"' in clients["anna"].get("/chats/").get_data(as_text=True)
    assert act(clients["anna"], "/chats/away") == (200, {"ok": True, "away": False})
    db.rollback()  # a fresh snapshot
    assert db.get(Manager, data.anna).chat_away is False
    assert act(clients["super"], "/chats/away", away="y")[0] == 404  # no manager of their own


def test_the_visitors_text_is_shown_as_text(clients, talk, db):
    page = clients["anna"].get(f"/chats/?chat={talk.offered}").get_data(as_text=True)
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert re.search(r'data-author="visitor" data-seq="1">.*?<span class="text">&lt;img', page, re.S)
    # the list's source, campaign and the visit's own pages, on the page and in its initial JSON
    assert "Yandex Direct" in page and "winter-sale" in page and "buy sofa" in page
    messages = clients["anna"].get(f"/chats/{talk.offered}/messages").get_json()["messages"]
    assert messages[0]["text"] == HOSTILE  # JSON carries the text; the script sets it with textContent


def test_system_lines_in_russian(clients, talk):
    anna = clients["anna"]
    token = CSRF.search(anna.get("/calls/").get_data(as_text=True)).group(1)
    anna.post("/auth/locale", data={"locale": "ru", "next": "/chats/", "csrf_token": token})
    act(anna, f"/chats/{talk.offered}/claim")
    page = anna.get(f"/chats/?chat={talk.offered}").get_data(as_text=True)
    assert "Anna взял(а) чат" in page and "Чаты" in page


def test_the_one_shot_stream(clients, talk, data):
    found = events(clients["anna"].get("/chats/stream"))
    assert sorted(c["id"] for name, c in found if name == "chat") == sorted([talk.offered, talk.nobody])
    offered = next(c for _, c in found if c["id"] == talk.offered)
    assert offered["source"] == "Yandex Direct" and offered["section"] == "waiting" and offered["notify_in"] == 0
    assert [c["id"] for _, c in events(clients["boris"].get("/chats/stream"))] == [talk.nobody]
    response = clients["boris"].get("/chats/stream")
    assert response.mimetype == "text/event-stream" and response.headers["Cache-Control"] == "no-cache"
