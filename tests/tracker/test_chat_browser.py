"""The website chat in a real headless Chromium (docs/widget.md "Chat"): a landing page with the
tracker under /ct, both served by a real uvicorn server built from the event worker's own pieces (so
the chat's stream is answered by the tracker's stream hub, as in production).  The visitor opens the
chat and writes; a manager's reply written through the core shows within a second; the conversation
survives navigation; a message typed while the network is cut arrives once and the reply shows once;
hostile text stays text and no dialog fires; out of hours the chat is a form whose lead has channel
``form`` and the visit's source."""

from __future__ import annotations

import datetime as dt
import html
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import select, update
from werkzeug.wrappers import Request, Response

from astertrack.chat import conversations as chats
from astertrack.db.engine import begin_write
from astertrack.db.models import (
    Chat,
    ChatMessage,
    Enquiry,
    Lead,
    Manager,
    RoutingRule,
    SiteWidget,
    VisitorSession,
)
from astertrack.db.types import utcnow
from astertrack.ops.serving import BufferedWsgi, with_native_paths
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_managers,
    add_pool,
    add_rule,
    number_range,
    pooled_site,
)
from astertrack.samples.processes import asgi_in_thread
from tests.tracker.test_browser import visitor
from tests.tracker.test_widget_browser import PAGE, session_ready, wait_rows, widget_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

HOSTILE = "<img src=x onerror=alert(1)>"
SHADOW = "document.querySelector('[data-astertrack-widget]').shadowRoot"


def landing(tracker, key: str):
    """The customer's pages at /, the tracker at /ct (the documented reverse-proxy path), as ASGI."""

    @Request.application
    def pages(request: Request) -> Response:
        return Response(PAGE.replace("{key}", html.escape(key)).replace("{lang}", "en"), mimetype="text/html")

    tracker_asgi = with_native_paths(tracker, BufferedWsgi(tracker, threads=8, max_body=1 << 20, body_timeout=5.0))
    pages_asgi = BufferedWsgi(pages, threads=2, max_body=1 << 20, body_timeout=5.0)

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/ct/"):
            scope["root_path"] = "/ct"  # in place: a stream marks this scope endless for the server
            await tracker_asgi(scope, receive, send)
        elif scope["type"] == "http":
            await pages_asgi(scope, receive, send)

    return app


@contextmanager
def served(asgi):
    with asgi_in_thread(asgi, lifespan="off", graceful=5) as (_, port, _):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def shop(session, tracker_app):
    """(url, site, Direct source, manager) of a site with the chat on, served until the test ends."""
    site = pooled_site(session, 2, timezone="UTC")
    pool = add_pool(session, site, "Direct", number_range("+74997400000", 2))
    source = add_dynamic_source(session, site, "Direct", pool, priority=20,
                                match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    managers = add_managers(session, ["501"], device_state="NOT_INUSE")
    add_rule(session, "sales", add_group(session, "sales", managers), site=site)
    session.add(SiteWidget(site_id=site.id, chat_enabled=True))
    session.commit()
    with served(landing(tracker_app(chat_poll_seconds=0.1), site.public_key)) as url:
        yield url, site, source, managers[0]


def log_texts(page) -> list[str]:
    return page.evaluate(f"[...{SHADOW}.querySelectorAll('[role=log] li')].map(li => li.textContent)")


def wait_text(page, text: str, timeout: float = 5000) -> None:
    page.wait_for_function("t => [...document.querySelector('[data-astertrack-widget]').shadowRoot"
                           ".querySelectorAll('[role=log] li')].some(li => li.textContent.includes(t))",
                           arg=text, timeout=timeout, polling=20)


def reply(session, text: str, manager_id: int) -> float:
    """A manager's reply written through the core, as the admin writes it (SQLite: the write lock first)."""
    session.rollback()
    begin_write(session)
    chat = session.scalar(select(Chat))
    chats.post(session, chat, "manager", text, at=utcnow(), manager=session.get(Manager, manager_id))
    session.commit()
    return time.monotonic()


def visitor_texts(session) -> list[str]:
    session.rollback()
    return [m.text for m in session.scalars(select(ChatMessage).where(ChatMessage.author == "visitor")
                                            .order_by(ChatMessage.seq))]


def test_a_visitor_chats_across_pages_and_a_network_drop(browser, shop, session):
    url, site, source, anna = shop
    context = visitor(browser)
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/?utm_source=yandex")
    session_ready(page)
    widget_ready(page)
    launcher = page.get_by_role("button", name="Chat")
    launcher.focus()
    page.keyboard.press("Enter")  # by keyboard: the panel opens, focus in its message box
    box = page.get_by_label("Message")
    box.wait_for()
    assert page.evaluate(f"{SHADOW}.activeElement.tagName") == "TEXTAREA"
    assert launcher.get_attribute("aria-expanded") == "true"
    page.keyboard.type("Do you deliver?")
    page.keyboard.press("Enter")
    page.wait_for_function(f"{SHADOW}.querySelector('[role=log] li[data-seq=\"1\"]') !== null", timeout=10000)
    [chat] = wait_rows(session, Chat, 1)
    enquiry = session.get(Enquiry, chat.enquiry_id)
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == page.evaluate(
        "window.astertrack.st.sid")))
    assert (enquiry.channel, enquiry.source_id, chat.session_id) == ("chat", source.id, visit.id)

    sent_at = reply(session, "Yes, free in town", anna.id)
    wait_text(page, "Yes, free in town", timeout=3000)
    assert time.monotonic() - sent_at < 1.0

    page.goto(f"{url}/next")  # another page: the conversation is still there
    session_ready(page)
    widget_ready(page)
    wait_text(page, "Yes, free in town")
    assert [t for t in log_texts(page) if "Do you deliver?" in t or "Yes, free in town" in t] == [
        "YouDo you deliver?Read", "Manager 501Yes, free in town"]  # the manager's read mark on the visitor's line

    context.set_offline(True)
    page.get_by_label("Message").fill("Sent while offline")
    page.get_by_label("Message").press("Enter")
    time.sleep(1.5)
    assert visitor_texts(session) == ["Do you deliver?"]
    context.set_offline(False)
    deadline = time.monotonic() + 10
    while "Sent while offline" not in visitor_texts(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert visitor_texts(session) == ["Do you deliver?", "Sent while offline"]
    reply(session, "Got it", anna.id)
    wait_text(page, "Got it", timeout=10000)
    time.sleep(1.5)  # long enough for a duplicate to show up
    texts = log_texts(page)
    assert sum("Sent while offline" in t for t in texts) == 1 and sum("Got it" in t for t in texts) == 1
    assert visitor_texts(session) == ["Do you deliver?", "Sent while offline"]

    page.get_by_label("Message").fill(HOSTILE)
    page.get_by_label("Message").press("Enter")
    reply(session, HOSTILE + " (manager)", anna.id)
    wait_text(page, HOSTILE + " (manager)")
    page.wait_for_function(f"{SHADOW}.querySelectorAll('[role=log] li[data-seq]').length >= 7")
    assert sum(HOSTILE in t for t in log_texts(page)) == 2
    assert page.locator("img[src=x]").count() == 0 and dialogs == []  # text, never markup
    assert visitor_texts(session)[-1] == HOSTILE
    assert page.evaluate(f"{SHADOW}.querySelector('[role=log]').getAttribute('aria-live')") == "polite"
    context.close()


def test_out_of_hours_the_chat_is_a_form_whose_lead_carries_the_visit(browser, shop, session):
    url, site, source, _ = shop
    today = dt.datetime.now(dt.UTC).date()
    every_day = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    session.execute(update(RoutingRule).values(schedule=every_day | {"closed_dates": [today.isoformat()]}))
    session.commit()
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?utm_source=yandex")
    session_ready(page)
    widget_ready(page)
    page.get_by_role("button", name="Chat").click()
    panel = page.locator("[role=dialog]")
    assert panel.get_by_role("heading").text_content() == "Write to us"
    assert page.locator("[role=log]").count() == 0  # no chat out of hours
    page.get_by_label("Name").fill("Olga")
    page.get_by_label("Phone").fill("+7 916 555-44-33")
    page.get_by_label("Message").fill("Call me about windows")
    page.get_by_role("button", name="Send").click()
    panel.get_by_text("Thank you! We will answer in working hours.").wait_for()
    [enquiry] = wait_rows(session, Enquiry, 1)
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == page.evaluate(
        "window.astertrack.st.sid")))
    assert (enquiry.channel, enquiry.source_id, enquiry.session_id, enquiry.form_name, enquiry.message) == (
        "form", source.id, visit.id, "widget:chat", "Call me about windows")
    assert session.get(Lead, enquiry.lead_id).first_channel == "form"
    assert session.scalars(select(Chat)).all() == []
    context.close()
