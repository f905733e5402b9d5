"""The chat core on both databases: who is offered a chat, numbering and resends, claims and
transfers, asking for a phone when nobody answers, the chat's enquiry in the customer's lead."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from astertrack.chat import conversations as chats
from astertrack.chat.conversations import ChatError
from astertrack.chat.offers import notified_at, offer_order
from astertrack.chat.views import changed_since, message_view, messages_after, state_view
from astertrack.db.engine import begin_write
from astertrack.db.models import Call, Chat, ChatMessage, Enquiry, Lead, SiteWidget, VisitorSession
from astertrack.leads.enquiries import record_enquiry
from astertrack.samples.factories import add_group, add_managers, add_rule, add_site, add_static_source

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
CALLER = "+79161234567"


@pytest.fixture
def shop(session):
    site = add_site(session, timezone="UTC")
    ads = add_static_source(session, site, "Yandex Direct")
    anna, boris, vera = add_managers(session, ["101", "102", "103"])
    add_rule(session, "all", add_group(session, "sales", [anna, boris, vera]), site=site, strategy="round_robin")
    session.add(SiteWidget(site_id=site.id, chat_enabled=True, chat_wait_seconds=60))
    visit = VisitorSession(site_id=site.id, visitor_id="v-1", first_seen=T0, last_seen=T0, source_id=ads.id,
                           utm_source="yandex", utm_campaign="windows")
    session.add(visit)
    session.commit()
    return site, ads, (anna, boris, vera), visit


def test_a_chat_is_offered_to_available_managers_free_phones_first(session, shop):
    site, _, (anna, boris, vera), visit = shop
    boris.device_state = "INUSE"
    vera.chat_away = True
    session.commit()
    assert offer_order(session, site, visit, T0) == [anna.id, boris.id]
    chat, token = chats.start(session, site, at=T0, visit=visit)
    session.commit()
    assert chat.status == "waiting" and chat.offered_to == [anna.id, boris.id]
    assert notified_at(chat, anna.id) == T0 and notified_at(chat, boris.id) == T0 + dt.timedelta(seconds=20)
    assert notified_at(chat, vera.id) is None
    assert chats.by_token(session, token).id == chat.id and chats.by_token(session, token + "x") is None
    assert token not in (chat.token_hash,)  # only the hash is kept


def test_with_nobody_available_the_chat_asks_for_a_phone_at_once(session, shop):
    site, _, managers, visit = shop
    for m in managers:
        m.paused = True
    session.commit()
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    session.commit()
    assert chat.status == "unanswered"
    [line] = chats.messages(session, chat.id)
    assert (line.author, line.kind, line.meta) == ("system", "asked_phone", {"reason": "nobody_available"})


def test_messages_are_numbered_and_a_resend_is_stored_once(session, shop):
    site, ads, (anna, *_), visit = shop
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    first = chats.post(session, chat, "visitor", "  Сколько стоит окно? ", at=T0, client_id="c-1")
    again = chats.post(session, chat, "visitor", "Сколько стоит окно?", at=T0 + dt.timedelta(seconds=3),
                       client_id="c-1")
    session.commit()
    assert first.created and not again.created and again.message.id == first.message.id
    assert (first.message.seq, first.message.text, chat.seq) == (1, "Сколько стоит окно?", 1)
    enquiry = session.get(Enquiry, chat.enquiry_id)
    assert (enquiry.channel, enquiry.source_id, enquiry.utm_campaign) == ("chat", ads.id, "windows")
    assert session.scalar(select(func.count()).select_from(Enquiry)) == 1

    reply = chats.post(session, chat, "manager", "От 9 900 ₽", at=T0 + dt.timedelta(seconds=30), manager=anna)
    session.commit()
    kinds = [(m.seq, m.author, m.kind) for m in chats.messages(session, chat.id)]
    assert kinds == [(1, "visitor", "text"), (2, "system", "claimed"), (3, "manager", "text")]
    assert (chat.status, chat.manager_id, chat.first_reply_at) == ("active", anna.id, T0 + dt.timedelta(seconds=30))
    assert reply.message.manager_id == anna.id and session.get(Enquiry, chat.enquiry_id).manager_id == anna.id
    assert [m.seq for m in chats.messages(session, chat.id, after=1)] == [2, 3]


@pytest.mark.parametrize("text, field", [("", "text"), ("   ", "text"), ("x" * 2001, "text"), (None, "text"),
                                         ({"a": 1}, "text")])
def test_bad_messages_are_refused_and_store_nothing(session, shop, text, field):
    site, _, _, visit = shop
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    session.commit()
    with pytest.raises(ChatError) as refused:
        chats.post(session, chat, "visitor", text, at=T0)
    assert refused.value.field == field
    session.rollback()
    with pytest.raises(ChatError) as refused:
        chats.post(session, chat, "visitor", "hi", at=T0, client_id="../../etc")
    assert refused.value.field == "client_id"
    session.rollback()
    assert chats.messages(session, chat.id) == []


def test_claims_transfers_and_closing(session, shop):
    site, _, (anna, boris, _), visit = shop
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    chats.claim(session, chat, anna, at=T0)
    session.commit()
    with pytest.raises(ChatError, match="another manager"):
        chats.claim(session, chat, boris, at=T0)
    session.rollback()
    chats.transfer(session, chat, boris, by=anna, at=T0 + dt.timedelta(minutes=1))
    chats.close(session, chat, by="manager", manager=boris, at=T0 + dt.timedelta(minutes=2))
    session.commit()
    lines = chats.messages(session, chat.id)
    assert [m.kind for m in lines] == ["claimed", "transferred", "closed"]
    assert lines[1].meta == {"to_id": boris.id, "to": boris.name, "from_id": anna.id, "from": anna.name,
                             "by_id": anna.id}
    assert (chat.status, chat.manager_id, chat.closed_by) == ("closed", boris.id, "manager")
    with pytest.raises(ChatError, match="closed"):
        chats.post(session, chat, "visitor", "hello?", at=T0 + dt.timedelta(minutes=3))


def test_nobody_replying_in_time_asks_for_a_phone_and_the_phone_joins_the_callers_lead(session, shop):
    """A call, then a chat giving the same phone, then a form: one lead, three enquiries, first channel call."""
    site, ads, (anna, *_), visit = shop
    call = Call(site_id=site.id, caller_number=CALLER, started_at=T0 - dt.timedelta(days=1), state="finished",
                outcome="answered", source_id=ads.id)
    session.add(call)
    session.flush()
    record_enquiry(session, site, "call", at=call.started_at, call=call)
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    chats.post(session, chat, "visitor", "Есть кто?", at=T0, client_id="a")
    session.commit()
    assert chats.sweep(session, T0 + dt.timedelta(seconds=59)) == 0
    assert chats.sweep(session, T0 + dt.timedelta(seconds=60)) == 1
    session.commit()
    assert chat.status == "unanswered" and chats.messages(session, chat.id)[-1].kind == "asked_phone"
    with pytest.raises(ChatError):
        chats.give_contact(session, chat, phone="not a phone", at=T0 + dt.timedelta(minutes=2))
    session.rollback()
    chats.give_contact(session, chat, phone="8 916 123-45-67", name="Иван", at=T0 + dt.timedelta(minutes=2))
    record_enquiry(session, site, "form", at=T0 + dt.timedelta(hours=1), phone=CALLER)
    session.commit()
    [lead] = session.scalars(select(Lead).where(Lead.merged_into_id.is_(None))).all()
    channels = session.scalars(select(Enquiry.channel).where(Enquiry.lead_id == lead.id).order_by(Enquiry.at)).all()
    assert channels == ["call", "chat", "form"]
    assert (lead.first_channel, lead.phone, chat.phone) == ("call", CALLER, CALLER)
    # a manager's late reply brings it back
    chats.post(session, chat, "manager", "Извините, я здесь", at=T0 + dt.timedelta(minutes=3), manager=anna)
    session.commit()
    assert chat.status == "active"


def test_an_answered_chat_is_not_asked_and_an_idle_one_closes(session, shop):
    site, _, (anna, *_), visit = shop
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    chats.post(session, chat, "manager", "Здравствуйте!", at=T0 + dt.timedelta(seconds=10), manager=anna)
    session.commit()
    assert chats.sweep(session, T0 + dt.timedelta(minutes=5)) == 0
    assert chats.sweep(session, T0 + dt.timedelta(hours=25)) == 1
    session.commit()
    assert (chat.status, chat.closed_by) == ("closed", "system")


def test_read_marks_move_forward_and_typing_writes_sparingly(session, shop):
    site, _, (anna, *_), visit = shop
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    for i in range(3):
        chats.post(session, chat, "visitor", f"m{i}", at=T0, client_id=f"c{i}")
    session.commit()
    chats.mark_read(session, chat, "manager", 2, at=T0)
    chats.mark_read(session, chat, "manager", 1, at=T0)
    chats.mark_read(session, chat, "manager", 99, at=T0)
    session.commit()
    assert chat.manager_read_seq == 3
    rev = chat.rev
    chats.typing(session, chat, "manager", at=T0)
    chats.typing(session, chat, "manager", at=T0 + dt.timedelta(seconds=1))  # most of the mark is left: no write
    session.commit()
    assert chat.rev == rev + 1 and chat.manager_typing_until == T0 + dt.timedelta(seconds=6)
    chats.typing(session, chat, "manager", at=T0 + dt.timedelta(seconds=4))
    session.commit()
    assert chat.rev == rev + 2


def test_what_each_side_sees_and_what_the_streams_read(session, shop):
    site, _, (anna, *_), visit = shop
    chat, _ = chats.start(session, site, at=T0, visit=visit)
    other, _ = chats.start(session, site, at=T0 - dt.timedelta(hours=1), visit=None)
    other.updated_at = T0 - dt.timedelta(hours=1)
    chats.post(session, chat, "visitor", "<img src=x onerror=alert(1)>", at=T0, client_id="x1")
    chats.post(session, chat, "manager", "ok", at=T0 + dt.timedelta(seconds=5), manager=anna)
    session.commit()
    assert [c.id for c in changed_since(session, T0)] == [chat.id]
    found = messages_after(session, {chat.id: 1, other.id: 0})
    assert [m.seq for m in found[chat.id]] == [2, 3] and found[other.id] == []
    claimed = found[chat.id][0]
    assert message_view(claimed, for_visitor=True)["meta"] == {"manager": anna.name}
    assert "manager_id" not in message_view(claimed, for_visitor=True)
    assert message_view(chats.messages(session, chat.id)[0], for_visitor=False)["text"] == "<img src=x onerror=alert(1)>"
    seen = state_view(chat, anna.name, for_visitor=True)
    assert seen["manager"] == anna.name and "phone" not in seen and "site_id" not in seen


def test_concurrent_senders_get_gapless_numbers_and_a_racing_resend_is_stored_once(session_factory, shop):
    site, _, _, visit = shop
    with session_factory() as s:
        chat, _ = chats.start(s, s.merge(site), at=T0, visit=s.merge(visit))
        s.commit()
        chat_id = chat.id
    errors = []

    def send(prefix: str) -> None:
        try:
            for i in range(15):
                for _ in range(2):  # each message sent twice, as a client resending after a drop
                    with session_factory() as s:
                        begin_write(s)  # SQLite: a writer that reads first takes the write lock first
                        chats.post(s, s.get(Chat, chat_id), "visitor", f"{prefix}{i}", at=T0, client_id=f"{prefix}{i}")
                        s.commit()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(p,)) for p in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with session_factory() as s:
        seqs = s.scalars(select(ChatMessage.seq).where(ChatMessage.chat_id == chat_id).order_by(ChatMessage.seq)).all()
        assert seqs == list(range(1, 31))
        assert s.get(Chat, chat_id).seq == 30
