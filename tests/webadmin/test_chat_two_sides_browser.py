"""The website chat end to end in two browser contexts (issue #25's must-show), on SQLite and
PostgreSQL: a visitor on a local landing page (the tracker under /ct) and a logged-in manager on
the admin's chats page, both apps served by real uvicorn servers built from the event worker's
pieces, so both sides' streams are answered by their app's stream hub as in production.

The visitor views four pages and writes (hostile markup included); the manager sees the chat
waiting with its source and the pages viewed, opens it and replies; the visitor sees the reply
within a second of its commit; the visitor moves to another page and the conversation is still
there; the visitor's network is cut, a message is typed, the network comes back: the manager
sees that message once, the database holds it once; markup is text on both sides and no dialog
fires."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from astertrack.db.models import Chat, ChatMessage, Manager, PageView, SiteWidget
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_pool,
    add_rule,
    number_range,
    pooled_site,
)
from tests.tracker.conftest import tracker_config
from tests.tracker.test_browser import visitor
from tests.tracker.test_chat_browser import SHADOW, landing, log_texts, wait_text
from tests.tracker.test_chat_browser import served as served_landing
from tests.tracker.test_widget_browser import session_ready, wait_rows, widget_ready
from tests.webadmin.browser import login, open_page
from tests.webadmin.test_journey_browser import journey_ready
from tests.webadmin.test_live_streams import served as served_admin
from tracker import create_app as create_tracker

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = "<img src=x onerror=alert(1)>"
PAGES = ["/?utm_source=yandex", "/sofas", "/delivery", "/contacts"]  # the chat is opened on the last


def _visitor_lines(db) -> list[str]:
    db.rollback()
    return [m.text for m in db.scalars(select(ChatMessage).where(ChatMessage.author == "visitor")
                                       .order_by(ChatMessage.seq))]


def _wait(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_a_visitor_and_a_manager_chat_in_two_browsers(browser, app, data, db, db_url):
    site = pooled_site(db, 2, timezone="UTC")
    pool = add_pool(db, site, "Direct", number_range("+74997410000", 2))
    add_dynamic_source(db, site, "Direct", pool, priority=20,
                       match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    anna = db.get(Manager, data.anna)
    add_rule(db, "chat sales", add_group(db, "chat sales", [anna]), site=site)
    db.add(SiteWidget(site_id=site.id, chat_enabled=True))
    db.commit()
    app.config["CHAT_POLL_SECONDS"] = 0.1
    tracker = create_tracker(tracker_config(db_url, chat_poll_seconds=0.1))

    with served_landing(landing(tracker, site.public_key)) as shop, served_admin(app) as (_, admin_port, _):
        admin = f"http://127.0.0.1:{admin_port}"
        dialogs: list[str] = []
        context = visitor(browser)
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for path in PAGES:
            page.goto(shop + path)
            journey_ready(page)  # the journey script is in: this page's view goes out when it is left
        widget_ready(page)
        page.get_by_role("button", name="Chat").click()
        page.get_by_label("Message").fill(HOSTILE)
        page.get_by_label("Message").press("Enter")
        [chat] = wait_rows(db, Chat, 1)
        # the pages left so far went out as the visitor left them (the last rides on a later heartbeat)
        assert _wait(lambda: len(wait_rows(db, PageView, 3, timeout=0)) >= 3), "the page views were not stored"

        manager_context, manager = open_page(browser)
        manager.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(manager, admin, "anna")
        manager.goto(f"{admin}/chats/")
        item = manager.locator(f'#chat-list-waiting .chat-item[data-chat-id="{chat.id}"]')
        item.wait_for()
        assert item.locator('[data-f="source"]').inner_text() == "Direct"
        item.locator("a.chat-open").click()
        manager.wait_for_selector("#chat-lines")
        assert manager.locator('.chat-line[data-seq="1"] .text').inner_text() == HOSTILE
        assert manager.locator("#chat-lines img").count() == 0
        viewed = manager.locator("#journey .journey-page .url").all_inner_texts()
        assert [url.split("?")[0].removeprefix(shop) for url in viewed][:3] == ["/", "/sofas", "/delivery"]

        manager.fill("#chat-text", "We deliver tomorrow")
        manager.press("#chat-text", "Enter")

        def reply_stored():
            db.rollback()
            return db.scalar(select(ChatMessage).where(ChatMessage.author == "manager"))

        assert _wait(reply_stored), "the reply was not stored"
        committed = time.monotonic()
        wait_text(page, "We deliver tomorrow", timeout=3000)
        assert time.monotonic() - committed < 1.0  # within a second of its commit

        page.goto(f"{shop}/next")  # another page: the conversation is still there
        session_ready(page)
        widget_ready(page)
        wait_text(page, "We deliver tomorrow")
        assert sum(HOSTILE in t for t in log_texts(page)) == 1

        context.set_offline(True)
        page.get_by_label("Message").fill("Typed while offline")
        page.get_by_label("Message").press("Enter")
        time.sleep(1.5)
        assert _visitor_lines(db) == [HOSTILE]
        context.set_offline(False)
        assert _wait(lambda: "Typed while offline" in _visitor_lines(db)), "the offline message never arrived"
        line = manager.locator('.chat-line[data-author="visitor"] .text', has_text="Typed while offline")
        line.wait_for(timeout=5000)
        time.sleep(1.5)  # long enough for a duplicate to show up on either side
        assert line.count() == 1 and _visitor_lines(db) == [HOSTILE, "Typed while offline"]
        assert sum("Typed while offline" in t for t in log_texts(page)) == 1
        assert page.evaluate(f"{SHADOW}.querySelectorAll('img').length") == 0
        assert dialogs == [] and manager.errors == []
        manager_context.close()
        context.close()
