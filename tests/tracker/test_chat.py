"""The website chat's visitor endpoints over HTTP (tracker/chat.py, docs/widget.md "Chat"), on both
databases: a chat started with its first message, messages numbered and a resend stored once, the
history after a number, read and typing marks, the phone asked for, the close (a closed chat
refuses messages); the limits (size, per-chat and per-address budgets, body cap), hostile text kept
as text, another site's token and an unknown one the same 404; the chat only where it is on.

The stream runs under a real uvicorn server built from the event worker's own pieces (the admin's
stream tests' ``served``): a manager's reply written through the core reaches the visitor's open
stream within a second, and a stream reopened with ``Last-Event-ID`` resumes without repeating."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import func, select

from astertrack.chat import conversations as chats
from astertrack.db.models import Chat, ChatMessage, Enquiry, Manager, SiteWidget, VisitorSession
from astertrack.db.types import utcnow
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_managers,
    add_pool,
    add_rule,
    number_range,
    pooled_site,
)
from tests.tracker.conftest import BROWSER_ORIGIN, post, serve
from tests.webadmin.live_client import Stream
from tests.webadmin.test_live_streams import served

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def shop(session):
    """Factory: a site with a Direct source (utm_source=yandex), a rule with one free manager, and
    the widget's chat on (unless ``chat=False``)."""
    count = [0]

    def build(chat: bool = True, **widget):
        n = count[0] = count[0] + 1
        site = pooled_site(session, 2, timezone="UTC")
        pool = add_pool(session, site, "Direct", number_range(f"+7499730{n}000", 2))
        source = add_dynamic_source(session, site, "Direct", pool, priority=20,
                                    match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
        managers = add_managers(session, [f"4{n}1"], device_state="NOT_INUSE")
        add_rule(session, f"sales {n}", add_group(session, f"sales {n}", managers), site=site)
        session.add(SiteWidget(site_id=site.id, chat_enabled=chat, **widget))
        session.commit()
        return site, source, managers[0]

    return build


def visit(url, site) -> str:
    status, body, _ = post(f"{url}/v/start", {"k": site.public_key, "visitor_id": "v1", "utm_source": "yandex",
                                              "landing_page": "http://127.0.0.1/?utm_source=yandex"})
    assert status == 200
    return body["sid"]


def chat_post(url, site, action, **body):
    return post(f"{url}/v/chat/{action}", {"k": site.public_key, **body})


def get_json(url, path, headers=None):
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url}{path}", headers={"Origin": BROWSER_ORIGIN, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def test_a_chat_from_start_to_close(session, tracker_app, shop):
    site, source, anna = shop()
    with serve(tracker_app()) as url:
        sid = visit(url, site)
        status, started, headers = chat_post(url, site, "start", sid=sid, text="  Сколько стоит окно? ",
                                             client_id="c-1", lang="ru", page="http://127.0.0.1/windows")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN
        token = started["token"]
        assert started["state"]["status"] == "waiting" and started["state"]["seq"] == 1
        assert [(m["seq"], m["author"], m["text"], m["client_id"]) for m in started["messages"]] == [
            (1, "visitor", "Сколько стоит окно?", "c-1")]
        assert "id" not in started["state"] and "phone" not in started["state"]  # the visitor's view only
        chat = session.scalar(select(Chat))
        enquiry = session.get(Enquiry, chat.enquiry_id)
        visit_row = session.scalar(select(VisitorSession).where(VisitorSession.public_id == sid))
        assert (enquiry.channel, enquiry.source_id, chat.session_id) == ("chat", source.id, visit_row.id)
        assert chat.token_hash != token and chat.page_url == "http://127.0.0.1/windows"

        status, sent, _ = chat_post(url, site, "send", token=token, text=HOSTILE, client_id="c-2")
        assert status == 200 and (sent["message"]["seq"], sent["message"]["text"]) == (2, HOSTILE)
        status, again, _ = chat_post(url, site, "send", token=token, text=HOSTILE, client_id="c-2")  # a resend
        assert status == 200 and again["message"]["seq"] == 2 and again["state"]["seq"] == 2
        session.rollback()
        assert session.scalar(select(func.count()).select_from(ChatMessage)) == 2

        chats.post(session, session.get(Chat, chat.id), "manager", "От 9 900 ₽", at=utcnow(),
                   manager=session.get(Manager, anna.id))
        session.commit()
        status, history, _ = get_json(url, f"/v/chat/history?k={site.public_key}&token={token}&after=2")
        assert status == 200 and history["state"]["status"] == "active"
        assert [(m["seq"], m["author"], m["kind"]) for m in history["messages"]] == [
            (3, "system", "claimed"), (4, "manager", "text")]
        assert history["messages"][0]["meta"] == {"manager": anna.name}  # no manager id for the visitor
        assert "manager_id" not in history["messages"][1]

        status, read, _ = chat_post(url, site, "read", token=token, seq=4)
        assert status == 200 and read["state"]["visitor_read_seq"] == 4
        status, typed, _ = chat_post(url, site, "typing", token=token)
        assert status == 200 and typed["state"]["visitor_typing_until"] is not None
        assert chat_post(url, site, "contact", token=token, phone="12")[0] == 400
        status, given, _ = chat_post(url, site, "contact", token=token, phone="+7 916 123-45-67", name=HOSTILE)
        assert status == 200 and given["state"]["phone_given"] is True
        session.rollback()
        assert (session.get(Chat, chat.id).phone, session.get(Chat, chat.id).name) == ("+79161234567", HOSTILE)

        status, closed, _ = chat_post(url, site, "close", token=token)
        assert status == 200 and closed["state"]["status"] == "closed"
        status, refused, _ = chat_post(url, site, "send", token=token, text="ещё вопрос", client_id="c-9")
        assert (status, refused) == (409, {"error": "the chat is closed", "closed": True})
        assert chat_post(url, site, "send", token=token, text=HOSTILE, client_id="c-2")[0] == 200  # a late resend


def test_a_start_sent_again_is_the_same_chat(session, tracker_app, shop):
    site, _, _ = shop()
    with serve(tracker_app()) as url:
        sid = visit(url, site)
        first = chat_post(url, site, "start", sid=sid, text="Здравствуйте", client_id="s-1")[1]
        status, second, _ = chat_post(url, site, "start", sid=sid, text="Здравствуйте", client_id="s-1")
        assert status == 200 and second["token"] != first["token"]  # the lost answer's token is replaced
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Chat)) == 1
        assert session.scalar(select(func.count()).select_from(ChatMessage)) == 1
        assert chat_post(url, site, "send", token=second["token"], text="и ещё", client_id="s-2")[0] == 200


def test_limits_and_hostile_input(session, tracker_app, shop):
    site, _, _ = shop()
    with serve(tracker_app(rate_limit_per_minute=1000)) as url:
        status, body, _ = chat_post(url, site, "start", text="x" * 2001, client_id="a")
        assert (status, body["error"]) == (400, "field 'text': a message is at most 2000 characters")
        assert chat_post(url, site, "start", text="   ", client_id="a")[0] == 400
        assert chat_post(url, site, "start", text=["list"], client_id="a")[0] == 400
        assert chat_post(url, site, "start", text="hi", client_id="<script>")[0] == 400
        assert post(f"{url}/v/chat/start", None, raw=b'{"k": "' + site.public_key.encode() + b'", "text": "'
                    + b"y" * 20000 + b'"}')[0] == 413
        assert post(f"{url}/v/chat/start", None, raw=b"not json")[0] == 400
        assert post(f"{url}/v/chat/start", {"k": site.public_key, "text": "from elsewhere"},
                    headers={"Origin": "https://evil.example"})[0] == 403
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Chat)) == 0  # nothing stored by a refusal

        status, started, _ = chat_post(url, site, "start", text=HOSTILE, client_id="m0")
        token = started["token"]
        assert started["messages"][-1]["text"] == HOSTILE  # stored and sent as the text it is
        for i in range(1, 20):
            assert chat_post(url, site, "send", token=token, text=f"m{i}", client_id=f"m{i}")[0] == 200
        status, body, headers = chat_post(url, site, "send", token=token, text="one too many", client_id="m20")
        assert status == 429 and "20 a minute" in body["error"] and int(headers["Retry-After"]) > 0
        for i in range(4):
            assert chat_post(url, site, "start", text="again", client_id=f"n{i}")[0] == 200
        status, body, headers = chat_post(url, site, "start", text="the sixth", client_id="n5")
        assert status == 429 and "new chats" in body["error"] and headers["Retry-After"]


def test_another_sites_token_or_an_unknown_one_is_the_same_404(session, tracker_app, shop):
    site, _, _ = shop()
    other, _, _ = shop()
    off, _, _ = shop(chat=False, popup_enabled=True)
    with serve(tracker_app()) as url:
        token = chat_post(url, site, "start", text="мой вопрос", client_id="c")[1]["token"]
        for key, tok in ((other.public_key, token), (site.public_key, token + "x"), (site.public_key, "")):
            status, body, _ = post(f"{url}/v/chat/send", {"k": key, "token": tok, "text": "hi", "client_id": "z"})
            assert (status, body) == (404, {"error": "no such chat"})
            status, body, _ = get_json(url, f"/v/chat/history?k={key}&token={tok}")
            assert (status, body) == (404, {"error": "no such chat"})
            assert get_json(url, f"/v/chat/stream?k={key}&token={tok}")[0] == 404
        status, body, _ = chat_post(url, off, "start", text="hi", client_id="c")
        assert (status, body) == (404, {"error": "the chat is off on this site"})
        assert get_json(url, f"/v/chat/history?k={site.public_key}&token={token}&after=-1")[0] == 400
        session.rollback()
        assert [m.text for m in session.scalars(select(ChatMessage))] == ["мой вопрос"]


def test_without_the_event_worker_the_stream_is_one_shot(session, tracker_app, shop):
    site, _, _ = shop()
    client = tracker_app().test_client()
    token = client.post("/v/chat/start", data=f'{{"k":"{site.public_key}","text":"a","client_id":"c1"}}',
                        headers={"Origin": BROWSER_ORIGIN}).get_json()["token"]
    client.post("/v/chat/send", data=f'{{"k":"{site.public_key}","token":"{token}","text":"b","client_id":"c2"}}')
    answer = client.get(f"/v/chat/stream?k={site.public_key}&token={token}&after=0",
                        headers={"Origin": BROWSER_ORIGIN, "Last-Event-ID": "1"})
    body = answer.get_data(as_text=True)
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    assert answer.headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN
    assert body.startswith("retry: 1000\n\n") and "id: 2\nevent: message\n" in body and "id: 1\n" not in body
    assert "event: state\n" in body


def test_the_sweep_asks_for_a_phone_when_nobody_answers(session, tracker_app, shop):
    site, _, _ = shop(chat_wait_seconds=30)
    app = tracker_app()
    maintenance = app.extensions["astertrack_tracker"]["maintenance"]
    woken = []
    maintenance.on_chat_change = lambda: woken.append(1)
    client = app.test_client()
    token = client.post("/v/chat/start", data=f'{{"k":"{site.public_key}","text":"a","client_id":"c1"}}'
                        ).get_json()["token"]
    assert maintenance.sweep_chats() == 0
    chat = session.scalar(select(Chat))
    chat.created_at -= dt.timedelta(seconds=31)
    session.commit()
    assert maintenance.sweep_chats() == 1 and woken == [1]
    state = client.get(f"/v/chat/history?k={site.public_key}&token={token}").get_json()
    assert state["state"]["status"] == "unanswered" and state["messages"][-1]["kind"] == "asked_phone"


# ---- the stream over real HTTP, in the event loop

def open_stream(port: int, path: str, last_event_id: int | None = None) -> Stream:
    # live_client.Stream sends a cookie header; the visitor's stream has none, so the slot carries
    # the headers a browser's EventSource sends instead
    extra = "x=1\r\nOrigin: " + BROWSER_ORIGIN + (f"\r\nLast-Event-ID: {last_event_id}" if last_event_id else "")
    return Stream(port, path, extra)


def test_a_managers_reply_reaches_the_open_stream_within_a_second(session, tracker_app, shop):
    site, _, anna = shop()
    app = tracker_app(chat_poll_seconds=0.1)
    with served(app) as (_server, port, _):
        url = f"http://127.0.0.1:{port}"
        started = chat_post(url, site, "start", text="Есть доставка?", client_id="c1")[1]
        token = started["token"]
        path = f"/v/chat/stream?k={site.public_key}&token={token}&after=0"
        stream = open_stream(port, path)
        try:
            assert stream.status == 200 and stream.headers["access-control-allow-origin"] == BROWSER_ORIGIN
            first = stream.events(3, until="state")
            assert [(e, d.get("seq")) for e, d in first] == [("message", 1), ("state", 1)]
            chat = session.scalar(select(Chat))
            replies = []
            for text in ("Да, по городу бесплатно", HOSTILE):
                sent_at = time.monotonic()
                chats.post(session, chat, "manager", text, at=utcnow(), manager=session.get(Manager, anna.id))
                session.commit()
                events = stream.events(2, until="state")
                assert time.monotonic() - sent_at < 1.0, events
                replies += [d for e, d in events if e == "message" and d["author"] == "manager"]
            assert [r["text"] for r in replies] == ["Да, по городу бесплатно", HOSTILE]
            assert stream.events(0.5) == []  # nothing changed, nothing sent

            # the visitor's own message through the API: this process's hub is woken at once
            chat_post(url, site, "send", token=token, text="Спасибо", client_id="c2")
            mine = [d for e, d in stream.events(1, until="state") if e == "message"]
            assert [(m["seq"], m["client_id"]) for m in mine] == [(5, "c2")]
        finally:
            stream.close()

        resumed = open_stream(port, path, last_event_id=3)  # EventSource's reconnect after number 3
        try:
            events = resumed.events(3, until="state")
            assert [d["seq"] for e, d in events if e == "message"] == [4, 5]
            chats.post(session, chat, "manager", "Ждём вас", at=utcnow(), manager=session.get(Manager, anna.id))
            session.commit()
            later = [d["seq"] for e, d in resumed.events(2, until="state") if e == "message"]
            assert later == [6]  # each message once
        finally:
            resumed.close()
        assert open_stream(port, f"/v/chat/stream?k={site.public_key}&token=nope").status == 404
