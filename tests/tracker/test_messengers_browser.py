"""The visit code in a real headless Chromium: a landing page with the snippet (the tracker under /ct)
and the site's messenger links.  j.js gives the site's own bot's t.me link the visit's code as its
start parameter and the WhatsApp links a readable "(код: …)"; a link to a person is left alone.  The
Telegram update that bot would receive then makes a messenger lead with the visit's source."""

from __future__ import annotations

import html
import urllib.parse

import pytest
from sqlalchemy import select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from astertrack.db.models import Enquiry, Lead, VisitorSession
from tests.tracker.conftest import serve
from tests.tracker.test_browser import visitor
from tests.tracker.test_messengers import ad_site, send_tg, tg_update

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Окна</title></head>
<body>
<p class="phone">+7 (495) 000-00-00</p>
<a id="bot" href="https://t.me/Shop_Bot">Напишите нам в Telegram</a>
<a id="person" href="https://t.me/ivan_manager">Менеджер Иван</a>
<a id="wa" href="https://wa.me/74951112233?text=Здравствуйте!">WhatsApp</a>
<a id="wa2" href="https://api.whatsapp.com/send?phone=74951112233">WhatsApp</a>
<script async src="/ct/v.js" data-key="{key}" data-timeout="8000"></script>
</body></html>
"""


@pytest.fixture
def landing(session, tracker_app):
    site, source = ad_site(session)

    @Request.application
    def pages(request: Request) -> Response:
        return Response(PAGE.replace("{key}", html.escape(site.public_key)), mimetype="text/html")

    tracker = tracker_app()
    with serve(DispatcherMiddleware(pages, {"/ct": tracker})) as page_url, serve(tracker) as hook_url:
        yield page_url, hook_url, site, source


def test_a_t_me_link_gets_the_visit_code_and_the_bots_update_makes_a_lead_with_its_source(browser, landing,
                                                                                           session):
    page_url, hook_url, site, source = landing
    context = visitor(browser)
    try:
        page = context.new_page()
        page.goto(f"{page_url}/?utm_source=yandex&utm_campaign=windows")
        page.wait_for_function("document.getElementById('bot').href.indexOf('start=') > 0", timeout=15000)
        sid = page.evaluate("window.astertrack.st.sid")
        bot = urllib.parse.urlsplit(page.get_attribute("#bot", "href"))
        code = urllib.parse.parse_qs(bot.query)["start"][0]
        assert page.get_attribute("#person", "href") == "https://t.me/ivan_manager"  # no pre-fill to a person
        wa = urllib.parse.parse_qs(urllib.parse.urlsplit(page.get_attribute("#wa", "href")).query)
        assert wa["text"] == [f"Здравствуйте! (код: {code})"]
        wa2 = urllib.parse.parse_qs(urllib.parse.urlsplit(page.get_attribute("#wa2", "href")).query)
        assert wa2 == {"phone": ["74951112233"], "text": [f"(код: {code})"]}
        page.reload()  # the next page: the same code, from the tab's storage
        page.wait_for_function("document.getElementById('bot').href.indexOf('start=') > 0", timeout=15000)
        assert f"start={code}" in page.get_attribute("#bot", "href")
    finally:
        context.close()
    status, _, _ = send_tg(hook_url, site, tg_update(f"/start {code}"))
    assert status == 200
    session.rollback()
    [enquiry] = session.scalars(select(Enquiry)).all()
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == sid))
    assert (enquiry.channel, enquiry.session_id, enquiry.source_id) == ("messenger", visit.id, source.id)
    assert session.get(Lead, enquiry.lead_id).source_id == source.id
