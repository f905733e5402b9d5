"""The snippet in a real headless Chromium against a real tracker, on a local landing page.

The landing server mounts the tracker under ``/ct`` exactly as the documented reverse
proxy does, so these tests also prove the first-party path setup works.
"""

from __future__ import annotations

import datetime as dt
import html
import time

import pytest
from sqlalchemy import select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from astertrack.db.models import NumberAssignment, VisitorSession
from astertrack.db.types import utcnow
from astertrack.phones import format_display
from astertrack.samples.factories import FALLBACK_NUMBER, pooled_site
from tests.tracker.conftest import serve
from tracker import SNIPPET_PATH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

REAL_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
ORIGINAL = "+7 (495) 000-00-00"
DISPLAY = "+7 (XXX) XXX-XX-XX"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Landing</title></head>
<body>
<header><span class="phone" id="hdr">{original}</span></header>
<p id="text">Call us: 8 495 000 00 00 today</p>
<a id="tel" href="tel:+74950000000">Call</a>
<p id="other">Other office: +7 (812) 111-22-33</p>
<p id="keep" data-astertrack-noswap>Head office: <b>+7 495 000-00-00</b></p>
<a id="tel2" href="tel:8%20(495)%20000-00-00">8 (495) 000-00-00</a>
<div id="later"></div>
<script>
setTimeout(function () {{
  var p = document.createElement('p'); p.id = 'late'; p.textContent = 'Late: +7 495 000-00-00';
  document.getElementById('later').appendChild(p);
}}, 2000);
</script>
<script async src="{src}" data-key="{key}" data-timeout="{timeout}"></script>
</body></html>
"""


def landing_app(tracker, key: str, cross_origin_base: str | None = None):
    snippet = SNIPPET_PATH.read_bytes()

    @Request.application
    def pages(request: Request) -> Response:
        path = request.path
        if path.endswith("/v.js"):
            return Response(snippet, mimetype="application/javascript")
        if path.startswith("/down/v/"):
            return Response("bad gateway", status=502)
        if path.startswith("/slow/v/"):
            time.sleep(4)
            return Response("{}", mimetype="application/json")
        prefix = request.args.get("via", "/ct")
        src = f"{cross_origin_base}/v.js" if prefix == "xo" else f"{prefix}/v.js"
        # a generous API timeout (the test machine may be busy) unless a test asks for a short one
        timeout = request.args.get("timeout", "8000")
        body = PAGE.format(original=ORIGINAL, src=html.escape(src), key=html.escape(key),
                           timeout=html.escape(timeout))
        return Response(body, mimetype="text/html")

    return DispatcherMiddleware(pages, {"/ct": tracker})



def visitor(browser, human: bool = True):
    """A fresh browser profile (own localStorage); ``human`` hides the automation flags."""
    if not human:
        return browser.new_context()
    context = browser.new_context(user_agent=REAL_UA)
    context.add_init_script("Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false})")
    return context


def wait_swapped(page, selector="#hdr", timeout=15000):
    page.wait_for_function(f"document.querySelector('{selector}').textContent !== {ORIGINAL!r}", timeout=timeout)
    return page.text_content(selector)


@pytest.fixture
def landing(session, tracker_app):
    """Factory: landing(**site options) -> (base url, site)."""
    servers = []

    def build(pool_size: int = 3, **site_options):
        site = pooled_site(session, pool_size, **site_options)
        tracker = tracker_app()
        tracker_cm = serve(tracker)
        tracker_url = tracker_cm.__enter__()
        servers.append(tracker_cm)
        # the cross-origin variant loads the snippet from "localhost", a different origin
        cm = serve(landing_app(tracker, site.public_key, tracker_url.replace("127.0.0.1", "localhost")))
        url = cm.__enter__()
        servers.append(cm)
        return url, site

    yield build
    for cm in reversed(servers):
        cm.__exit__(None, None, None)


def test_number_swapped_formatted_and_tel_updated(browser, landing, session):
    url, site = landing()
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    shown = wait_swapped(page)
    assignment = session.scalar(select(NumberAssignment))
    number = assignment.number.number
    assert shown == format_display(number, DISPLAY) and shown != ORIGINAL
    page.wait_for_function("document.getElementById('text').textContent.indexOf('000 00 00') < 0")
    assert page.text_content("#text") == f"Call us: {format_display(number, DISPLAY)} today"
    assert page.get_attribute("#tel", "href") == f"tel:{number}"
    assert page.text_content("#other") == "Other office: +7 (812) 111-22-33"
    assert page.text_content("#keep") == "Head office: +7 495 000-00-00"  # opted out
    assert page.get_attribute("#tel2", "href") == f"tel:{number}"  # URL-encoded tel: link, any format
    assert page.text_content("#tel2") == format_display(number, DISPLAY)
    # the same visitor on the next page keeps the number
    page.goto(f"{url}/next")
    assert wait_swapped(page) == shown
    context.close()


def test_two_visitors_get_different_numbers(browser, landing):
    url, _ = landing()
    shown = []
    for _ in range(2):
        context = visitor(browser)
        page = context.new_page()
        page.goto(f"{url}/")
        shown.append(wait_swapped(page))
        context.close()
    assert shown[0] != shown[1]


def test_content_inserted_later_is_swapped(browser, landing):
    url, _ = landing()
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    shown = wait_swapped(page)
    page.wait_for_selector("#late", timeout=5000)
    page.wait_for_function("document.getElementById('late').textContent.indexOf('000-00-00') < 0", timeout=5000)
    assert page.text_content("#late") == f"Late: {shown}"
    context.close()


def test_heartbeat_keeps_the_number_past_the_hold(browser, landing, session):
    url, site = landing(pool_size=1, hold=3, heartbeat=1, grace=1)
    first = visitor(browser)
    page = first.new_page()
    page.goto(f"{url}/")
    shown = wait_swapped(page)
    page.wait_for_timeout(7000)  # more than twice the 3 s hold
    assignment = session.scalar(select(NumberAssignment))
    session.refresh(assignment)
    assert assignment.released_at is None and assignment.expires_at > utcnow()
    assert (utcnow() - assignment.last_heartbeat_at) < dt.timedelta(seconds=3)
    # the only pool number is still held: a second visitor gets the fallback
    second = visitor(browser)
    other = second.new_page()
    other.goto(f"{url}/")
    assert wait_swapped(other) == format_display(FALLBACK_NUMBER, DISPLAY)
    assert page.text_content("#hdr") == shown
    second.close()
    first.close()


def test_unload_starts_the_grace_period(browser, landing, session):
    url, site = landing(pool_size=1, hold=600, grace=5)
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    wait_swapped(page)
    page.goto("about:blank")  # pagehide -> sendBeacon
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        session.rollback()  # a new snapshot (SQLite WAL keeps the old one per transaction)
        assignment = session.scalar(select(NumberAssignment))
        if assignment.expires_at - utcnow() < dt.timedelta(seconds=10):
            break
        time.sleep(0.2)
    assert assignment.expires_at - utcnow() < dt.timedelta(seconds=10)
    context.close()


@pytest.mark.parametrize("via", ["/down", "/slow"])
def test_api_down_or_slow_leaves_the_original_number(browser, landing, via):
    url, _ = landing()
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?via={via}&astertrack_debug=1&timeout=1500")
    page.wait_for_selector("#astertrack-debug", timeout=8000)
    assert "original number kept" in page.text_content("#astertrack-debug")
    assert page.text_content("#hdr") == ORIGINAL
    assert page.get_attribute("#tel", "href") == "tel:+74950000000"
    context.close()


def test_debug_overlay_shows_session_and_never_runs_visitor_data(browser, landing, session):
    url, _ = landing()
    context = visitor(browser)
    page = context.new_page()
    hostile = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
    from urllib.parse import quote

    page.goto(f"{url}/?astertrack_debug=1&utm_source={quote(hostile)}&utm_term=buy%20glasses")
    shown = wait_swapped(page)
    page.wait_for_function("document.getElementById('astertrack-debug') && "
                           "document.getElementById('astertrack-debug').textContent.indexOf('session') >= 0")
    overlay = page.text_content("#astertrack-debug")
    row = session.scalar(select(VisitorSession))
    assert row.utm_source == hostile and row.keyword == "buy glasses"
    assert row.public_id in overlay and shown in overlay and "hold until" in overlay
    assert f"utm_source: {hostile}" in overlay
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('#astertrack-debug script, #astertrack-debug img').length") == 0
    context.close()


def test_spa_navigation_is_reported_and_new_content_swapped(browser, landing, session):
    url, _ = landing()
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    shown = wait_swapped(page)
    page.evaluate("""() => {
        history.pushState({}, '', '/catalog/item-42');
        const p = document.createElement('p'); p.id = 'spa'; p.textContent = 'Order: 84950000000';
        document.body.appendChild(p);
    }""")
    page.wait_for_function("document.getElementById('spa').textContent !== 'Order: 84950000000'", timeout=5000)
    assert page.text_content("#spa") == f"Order: {shown}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        session.rollback()  # a new snapshot (SQLite WAL keeps the old one per transaction)
        row = session.scalar(select(VisitorSession))
        if row.current_page and row.current_page.endswith("/catalog/item-42"):
            break
        time.sleep(0.2)
    assert row.current_page.endswith("/catalog/item-42") and row.page_views >= 2
    context.close()


def test_automated_browser_is_treated_as_bot(browser, landing, session):
    url, _ = landing()
    context = visitor(browser, human=False)  # HeadlessChrome UA and navigator.webdriver
    page = context.new_page()
    page.goto(f"{url}/")
    # the pool's static fallback, never a pool number
    assert wait_swapped(page) == format_display(FALLBACK_NUMBER, DISPLAY)
    assert session.scalar(select(NumberAssignment)) is None
    context.close()


def test_cross_origin_snippet_works_for_allowed_domain(browser, landing):
    url, _ = landing()
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?via=xo")
    assert wait_swapped(page) != ORIGINAL
    context.close()


def test_lazy_site_takes_a_pool_number_once_the_phone_is_visible(browser, landing, session):
    url, _ = landing(lazy=True)
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    # the header phone is in view: the snippet claims a pool number right after the lazy answer
    page.wait_for_function(f"document.querySelector('#hdr').textContent !== {ORIGINAL!r} && "
                           f"document.querySelector('#hdr').textContent !== "
                           f"{format_display(FALLBACK_NUMBER, DISPLAY)!r}", timeout=15000)
    session.rollback()
    assignment = session.scalar(select(NumberAssignment))
    assert page.text_content("#hdr") == format_display(assignment.number.number, DISPLAY)
    assert session.scalar(select(VisitorSession)).interacted is True
    context.close()
