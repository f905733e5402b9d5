"""The snippet on a third-party landing-page template (tests/fixtures/landing/index.html) in a real
headless Chromium against a real tracker.

The template has the phone shapes real pages have: a number split across elements, a number
followed by working hours, numbers in tel:, WhatsApp, Viber and Telegram links, in aria-label and
title, a toll-free number, another office's number, prices, tax ids and an order number that
must stay as written, and a widget that renders its number later in two steps.  The DOM work does
not depend on the database, so these run on SQLite only.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from astertrack.db.models import NumberAssignment
from astertrack.phones import format_display
from astertrack.samples.factories import pooled_site
from tests.tracker.conftest import serve
from tests.tracker.test_browser import visitor
from tracker import SNIPPET_PATH

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

sync_api = pytest.importorskip("playwright.sync_api")

TEMPLATE = Path(__file__).resolve().parent.parent / "fixtures" / "landing" / "index.html"
SITE_NUMBER = "+74951234567"
TOLL_FREE = "+78005553535"
DISPLAY = "8 (XXX) XXX-XX-XX"
# what the site's admin listed (the workaround included): a call button, both halves of
# the sales number, the sales line with its hours, and the two lines the issue saw scrambled
SELECTORS = (".btn-call", "#sel-split span", "#sel-hours", "#p-split", "#p-hours")
UNTOUCHED = ("#hdr-hours", "#catalog", "#prices", "#other-office", "#legal", "#keep")


def template_app(tracker, key: str, extra: str = ""):
    snippet = SNIPPET_PATH.read_bytes()
    page = TEMPLATE.read_text(encoding="utf-8").replace("<footer", extra + "<footer", 1)

    @Request.application
    def pages(request: Request) -> Response:
        if request.path.endswith("/v.js"):
            return Response(snippet, mimetype="application/javascript")
        tag = f'<script async src="/ct/v.js" data-key="{html.escape(key)}" data-timeout="8000"></script>'
        return Response(page.replace("<!--astertrack-->", tag), mimetype="text/html")

    return DispatcherMiddleware(pages, {"/ct": tracker})



@pytest.fixture
def template_site(session, tracker_app):
    """Factory: template_site(key=None, extra="") -> the template's URL, the site's tracker under /ct;
    ``key`` overrides the snippet's data-key, ``extra`` is HTML put before the footer."""
    servers = []

    def build(key: str | None = None, extra: str = ""):
        site = pooled_site(session, 2, replace_numbers=(SITE_NUMBER, TOLL_FREE), selectors=SELECTORS,
                           display_format=DISPLAY)
        cm = serve(template_app(tracker_app(), site.public_key if key is None else key, extra))
        servers.append(cm)
        return cm.__enter__()

    yield build
    for cm in reversed(servers):
        cm.__exit__(None, None, None)


def in_place(original: str, number: str) -> str:
    """``original`` with its last ten digits replaced by ``number``'s, every other character kept."""
    digits = iter(re.sub(r"\D", "", original)[:-10] + re.sub(r"\D", "", number)[-10:])
    return re.sub(r"\d", lambda _: next(digits), original)


def open_swapped(browser, url):
    """A human visitor's page once the snippet has swapped the header number."""
    context = visitor(browser)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("document.querySelector('#hero-phone').textContent.indexOf('123 45 67') < 0",
                           timeout=15000)
    return context, page


def texts(page, selectors):
    return {css: page.text_content(css) for css in selectors}


def assigned(session) -> str:
    session.rollback()  # a new snapshot
    return session.scalar(select(NumberAssignment)).number.number


def test_numbers_in_text_are_swapped_and_the_text_around_them_kept(browser, template_site, session):
    url = template_site()
    context, page = open_swapped(browser, url)
    number = assigned(session)
    shown = format_display(number, DISPLAY)
    assert page.text_content("#hero-phone") == f"Звоните: {shown}"
    # followed by other digits in the same text: the hours stay as written
    assert page.text_content("#footer-hours") == f"Приём звонков: {shown} (9:00-18:00), без выходных"
    # split across elements: each element keeps its own part, in the page's own grouping
    split = in_place("8 (495) 123-45-67", number)
    assert page.text_content("#p-split") == f"Горячая линия {split}"
    assert page.text_content("#p-split span:first-child") == split[:7]
    assert page.text_content("#p-split span:last-child") == split[8:]
    assert page.text_content("#hdr-phone .phone-code") == split[:7]
    assert page.text_content("#hdr-phone .phone-number") == split[8:]
    # every listed number of the site, not only the first
    assert page.text_content("#tollfree") == f"Бесплатно по России: {shown}"
    assert page.text_content("#footer-tel") == shown
    context.close()


def template_texts(browser, url):
    """The template's own texts, read with the snippet blocked."""
    context = visitor(browser)
    context.route("**/v.js", lambda route: route.abort())
    page = context.new_page()
    page.goto(url)
    found = texts(page, UNTOUCHED + ("#order-line",))
    context.close()
    return found


def test_digits_that_are_not_the_sites_number_stay_as_written(browser, template_site, session):
    url = template_site()
    original = template_texts(browser, url)
    context, page = open_swapped(browser, url)
    after = texts(page, UNTOUCHED + ("#order-line",))
    assert after == original
    assert after["#order-line"] == "Номер заказа для справки: 8495123456701"  # the number inside longer digits
    # digits written next to the number (24/7) are not taken into it
    assert page.text_content("#p-247") == f"Приём заявок 24/7 {format_display(assigned(session), DISPLAY)}"
    assert page.get_attribute("#spb-tel", "href") == "tel:+78121112233"
    assert page.get_attribute("#spb-wa", "href") == "https://wa.me/78121112233"
    assert page.get_attribute("#catalog-link", "href") == "https://shop.example/item/74951234567"  # not a phone link
    context.close()


def test_links_and_labels_keep_their_own_format(browser, template_site, session):
    url = template_site()
    context, page = open_swapped(browser, url)
    page.wait_for_function("document.querySelector('#tg').getAttribute('href').indexOf('4951234567') < 0",
                           timeout=5000)
    number = assigned(session)
    digits = number.lstrip("+")
    shown = format_display(number, DISPLAY)
    assert page.get_attribute("#hdr-phone", "href") == f"tel:{number}"
    assert page.get_attribute("#cta-call", "href") == f"tel:{number}"
    assert page.get_attribute("#tollfree-link", "href") == f"tel:{number}"
    assert page.get_attribute("#footer-tel", "href") == f"tel:{number}"
    wa = page.get_attribute("#wa", "href")
    assert wa == f"https://wa.me/{digits}?text=%D0%97%D0%B4%D1%80%D0%B0%D0%B2%D1%81%D1%82%D0%B2%D1%83%D0%B9%D1%82%D0%B5"
    assert page.get_attribute("#wa-api", "href") == f"https://api.whatsapp.com/send?phone={digits}&text=Hello"
    assert page.get_attribute("#viber", "href") == f"viber://chat?number=%2B{digits}"
    assert page.get_attribute("#tg", "href") == f"https://t.me/+{digits}"
    assert page.get_attribute("#hdr-phone", "aria-label") == f"Позвонить: {shown}"
    assert page.get_attribute("#hdr-phone", "title") == shown
    assert page.get_attribute("#wa", "title") == f"WhatsApp {shown}"
    context.close()


def test_selected_elements_get_only_their_number_replaced(browser, template_site, session):
    url = template_site()
    context, page = open_swapped(browser, url)
    number = assigned(session)
    shown = format_display(number, DISPLAY)
    # a selected call button without a number keeps its label; its link is swapped
    assert page.text_content("#cta-call") == "Заказать звонок"
    # the scrambled lines
    assert page.text_content("#p-split") == f"Горячая линия {in_place('8 (495) 123-45-67', number)}"
    assert page.text_content("#p-hours") == f"Пн–Пт {shown} (9:00-18:00)"
    # a number the site did not list, marked by selectors: both halves selected, shown once
    assert page.text_content("#sel-split") == f"Отдел продаж {in_place('8 (499) 700-10-20', number)}"
    assert page.text_content("#sel-hours") == f"Отдел продаж, Пн–Пт {shown} (10:00-19:00)"
    context.close()


def test_a_number_a_widget_completes_later_is_swapped(browser, template_site, session):
    url = template_site()
    context, page = open_swapped(browser, url)
    page.wait_for_selector("body[data-widget=done]", timeout=8000)
    page.wait_for_function("document.querySelector('#late-split').textContent.indexOf('123-45-67') < 0",
                           timeout=5000)
    number = assigned(session)
    assert page.text_content("#late-split") == f"Ночная линия {in_place('8 (495) 123-45-67', number)}"
    context.close()


def test_debug_overlay_names_a_wrong_site_key(browser, template_site):
    url = template_site(key="no-such-key")
    context = visitor(browser)
    page = context.new_page()
    page.goto(f"{url}/?astertrack_debug=1")
    page.wait_for_selector("#astertrack-debug", timeout=10000)
    overlay = page.text_content("#astertrack-debug")
    assert "unknown site key" in overlay and "unreachable" not in overlay
    assert "no-such-key" in overlay
    assert page.text_content("#hero-phone") == "Звоните: +7 495 123 45 67"
    context.close()


def test_a_large_page_is_swapped_to_its_end(browser, template_site, session):
    """The snippet works a big page in slices (no long task): every slice's numbers get swapped."""
    card = ('<article class="card"><h3>Окно {i}×1400 мм</h3><p>Арт. {sku}</p><p class="price"><b>12 990</b> ₽</p>'
            '<p class="ask">Уточнить: <span>8 (495)</span> <span>123-45-67</span></p>'
            '<a class="ask-call" href="tel:+74951234567" title="8 (495) 123-45-67">Позвонить</a></article>\n')
    catalog = "".join(card.format(i=600 + i, sku=10234 + i) for i in range(800))
    url = template_site(extra=f'<section id="big">{catalog}</section>')
    context, page = open_swapped(browser, url)
    page.wait_for_function("document.querySelector('#footer-tel').textContent.indexOf('123-45-67') < 0", timeout=15000)
    number = assigned(session)
    split = in_place("8 (495) 123-45-67", number)
    asks = page.eval_on_selector_all("#big .ask", "ps => ps.map(p => p.textContent)")
    calls = page.eval_on_selector_all("#big .ask-call", "as => as.map(a => a.getAttribute('href') + ' ' + a.title)")
    assert page.evaluate("document.body.getElementsByTagName('*').length") > 5000
    assert asks == [f"Уточнить: {split}"] * 800
    assert calls == [f"tel:{number} {format_display(number, DISPLAY)}"] * 800
    assert page.text_content("#big article:last-child h3") == "Окно 1399×1400 мм"
    context.close()
