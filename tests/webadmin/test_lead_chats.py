"""The conversation kept with the lead: the lead card shows its website chats line by line, the
visitor's and managers' text as text, the system lines worded in the reader's language."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from astertrack.chat import conversations as chats
from astertrack.chat.views import chats_of_lead
from astertrack.db.models import Enquiry, Site
from astertrack.db.types import utcnow
from tests.webadmin.chat_data import HOSTILE, make_chats

LINES = {
    "en": ["Anna took the chat", "transferred from Anna to Boris", "left a phone +79161234567, name Ivan",
           "Boris closed the chat"],
    "ru": ["Anna взял(а) чат", "передан от Anna к Boris", "оставил(а) телефон +79161234567, имя Ivan",
           "Boris закрыл(а) чат"],
}


@pytest.fixture
def talk(db, data):
    return make_chats(db, data)


def lines(page: str) -> list[tuple[str, str]]:
    """(author, the line's text without tags) of every chat line on the card."""
    found = re.findall(r'<li class="chat-line" data-author="(\w+)">(.*?)</li>', page, re.S)
    return [(author, re.sub(r"<[^>]+>", "", text).split(" · ", 1)[1].strip()) for author, text in found]


@pytest.mark.parametrize("locale", ["en", "ru"])
def test_the_card_shows_the_chat_in_the_readers_language(client, auth, talk, locale):
    auth.login()
    auth.post("/auth/locale", {"locale": locale, "next": "/leads/"})
    page = client.get(f"/leads/{talk.ivan_lead}").get_data(as_text=True)
    visitor = "Visitor" if locale == "en" else "Посетитель"
    title = "Website chat" if locale == "en" else "Чат на сайте"
    assert title in page
    assert lines(page) == [
        ("visitor", f"{visitor}: &lt;img src=x onerror=alert(1)&gt;"), ("system", LINES[locale][0]),
        ("manager", "Anna: Hello! Which sofa?"), ("system", LINES[locale][1]), ("system", LINES[locale][2]),
        ("system", LINES[locale][3])]
    assert HOSTILE not in page  # shown as text, never as an element


def test_a_visitors_name_and_a_chat_nobody_answered(client, auth, db, data):
    site = db.get(Site, data.site)
    at = utcnow() - dt.timedelta(minutes=5)
    chat, _ = chats.start(db, site, at=at)
    chats.post(db, chat, "visitor", "hello?", at=at)
    assert chats.sweep(db, at + dt.timedelta(minutes=2)) == 1  # nobody answered within the site's wait
    chats.give_contact(db, chat, phone="+79035550101", name='<b onmouseover="x()">Olga</b>', at=at)
    chats.close(db, chat, by="system", at=at + dt.timedelta(minutes=3))
    db.commit()
    lead_id = db.get(Enquiry, chat.enquiry_id).lead_id
    assert [c.id for c, _lines in chats_of_lead(db, lead_id)] == [chat.id]
    assert [m.kind for m in chats_of_lead(db, lead_id)[0][1]] == ["text", "asked_phone", "contact", "closed"]
    auth.login()
    page = client.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert '<b onmouseover' not in page
    assert lines(page) == [
        ("visitor", "Visitor: hello?"), ("system", "asked for a phone: nobody answered in time"),
        ("system", "left a phone +79035550101, name &lt;b onmouseover=&#34;x()&#34;&gt;Olga&lt;/b&gt;"),
        ("system", "closed: nobody wrote for a day")]


def test_a_lead_without_chats_has_no_chat_section(client, auth, db, data):
    lead_id = db.scalar(select(Enquiry.lead_id).where(Enquiry.call_id == data.answered))
    assert chats_of_lead(db, lead_id) == []
    auth.login()
    page = client.get(f"/leads/{lead_id}").get_data(as_text=True)
    assert 'id="lead-chats"' not in page and "Website chat" not in page
