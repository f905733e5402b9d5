"""The journey in a real headless Chromium (Debian's, through Playwright): a visitor views three pages
of a local landing site (the tracker under /ct as the documented proxy mounts it) and clicks a tel:
link; the page views and the click are stored in order with their URLs cleaned.  An opted-out visitor
leaves nothing: no cookie or storage, no session, no page view, the site's own number shown."""

from __future__ import annotations

import html
import time

import pytest
from sqlalchemy import select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from astertrack.db.models import PageView, VisitorAction, VisitorSession
from astertrack.samples.factories import pooled_site
from tests.tracker.conftest import serve
from tests.tracker.test_browser import visitor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

ORIGINAL = "+7 (495) 000-00-00"
PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>{title}</title>{optout}</head>
<body>
<p class="phone" id="hdr">{original}</p>
<a id="next" href="{next}">Дальше</a>
<a id="tel" href="tel:+74950000000">Позвонить</a>
<script async src="/ct/v.js" data-key="{key}" data-timeout="8000"></script>
</body></html>
"""
PAGES = {"/": ("Главная", "/catalog?page=2&token=SECRET#list"), "/catalog": ("Каталог", "/contacts"),
         "/contacts": ("Контакты", "/")}


def landing_app(tracker, key: str):
    @Request.application
    def pages(request: Request) -> Response:
        title, nxt = PAGES.get(request.path, ("?", "/"))
        optout = "<script>window.astertrackOptOut = true</script>" if request.args.get("optout") else ""
        body = PAGE.format(title=title, next=html.escape(nxt), key=html.escape(key), original=ORIGINAL, optout=optout)
        return Response(body, mimetype="text/html")

    return DispatcherMiddleware(pages, {"/ct": tracker})


@pytest.fixture
def landing(session, tracker_app):
    site = pooled_site(session, 2)
    with serve(landing_app(tracker_app(), site.public_key)) as url:
        yield url, site


def journey_ready(page):
    """The swap is done and the journey script listens (a page left sooner records nothing)."""
    page.wait_for_function("!!(window.astertrack && window.astertrack.st.sid && typeof window.astertrack.st.take === 'function')",
                           timeout=15000)  # (a function as the result would be called by Playwright)


def wait_rows(session, model, count, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        session.rollback()
        rows = session.scalars(select(model).order_by(model.at, model.id)).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_three_pages_and_a_tel_click_are_stored_in_order(browser, landing, session):
    url, site = landing
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?utm_source=yandex&utm_campaign=spring&email=me%40example.ru")
    journey_ready(page)
    assert page.text_content("#hdr") != ORIGINAL  # the swap came first
    page.click("#next")
    page.wait_for_url("**/catalog**")
    journey_ready(page)
    page.wait_for_timeout(1100)  # a second on the page
    page.click("#next")
    page.wait_for_url("**/contacts")
    journey_ready(page)
    shown = page.get_attribute("#tel", "href")  # the visitor's pool number, swapped in
    assert shown != "tel:+74950000000"
    page.click("#tel")

    actions = wait_rows(session, VisitorAction, 1)
    # the last page's view comes with the click (flushed at once) or when the page is hidden
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    context.close()  # the unload beacon
    views = wait_rows(session, PageView, 3)
    visits = session.scalars(select(VisitorSession)).all()
    assert len(visits) == 1 and {v.session_id for v in views} | {a.session_id for a in actions} == {visits[0].id}
    assert [v.url for v in views] == [f"{url}/?utm_source=yandex&utm_campaign=spring", f"{url}/catalog",
                                      f"{url}/contacts"], [(v.url, v.at) for v in views]
    assert [v.title for v in views] == ["Главная", "Каталог", "Контакты"]
    assert views[1].referrer == f"{url}/?utm_source=yandex&utm_campaign=spring"
    assert views[1].seconds_on_page >= 1
    assert [(a.kind, a.target, a.url) for a in actions] == [("tel_link", shown, f"{url}/contacts")]
    assert views[2].at <= actions[0].at


def test_an_opted_out_visitor_leaves_nothing_and_sees_the_sites_number(browser, landing, session):
    url, _site = landing
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?optout=1&utm_source=yandex")
    page.wait_for_load_state("load")
    page.wait_for_timeout(1500)  # time the snippet would have needed to swap
    page.click("#tel")
    page.wait_for_timeout(500)
    assert page.text_content("#hdr") == ORIGINAL
    assert page.evaluate("window.astertrack === undefined && Object.keys(localStorage).length === 0")
    assert context.cookies() == []
    context.close()
    session.rollback()
    assert session.scalars(select(VisitorSession)).all() == []
    assert session.scalars(select(PageView)).all() == [] and session.scalars(select(VisitorAction)).all() == []


def test_the_opt_out_cookie_works_as_the_switch(browser, landing, session):
    url, _site = landing
    context = visitor(browser)
    context.add_cookies([{"name": "astertrack_optout", "value": "1", "url": url}])
    page = context.new_page()
    page.goto(f"{url}/")
    page.wait_for_timeout(1500)
    assert page.text_content("#hdr") == ORIGINAL and page.evaluate("window.astertrack === undefined")
    context.close()
    session.rollback()
    assert session.scalars(select(VisitorSession)).all() == []
