"""The chat's webhooks on both databases: chat.started with the visit's attribution, chat.message
for each message a person wrote (never a system line), chat.closed with what the chat left; each
once per occurrence, each body the documented one."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.chat import conversations as chats
from astertrack.db.models import Enquiry, SiteWidget, VisitorSession
from astertrack.integrations.events import CHAT_EVENTS, EVENTS
from astertrack.integrations.webhooks import LOOKBACK
from astertrack.samples.factories import add_group, add_managers, add_rule, add_site, add_static_source
from tests.ops.test_webhook_events import check_body, outbox, pass_, queued, subscribe

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def shop(session):
    site = add_site(session, timezone="UTC")
    ads = add_static_source(session, site, "Yandex Direct")
    anna, boris = add_managers(session, ["101", "102"], names=["Анна", "Борис"])
    add_rule(session, "all", add_group(session, "sales", [anna, boris]), site=site)
    session.add(SiteWidget(site_id=site.id, chat_enabled=True))
    visit = VisitorSession(site_id=site.id, visitor_id="v-1", first_seen=T0, last_seen=T0, source_id=ads.id,
                           utm_source="yandex", utm_medium="cpc", utm_campaign="windows", keyword="окна")
    session.add(visit)
    session.commit()
    return site, (anna, boris), visit


def test_a_chat_is_announced_once_per_start_message_and_close(session, shop):
    site, (anna, boris), visit = shop
    subscribe(session, "https://crm.example/hook", CHAT_EVENTS)
    chat, _ = chats.start(session, site, at=T0, visit=visit, page_url="https://shop.example/okna")
    session.commit()
    chat_id = chat.id
    assert pass_(session, T0 + dt.timedelta(seconds=1)) == 1
    assert pass_(session, T0 + dt.timedelta(seconds=1)) == 0

    chats.post(session, chat, "visitor", HOSTILE, at=T0 + dt.timedelta(seconds=5), client_id="c1")
    chats.post(session, chat, "visitor", HOSTILE, at=T0 + dt.timedelta(seconds=6), client_id="c1")  # a resend
    chats.post(session, chat, "manager", "Добрый день", at=T0 + dt.timedelta(seconds=20), manager=anna)
    chats.transfer(session, chat, boris, by=anna, at=T0 + dt.timedelta(seconds=30))
    session.commit()
    now = T0 + dt.timedelta(minutes=1)
    assert pass_(session, now) == 2  # the visitor's and the manager's; not the claim, the transfer
    assert pass_(session, now) == 0

    chats.give_contact(session, chat, phone="8 916 123-45-67", name="Ирина", at=now)
    chats.close(session, chat, by="manager", manager=boris, at=now + dt.timedelta(seconds=5))
    session.commit()
    assert pass_(session, now + dt.timedelta(seconds=10)) == 1
    assert pass_(session, now + dt.timedelta(minutes=10)) == 0

    rows = outbox(session)
    assert [(r.event, r.subject) for r in rows] == [
        ("chat.started", f"chat:{chat_id}"), ("chat.message", f"chat:{chat_id}#1"),
        ("chat.message", f"chat:{chat_id}#3"), ("chat.closed", f"chat:{chat_id}")]
    for row in rows:
        check_body(row)
        assert row.payload["chat_id"] == chat_id and row.payload["site_id"] == site.id
    started, visitor, manager, closed = (r.payload for r in rows)
    assert (started["source"], started["utm_campaign"], started["keyword"], started["session_id"]) == (
        "Yandex Direct", "windows", "окна", visit.id)
    assert (started["page_url"], started["status"]) == ("https://shop.example/okna", "waiting")
    assert visitor == {**visitor, "author": "visitor", "text": HOSTILE, "manager_id": None, "manager": None, "seq": 1}
    assert (manager["author"], manager["manager_id"], manager["manager"], manager["text"]) == (
        "manager", anna.id, "Анна", "Добрый день")
    lead_id = session.get(Enquiry, chat.enquiry_id).lead_id
    assert closed == {**closed, "closed_by": "manager", "manager_id": boris.id, "manager": "Борис", "messages": 2,
                      "phone": "+79161234567", "name": "Ирина", "enquiry_id": chat.enquiry_id, "lead_id": lead_id}
    assert dt.datetime.fromisoformat(closed["first_reply_at"]) == T0 + dt.timedelta(seconds=20)
    assert rows[-1].lead_id == lead_id


def test_a_chat_without_a_visit_or_anyone_to_answer(session, shop):
    site, managers, _ = shop
    for manager in managers:
        manager.paused = True
    session.commit()
    subscribe(session, "https://crm.example/hook", CHAT_EVENTS)
    chat, _ = chats.start(session, site, at=T0)
    session.commit()
    assert pass_(session, T0 + dt.timedelta(seconds=1)) == 1  # the asked-for-a-phone line is no message
    chats.close(session, chat, by="visitor", at=T0 + dt.timedelta(seconds=3))
    session.commit()
    assert pass_(session, T0 + dt.timedelta(seconds=5)) == 1
    started, closed = (r.payload for r in outbox(session))
    assert (started["status"], started["source"], started["utm_source"], started["session_id"]) == (
        "unanswered", None, None, None)
    assert (closed["closed_by"], closed["messages"], closed["lead_id"], closed["first_reply_at"]) == (
        "visitor", 0, None, None)


def test_only_asked_for_events_and_only_the_last_day(session, shop):
    site, (anna, _), visit = shop
    old, _ = chats.start(session, site, at=T0 - LOOKBACK - dt.timedelta(hours=1), visit=visit)
    chats.post(session, old, "visitor", "давно", at=T0 - LOOKBACK - dt.timedelta(hours=1))
    chats.close(session, old, by="system", at=T0 - LOOKBACK - dt.timedelta(minutes=1))
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    chats.post(session, chat, "visitor", "сегодня", at=T0)
    session.commit()
    subscribe(session, "https://crm.example/a", ["chat.message", "call.ringing"])
    assert pass_(session, T0 + dt.timedelta(seconds=1)) == 1
    assert queued(session) == {("chat.message", f"chat:{chat.id}#1")}


def test_the_chat_events_follow_the_lead_events_in_the_list():
    assert EVENTS[-3:] == CHAT_EVENTS == ("chat.started", "chat.message", "chat.closed")
