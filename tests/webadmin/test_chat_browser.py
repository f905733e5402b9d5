"""The chats page in Debian's headless Chromium (Playwright), on SQLite and PostgreSQL: a logged-in
manager sees the waiting chat with its source and the pages viewed, the visitor's hostile text is
shown as text (no dialog fires), a later visitor message arrives without a reload, the manager
replies with Enter and the reply is stored once."""

from __future__ import annotations

import datetime as dt

from astertrack.chat import conversations as chats
from astertrack.db.engine import begin_write
from astertrack.db.models import Chat, Manager, PageView, Site, VisitorSession
from astertrack.db.types import utcnow
from astertrack.samples.factories import add_group, add_rule
from tests.webadmin.browser import login
from tests.webadmin.chat_data import HOSTILE

PAGES = ["https://shop.example/sofas", "https://shop.example/sofas/oslo", "https://shop.example/delivery"]


def test_a_manager_answers_a_waiting_chat(live, page, db, data):
    site = db.get(Site, data.site)
    add_rule(db, "chat sales", add_group(db, "chat sales", [db.get(Manager, data.anna)]), site=site)
    at = utcnow() - dt.timedelta(minutes=3)
    for n, url in enumerate(PAGES):
        db.add(PageView(session_id=data.visit, site_id=site.id, client_key=f"p{n}", at=at + dt.timedelta(seconds=n),
                        url=url, title=f"Page {n}"))
    chat, _ = chats.start(db, site, at=at + dt.timedelta(minutes=1), visit=db.get(VisitorSession, data.visit),
                          page_url=PAGES[-1])
    chats.post(db, chat, "visitor", HOSTILE, at=at + dt.timedelta(minutes=1), client_id="v1")
    db.commit()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    login(page, live, "anna")
    assert page.locator("#nav-chats-count").inner_text() == "1"
    page.goto(f"{live}/chats/")
    item = page.locator(f'#chat-list-waiting .chat-item[data-chat-id="{chat.id}"]')
    item.wait_for()
    assert item.locator('[data-f="source"]').inner_text() == "Yandex Direct"
    assert item.locator('[data-f="campaign"]').inner_text() == "winter-sale"
    item.locator("a.chat-open").click()
    page.wait_for_selector("#chat-lines")
    first = page.locator('.chat-line[data-seq="1"] .text')
    assert first.inner_text() == HOSTILE and page.locator("#chat-lines img").count() == 0
    journey = page.locator("#journey .journey-page .url")
    assert journey.all_inner_texts() == PAGES  # the pages viewed, in order

    # the visitor writes again: the page shows it without a reload (the stream's chat event)
    db.commit()
    begin_write(db)
    chats.post(db, db.get(Chat, chat.id), "visitor", "Is it in stock?", at=utcnow(),
               client_id="v2")
    db.commit()
    page.locator('.chat-line[data-seq="2"] .text').wait_for(timeout=5000)
    assert page.locator('.chat-line[data-seq="2"] .text').inner_text() == "Is it in stock?"

    page.fill("#chat-text", "Yes, the Oslo is in stock.")
    page.press("#chat-text", "Enter")
    page.locator('.chat-line[data-author="manager"] .text').wait_for(timeout=5000)
    assert page.locator('.chat-line[data-author="manager"] .text').inner_text() == "Yes, the Oslo is in stock."
    assert page.input_value("#chat-text") == ""
    page.wait_for_timeout(300)
    db.rollback()
    lines = [(m.author, m.kind, m.text) for m in chats.messages(db, chat.id)]
    assert lines == [("visitor", "text", HOSTILE), ("visitor", "text", "Is it in stock?"),
                     ("system", "claimed", None), ("manager", "text", "Yes, the Oslo is in stock.")]
    assert page.locator('.chat-line[data-author="system"] .text').inner_text() == "Anna took the chat"
    assert dialogs == [] and page.errors == []
