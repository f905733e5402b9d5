"""The website widget in a real headless Chromium (docs/widget.md): a landing page on the customer's
server with the tracker under /ct (the documented reverse-proxy path).  The pop-up appears only when
its rule matches (after N seconds, on the Nth page, on a matching URL; not again within the period)
and its lead carries the visit's source; the callback button is used by keyboard alone, its dialog
has the ARIA roles, hostile text stays text; its request is dialled (Originate reaches the loopback
fake AMI server); out of hours it promises the next opening and the request waits; a site without
the widget never loads it."""

from __future__ import annotations

import datetime as dt
import html
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

import ami_listener.listener as listener_module
from astertrack.db.models import CallbackRequest, Enquiry, Lead, RoutingRule, SiteWidget, VisitorSession
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_managers,
    add_pool,
    add_rule,
    number_range,
    pooled_site,
)
from tests.ami.test_callbacks import answered, originates, run
from tests.tracker.conftest import serve
from tests.tracker.test_browser import visitor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Windows</title></head>
<body><p class="phone">+7 (495) 000-00-00</p><a id="first" href="/next">next</a>
<script async src="/ct/v.js" data-key="{key}" data-timeout="8000"></script></body></html>"""


def landing_app(tracker, key: str, lang: str = "en"):
    @Request.application
    def pages(request: Request) -> Response:
        return Response(PAGE.replace("{key}", html.escape(key)).replace("{lang}", lang), mimetype="text/html")

    return DispatcherMiddleware(pages, {"/ct": tracker})


@pytest.fixture
def shop(session, tracker_app):
    """Factory: shop(lang, **widget fields or None for no widget) -> (url, site, Direct source)."""
    servers = []

    def build(widget: dict | None = None, lang: str = "en"):
        n = len(servers)
        site = pooled_site(session, 2, timezone="UTC")
        pool = add_pool(session, site, "Direct", number_range(f"+7499720{n}000", 2))
        source = add_dynamic_source(session, site, "Direct", pool, priority=20,
                                    match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
        managers = add_managers(session, [f"{101 + n}"], device_state="NOT_INUSE")
        add_rule(session, f"sales {n}", add_group(session, f"sales {n}", managers), site=site)
        if widget is not None:
            session.add(SiteWidget(site_id=site.id, **widget))
        session.commit()
        cm = serve(landing_app(tracker_app(), site.public_key, lang))
        servers.append(cm)
        return cm.__enter__(), site, source

    yield build
    for cm in servers:
        cm.__exit__(None, None, None)


def session_ready(page):
    page.wait_for_function("window.astertrack && window.astertrack.st.sid", timeout=15000)


def widget_ready(page):
    page.wait_for_function("document.querySelector('[data-astertrack-widget]') !== null", timeout=15000)


def dialog_open(page) -> bool:
    return page.locator("[role=dialog]").count() == 1


def wait_rows(session, model, count: int, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        session.rollback()
        rows = session.scalars(select(model).order_by(model.id)).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_the_popup_after_n_seconds_makes_a_lead_capture_lead_and_not_again_within_the_period(browser, shop, session):
    url, site, source = shop({"popup_enabled": True, "popup_delay_seconds": 2, "popup_period_days": 7})
    context = visitor(browser)
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/?utm_source=yandex")
    session_ready(page)
    widget_ready(page)
    shown_at = time.monotonic()
    assert not dialog_open(page)  # not before its N seconds
    page.wait_for_selector("[role=dialog]", timeout=10000)
    assert time.monotonic() - shown_at > 1.0
    dialog = page.locator("[role=dialog]")
    assert dialog.get_attribute("aria-modal") == "true"
    assert page.locator(f"#{dialog.get_attribute('aria-labelledby')}").text_content() == "Get a free consultation"
    page.get_by_label("Name").fill("<img src=x onerror=alert(1)>")
    page.get_by_label("Phone").fill("+7 916 222-33-44")
    page.get_by_role("button", name="Call me").click()
    page.wait_for_function("(() => { const s = document.querySelector('[data-astertrack-widget]').shadowRoot"
                           ".querySelector('[role=status]'); return s && s.textContent.startsWith('Thank you'); })()")
    [enquiry] = wait_rows(session, Enquiry, 1)
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == page.evaluate(
        "window.astertrack.st.sid")))
    assert (enquiry.channel, enquiry.source_id, enquiry.session_id, enquiry.name, enquiry.form_name) == (
        "lead_capture", source.id, visit.id, "<img src=x onerror=alert(1)>", "widget:popup")
    assert session.get(Lead, enquiry.lead_id).first_channel == "lead_capture"
    assert page.locator("img[src=x]").count() == 0 and dialogs == []  # text, never markup

    page.goto(f"{url}/again")  # within the period: not again
    session_ready(page)
    widget_ready(page)
    time.sleep(3)
    assert not dialog_open(page) and dialogs == []
    context.close()


def test_the_popup_on_the_nth_page_and_on_a_matching_url_only(browser, shop, session):
    url, _site, _ = shop({"popup_enabled": True, "popup_page_views": 2, "popup_url_contains": ["/pricing"],
                          "popup_period_days": 0})
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/pricing")  # the first page: too early
    session_ready(page)
    widget_ready(page)
    time.sleep(1)
    assert not dialog_open(page)
    page.goto(f"{url}/about")  # the second page, but the URL does not match
    widget_ready(page)
    time.sleep(1)
    assert not dialog_open(page)
    page.goto(f"{url}/pricing?plan=pro")  # the third page, matching: shown
    page.wait_for_selector("[role=dialog]", timeout=10000)
    page.keyboard.press("Escape")
    assert not dialog_open(page)
    context.close()


def test_the_callback_button_by_keyboard_alone_is_dialled(browser, shop, session, db_url, monkeypatch):
    monkeypatch.setattr(listener_module, "RECONCILE_INTERVAL", 0.2)
    url, site, source = shop({"callback_enabled": True}, lang="ru")
    context = visitor(browser)
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/?utm_source=yandex")
    session_ready(page)
    widget_ready(page)
    launcher = page.get_by_role("button", name="Перезвоните мне")
    launcher.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("[role=dialog]")
    dialog.wait_for()
    assert dialog.get_attribute("aria-modal") == "true"
    assert page.locator(f"#{dialog.get_attribute('aria-labelledby')}").text_content() == "Обратный звонок"
    assert dialog.get_by_text("Перезвоним за 30 секунд.").count() == 1
    focused = "document.querySelector('[data-astertrack-widget]').shadowRoot.activeElement"
    assert page.evaluate(f"{focused}.type") == "tel"  # the phone first
    page.keyboard.press("Escape")  # Esc closes, focus goes back to the launcher
    assert not dialog_open(page)
    assert page.evaluate(f"{focused}.textContent") == "Перезвоните мне"
    page.keyboard.press("Space")
    dialog.wait_for()
    for _ in range(6):  # Tab stays inside the dialog
        page.keyboard.press("Tab")
        assert page.evaluate(f"!!{focused}.closest('[role=dialog]')")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")  # back round to the name
    assert page.evaluate(f"{focused}.name") == "name"
    page.keyboard.type("<img src=x onerror=alert(1)>")
    page.keyboard.press("Tab")
    page.keyboard.type("12")
    page.keyboard.press("Enter")  # too short: said, not sent
    status = dialog.locator("[role=status]")
    assert status.get_attribute("aria-live") == "polite" and status.text_content() == "Проверьте номер телефона"
    assert page.evaluate(f"{focused}.getAttribute('aria-invalid')") == "true"
    page.keyboard.press("Control+A")
    page.keyboard.type("+7 916 123-45-67")
    page.keyboard.press("Enter")
    page.wait_for_function("(() => { const s = document.querySelector('[data-astertrack-widget]').shadowRoot"
                           ".querySelector('[role=status]'); return s.textContent === 'Спасибо! Уже набираем ваш номер.'; })()")
    assert page.locator("img[src=x]").count() == 0 and dialogs == []
    [request] = wait_rows(session, CallbackRequest, 1)
    enquiry = session.get(Enquiry, request.enquiry_id)
    assert (enquiry.channel, enquiry.source_id, enquiry.name) == ("callback", source.id, "<img src=x onerror=alert(1)>")
    assert (request.kind, request.state, request.phone) == ("callback", "scheduled", "+79161234567")
    context.close()

    with ThreadPoolExecutor(1) as pool:  # off Playwright's event-loop thread
        server = pool.submit(run, db_url, answered, lambda s, srv: len(originates(srv)) >= 1).result()
    (action,) = originates(server)
    assert (action["Channel"], action["Exten"]) == ("PJSIP/101", "79161234567")
    assert f"CT_CALLBACK_ID={request.id}" in action["Variable"].split("\n")


def test_out_of_hours_the_button_promises_the_next_opening_and_the_request_waits(browser, shop, session):
    url, site, _ = shop({"callback_enabled": True})
    today = dt.datetime.now(dt.UTC).date()
    every_day = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    session.execute(update(RoutingRule).values(schedule=every_day | {"closed_dates": [today.isoformat()]}))
    session.commit()
    opening = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(9, 0), tzinfo=dt.UTC)
    context = browser.new_context(timezone_id="Asia/Vladivostok", locale="en-US")  # UTC+10, the visitor's own
    context.add_init_script("Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false})")
    page = context.new_page()
    page.goto(f"{url}/")
    session_ready(page)
    widget_ready(page)
    page.get_by_role("button", name="Call me back").click()
    local = opening.astimezone(dt.timezone(dt.timedelta(hours=10)))
    expected = page.evaluate("at => new Date(at).toLocaleString('en', {day: 'numeric', month: 'long', "
                             "hour: '2-digit', minute: '2-digit'})", opening.isoformat())
    assert "07:00 PM" in expected and str(local.day) in expected
    dialog = page.locator("[role=dialog]")
    assert dialog.get_by_text(f"We are closed now. We will call you on {expected}.").count() == 1
    page.get_by_label("Phone").fill("+7 916 765-43-21")
    page.keyboard.press("Enter")
    status = dialog.locator("[role=status]")
    status.filter(has_text="Thank you").wait_for()
    assert status.text_content() == f"Thank you! We will call you on {expected}."
    [request] = wait_rows(session, CallbackRequest, 1)
    assert (request.state, request.attempts, request.next_attempt_at) == ("scheduled", 0, opening)
    context.close()


def test_a_site_without_the_widget_never_loads_it(browser, shop):
    for widget in (None, {"popup_enabled": False, "callback_enabled": False}):
        url, _site, _ = shop(widget)
        context = visitor(browser)
        page = context.new_page()
        paths: list[str] = []
        page.on("request", lambda r, seen=paths: seen.append(urllib.parse.urlsplit(r.url).path))
        page.goto(f"{url}/")
        session_ready(page)
        page.wait_for_function("window.astertrack.st.take !== undefined", timeout=15000)  # j.js ran
        time.sleep(0.5)
        assert "/ct/j.js" in paths and "/ct/w.js" not in paths and "/ct/v/w" not in paths
        assert page.locator("[data-astertrack-widget]").count() == 0
        context.close()


def test_the_popup_on_exit_intent_only_when_the_mouse_leaves_through_the_top(browser, shop):
    url, _site, _ = shop({"popup_enabled": True, "popup_exit_intent": True})
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    session_ready(page)
    widget_ready(page)
    page.wait_for_function("window.astertrack.w === 1")
    leave = "y => document.dispatchEvent(new MouseEvent('mouseout', {clientX: 50, clientY: y, bubbles: true}))"
    page.evaluate(leave, 300)  # out through the bottom or a side: nothing
    time.sleep(0.5)
    assert not dialog_open(page)
    page.evaluate(leave, -2)  # towards the tabs and the address bar
    page.wait_for_selector("[role=dialog]", timeout=5000)
    context.close()
