"""Web forms in a real headless Chromium: a landing page with the snippet (the tracker under /ct, as
the documented reverse proxy mounts it) and the site's own forms, posting to the site's own server.
The form reaches the site as before, and a copy reaches astertrack: an enquiry in a lead with the
visit's source."""

from __future__ import annotations

import html
import time
import urllib.parse

import pytest
from sqlalchemy import select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from astertrack.db.models import Enquiry, Lead, VisitorSession
from astertrack.samples.factories import add_dynamic_source, add_pool, number_range, pooled_site
from tests.tracker.conftest import serve
from tests.tracker.test_browser import visitor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Окна</title></head>
<body>
<p class="phone">+7 (495) 000-00-00</p>
<form id="contact" action="/thanks" method="post" data-astertrack-form="contact">
  <input name="your-name" autocomplete="name" placeholder="Имя">
  <input type="tel" name="f1" placeholder="Телефон">
  <input type="email" name="f2" placeholder="E-mail">
  <textarea name="comments"></textarea>
  <input type="hidden" name="csrf" value="SITE-CSRF-SECRET">
  <input type="password" name="pin" value="PIN-SECRET">
  <button id="send" type="submit">Отправить</button>
</form>
<form id="ajax" action="/ajax" method="post" data-astertrack-form>
  <input name="whatsapp" data-astertrack-field="phone">
  <input name="client" data-astertrack-field="name">
  <input name="promo" data-astertrack-field="none" value="PROMO-SECRET">
  <button id="ajax-send" type="submit">Перезвоните мне</button>
</form>
<form id="late" action="/late" method="post">
  <input name="mail" type="email"><button id="late-send" type="submit">Подписаться</button>
</form>
<p id="ajax-result"></p>
<script>
// the site's own handler: stops the navigation and posts by itself, as many sites do
document.getElementById('ajax').addEventListener('submit', function (e) {
  e.preventDefault();
  e.stopPropagation();
  fetch('/ajax', { method: 'POST', body: new URLSearchParams(new FormData(this)) })
    .then(function (r) { return r.text(); })
    .then(function (t) { document.getElementById('ajax-result').textContent = t; });
});
</script>
<script async src="/ct/v.js" data-key="{key}" data-timeout="8000"></script>
</body></html>
"""

PLAIN = """<!doctype html><html><head><meta charset="utf-8"><title>No form</title></head>
<body><p class="phone">+7 (495) 000-00-00</p>
<script async src="/ct/v.js" data-key="{key}" data-timeout="8000"></script></body></html>"""


class Site:
    """The customer's site: its pages, and what its own server received from its forms."""

    def __init__(self, tracker, key: str):
        self.received: list[tuple[str, dict[str, str]]] = []
        self.key = key
        self.app = DispatcherMiddleware(self.pages, {"/ct": tracker})

    @Request.application
    def pages(self, request: Request) -> Response:
        if request.method == "POST":
            self.received.append((request.path, request.form.to_dict()))
            if request.path == "/ajax":
                return Response("ok from the site", mimetype="text/plain")
            return Response("<!doctype html><title>Thanks</title><h1 id='thanks'>Спасибо</h1>", mimetype="text/html")
        template = PLAIN if request.path == "/plain" else PAGE
        return Response(template.replace("{key}", html.escape(self.key)), mimetype="text/html")


@pytest.fixture
def landing(session, tracker_app):
    """(base url, site, the customer's Site, the "Direct" source of utm_source=yandex visitors)."""
    site = pooled_site(session, 2)
    pool = add_pool(session, site, "Direct", number_range("+74997000000", 2))
    source = add_dynamic_source(session, site, "Direct", pool, priority=20,
                                match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    session.commit()
    customer = Site(tracker_app(), site.public_key)
    with serve(customer.app) as url:
        yield url, site, customer, source


def wait_for_enquiries(session, count: int, timeout: float = 15.0) -> list[Enquiry]:
    """The beacon is sent while the page navigates: it lands a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        session.rollback()
        rows = session.scalars(select(Enquiry).order_by(Enquiry.id)).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def ready(page):
    """The snippet has its session and the forms script is listening."""
    page.wait_for_function("window.astertrack && window.astertrack.st.sid && window.astertrack.capturing",
                           timeout=15000)
    return page.evaluate("window.astertrack.st.sid")


def test_a_form_reaches_the_site_and_astertrack_with_the_visits_source(browser, landing, session):
    url, site, customer, source = landing
    other = visitor(browser)
    plain = other.new_page()
    scripts: list[str] = []
    plain.on("request", lambda r: scripts.append(urllib.parse.urlsplit(r.url).path))
    plain.goto(f"{url}/plain")
    plain.wait_for_function("window.astertrack && window.astertrack.st.sid", timeout=15000)
    assert "/ct/v.js" in scripts and "/ct/f.js" not in scripts  # no form to capture: no forms script
    other.close()

    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?utm_source=yandex&utm_campaign=okna&token=SECRET-TOKEN#section")
    sid = ready(page)
    page.fill("input[name=your-name]", "Анна <b>Смирнова</b>")
    page.fill("input[name=f1]", "8 (916) 555-44-33")
    page.fill("input[name=f2]", "Anna@Example.RU")
    page.fill("textarea[name=comments]", "Нужен замер\nв субботу")
    page.click("#send")
    page.wait_for_url(f"{url}/thanks")
    assert page.text_content("#thanks") == "Спасибо"  # the site's own submission went through

    assert customer.received == [("/thanks", {"your-name": "Анна <b>Смирнова</b>", "f1": "8 (916) 555-44-33",
                                              "f2": "Anna@Example.RU", "comments": "Нужен замер\r\nв субботу",
                                              "csrf": "SITE-CSRF-SECRET", "pin": "PIN-SECRET"})]
    [enquiry] = wait_for_enquiries(session, 1)
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == sid))
    assert (enquiry.channel, enquiry.form_name, enquiry.session_id, enquiry.source_id) == (
        "form", "contact", visit.id, source.id)
    assert (enquiry.name, enquiry.phone, enquiry.email) == ("Анна <b>Смирнова</b>", "+79165554433",
                                                           "anna@example.ru")
    assert enquiry.message == "Нужен замер\nв субботу" and enquiry.utm_campaign == "okna"
    assert enquiry.page_url == f"{url}/?utm_source=yandex&utm_campaign=okna"  # no token, no fragment
    stored = " ".join(str(value) for value in vars(enquiry).values())
    assert "SECRET" not in stored  # the hidden, password and page's secrets stayed in the browser
    lead = session.get(Lead, enquiry.lead_id)
    assert (lead.first_channel, lead.source_id, lead.session_id, lead.phone, lead.enquiries_count) == (
        "form", source.id, visit.id, "+79165554433", 1)
    context.close()


def test_a_form_the_site_sends_itself_and_one_attached_by_a_call(browser, landing, session):
    url, site, customer, _ = landing
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/")
    ready(page)
    page.fill("input[name=whatsapp]", "+7 916 777-66-55")
    page.fill("input[name=client]", "Олег")
    page.click("#ajax-send")
    page.wait_for_function("document.getElementById('ajax-result').textContent === 'ok from the site'")
    assert customer.received == [("/ajax", {"whatsapp": "+7 916 777-66-55", "client": "Олег",
                                            "promo": "PROMO-SECRET"})]
    [ajax] = wait_for_enquiries(session, 1)
    assert (ajax.form_name, ajax.phone, ajax.name, ajax.message, ajax.email) == ("ajax", "+79167776655", "Олег",
                                                                                 None, None)  # not the promo code

    # an unmarked form the site attaches by a call; a double click sends one copy
    page.evaluate("window.astertrack.form(document.getElementById('late'))")
    page.fill("input[name=mail]", "news@example.ru")
    page.evaluate("document.getElementById('late').addEventListener('submit', function (e) { e.preventDefault(); })")
    page.click("#late-send")
    page.click("#late-send")
    rows = wait_for_enquiries(session, 2)
    time.sleep(1)  # a second copy would have landed by now
    rows = wait_for_enquiries(session, 3, timeout=0)
    assert [(row.form_name, row.email) for row in rows[1:]] == [("late", "news@example.ru")]
    context.close()
