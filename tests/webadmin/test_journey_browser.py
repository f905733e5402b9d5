"""The journey on the call card, end to end in Debian's headless Chromium (Playwright), on SQLite and
PostgreSQL (#24's must-show test):

1. a visitor opens a local landing site (the tracker mounted under /ct, as the documented proxy
   does), views three pages and clicks a tel: link;
2. a call arrives on that visitor's pool number through the fake Asterisk at the real FastAGI
   route; the call card, opened by an admin in the browser, lists the three pages in order with
   their times (the site's zone), the click and the source;
3. the next day (the simulated clock: every stored timestamp of day one is moved one day back, the
   hold released as the sweeper would have), the same browser comes back: a second session;
4. the caller's number now known, another browser sends the site's form with that phone: a third
   session;
5. a second call from that number on the second session's pool number (the site attributes by last
   touch, so the call belongs to that visit): its card shows all three sessions as one journey (by
   visitor id and by phone), and the first call as an earlier one.

The simulated clock is no mocked time: the servers run on the real one, and day one's stored rows
(visit, page views, actions, hold, call) are moved back by a day in the database.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from astertrack.db.engine import begin_write
from astertrack.db.models import (
    Call,
    Enquiry,
    NumberAssignment,
    PageView,
    TrackingNumber,
    User,
    VisitorAction,
    VisitorSession,
)
from astertrack.routing import dialplan_vars as v
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_managers,
    add_pool,
    add_rule,
    number_range,
    pooled_site,
)
from tests.agi.conftest import recording, start_server  # noqa: F401  (the real FastAGI server fixture)
from tests.agi.fake_asterisk import FakeAsterisk, run
from tests.tracker.conftest import serve, tracker_app  # noqa: F401  (the tracker fixture)
from tests.tracker.test_browser import REAL_UA, visitor
from tests.webadmin.browser import ServerThread, login, open_page
from tests.webadmin.conftest import make_config
from tests.webadmin.seed import password_hash
from webadmin import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

CALLER = "79161234567"  # the recorded session's caller id
PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<p class="phone" id="hdr">+7 (495) 000-00-00</p>
<a id="next" href="{next}">Дальше</a>
<a id="tel" href="tel:+74950000000">Позвонить</a>
{form}
<script async src="/ct/v.js" data-key="{key}" data-timeout="8000"></script>
</body></html>
"""
FORM = """<form id="contact" action="/thanks" method="post" data-astertrack-form="contact">
  <input name="your-name" placeholder="Имя"><input type="tel" name="phone" placeholder="Телефон">
  <button id="send" type="submit">Отправить</button></form>"""
PAGES = {"/": ("Главная", "/catalog"), "/catalog": ("Каталог", "/contacts"), "/contacts": ("Контакты", "/"),
         "/form": ("Заявка", "/")}


def landing_app(tracker, key: str):
    @Request.application
    def pages(request: Request) -> Response:
        if request.method == "POST":
            return Response("<!doctype html><title>Спасибо</title><h1 id='thanks'>Спасибо</h1>", mimetype="text/html")
        title, nxt = PAGES.get(request.path, ("?", "/"))
        body = PAGE.format(title=title, next=html.escape(nxt), key=html.escape(key),
                           form=FORM if request.path == "/form" else "")
        return Response(body, mimetype="text/html")

    return DispatcherMiddleware(pages, {"/ct": tracker})


@pytest.fixture
def world(db_url, session, tracker_app, start_server, tmp_path):  # noqa: F811
    """(landing url, admin url, fake Asterisk, site): the site's "Direct" pool for utm_source=yandex
    visitors, a manager and a rule, an admin user; the tracker, the FastAGI server and the admin
    each on their own server over the same database."""
    # last touch: a repeat caller's call belongs to the visit that showed the number (the default,
    # first touch, would give the second call to the first call's visit)
    site = pooled_site(session, 2, timezone="Europe/Moscow", attribution_model="last_touch")
    pool = add_pool(session, site, "Direct", number_range("+74997000000", 2))
    add_dynamic_source(session, site, "Direct", pool, priority=20,
                       match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    add_rule(session, "all", add_group(session, "all", add_managers(session, ["101"])), site=site)
    session.add(User(login="admin", password_hash=password_hash(), role="admin", locale="en"))
    session.commit()
    _, fake = start_server(db_url)
    admin = create_app(make_config(db_url, tmp_path), {"TESTING": True})
    with serve(landing_app(tracker_app(), site.public_key)) as url, ServerThread(admin) as server:
        yield url, f"http://127.0.0.1:{server.port}", fake, site


def journey_ready(page):
    """The swap is done and the journey script listens.  The expression must end in a boolean: when it
    evaluates to a function (``st.take`` itself) Playwright calls it, on every poll, and st.take hands
    the queued page views to the caller: the test itself would drain and drop them."""
    page.wait_for_function("!!(window.astertrack && window.astertrack.st.sid && typeof window.astertrack.st.take === 'function')",
                           timeout=15000)
    return page.evaluate("window.astertrack.st.sid")


def wait_for(session, query, count: int, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        session.rollback()
        rows = session.scalars(query).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def held_number(session, sid: str) -> str:
    session.rollback()
    return session.execute(select(TrackingNumber.number).join(NumberAssignment)
                           .join(VisitorSession, VisitorSession.id == NumberAssignment.session_id)
                           .where(VisitorSession.public_id == sid, NumberAssignment.released_at.is_(None))).scalar_one()


def call_on(fake: FakeAsterisk, session, did: str) -> Call:
    rec = recording("pjsip_fastagi_1")
    env = FakeAsterisk.environment(rec, overrides={"agi_extension": did.lstrip("+"), "agi_dnid": did.lstrip("+"),
                                                   "agi_callerid": CALLER}, script="inbound")
    session_of_call = fake.session(env, variables={"CHANNEL(linkedid)": rec.env_dict.get("agi_uniqueid", "")})
    # Playwright's sync API keeps an event loop running on this thread: the fake Asterisk gets its own
    with ThreadPoolExecutor(1) as pool:
        variables = pool.submit(run, session_of_call).result(timeout=60).variables
    session.rollback()
    assert v.CALL_ID in variables, variables
    return session.execute(select(Call).where(Call.call_uid == variables[v.CALL_ID])).scalar_one()


def move_day_back(session, visit_id: int, call_id: int) -> None:
    """The simulated clock: day one happened a day earlier (the visit, its rows, its hold, its call)."""
    day = dt.timedelta(days=1)
    session.rollback()  # a fresh transaction that holds the write lock (the servers write meanwhile)
    begin_write(session)
    visit = session.get(VisitorSession, visit_id)
    visit.first_seen, visit.last_seen = visit.first_seen - day, visit.last_seen - day
    for model in (PageView, VisitorAction):
        for row in session.scalars(select(model).where(model.session_id == visit_id)):
            row.at -= day
    for hold in session.scalars(select(NumberAssignment).where(NumberAssignment.session_id == visit_id)):
        hold.assigned_at -= day
        hold.last_heartbeat_at -= day
        hold.hard_expires_at -= day
        hold.expires_at = min(hold.expires_at - day, hold.hard_expires_at)
        hold.released_at, hold.release_reason = hold.expires_at, hold.release_reason or "expired"
    call = session.get(Call, call_id)
    for name in ("started_at", "answered_at", "ended_at"):
        if getattr(call, name) is not None:
            setattr(call, name, getattr(call, name) - day)
    session.execute(update(Call).where(Call.id == call_id).values(state="finished", outcome="answered"))
    session.commit()


def visits_on_card(page) -> list[str]:
    return page.eval_on_selector_all("#journey li.journey-visit", "els => els.map(e => e.dataset.session)")


def test_the_call_card_shows_the_visitors_journey_across_days_and_browsers(browser, world, session):
    url, admin, fake, site = world
    zone = ZoneInfo("Europe/Moscow")

    # 1. three pages and a tel: click
    first = visitor(browser)
    page = first.new_page()
    page.goto(f"{url}/?utm_source=yandex&utm_campaign=spring")
    sid_a = journey_ready(page)
    for path in ("/catalog", "/contacts"):
        page.click("#next")
        page.wait_for_url(f"**{path}")
        journey_ready(page)
    tel_href = page.get_attribute("#tel", "href")  # the visitor's pool number, swapped in
    page.click("#tel")
    visit_a = wait_for(session, select(VisitorSession).where(VisitorSession.public_id == sid_a), 1)[0]
    clicks = wait_for(session, select(VisitorAction).where(VisitorAction.session_id == visit_a.id), 1)
    state = first.storage_state()  # the browser's storage, for its return tomorrow
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    first.close()  # the unload beacon brings the page views; the hold goes on for the grace period
    views = wait_for(session, select(PageView).where(PageView.session_id == visit_a.id).order_by(PageView.at), 3)
    assert [urlpath(p.url) for p in views] == ["/", "/catalog", "/contacts"]

    # 2. the call on that visitor's pool number, through the real FastAGI route
    held = held_number(session, sid_a)
    assert tel_href == f"tel:{held}"
    call_1 = call_on(fake, session, held)
    assert call_1.session_id == visit_a.id and call_1.source.name == "Direct"

    staff, card = open_page(browser)
    login(card, admin)
    card.goto(f"{admin}/calls/{call_1.id}")
    journey = card.locator("#journey")
    assert visits_on_card(card) == [str(visit_a.id)]
    shown = journey.locator("li.journey-page").all_inner_texts()
    assert len(shown) == 3
    for line, view in zip(shown, views, strict=True):
        assert view.at.astimezone(zone).strftime("%H:%M:%S") in line and view.url in line
    assert [a.get_attribute("href") for a in journey.locator("li.journey-page a").all()] == [p.url for p in views]
    assert all(a.get_attribute("rel") == "noopener noreferrer" for a in journey.locator("li.journey-page a").all())
    click = journey.locator("li.journey-action[data-kind=tel_link]")
    assert click.count() == 1 and tel_href in click.inner_text() and "Clicked a phone link" in click.inner_text()
    assert clicks[0].at.astimezone(zone).strftime("%H:%M:%S") in click.inner_text()
    assert "Direct" in journey.locator(".visit-source").inner_text()
    assert "spring" in journey.locator(".visit-campaign").inner_text()
    assert "3 pages" in card.text_content("#journey-summary") and "1 phone click" in card.text_content("#journey-summary")
    assert card.errors == []

    # 3. the next day, the same browser comes back (its storage kept)
    move_day_back(session, visit_a.id, call_1.id)
    again = browser.new_context(user_agent=REAL_UA, storage_state=state)
    again.add_init_script("Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false})")
    page = again.new_page()
    page.goto(f"{url}/?utm_source=yandex&utm_campaign=summer")
    sid_b = journey_ready(page)
    assert sid_b != sid_a
    visit_b = wait_for(session, select(VisitorSession).where(VisitorSession.public_id == sid_b), 1)[0]
    assert visit_b.visitor_id == visit_a.visitor_id

    # 4. another browser sends the form with the caller's phone
    other = visitor(browser)
    form_page = other.new_page()
    form_page.goto(f"{url}/form")
    form_page.wait_for_function("window.astertrack && window.astertrack.st.sid && window.astertrack.capturing",
                                timeout=15000)
    sid_c = form_page.evaluate("window.astertrack.st.sid")
    form_page.fill("input[name=phone]", "8 (916) 123-45-67")
    form_page.click("#send")
    form_page.wait_for_url(f"{url}/thanks")
    enquiry = wait_for(session, select(Enquiry).where(Enquiry.channel == "form"), 1)[0]
    visit_c = session.execute(select(VisitorSession).where(VisitorSession.public_id == sid_c)).scalar_one()
    assert enquiry.session_id == visit_c.id and enquiry.phone == call_1.caller_number

    # 5. the second call, on the second session's number: one journey of three sessions
    call_2 = call_on(fake, session, held_number(session, sid_b))
    assert call_2.session_id == visit_b.id
    card.goto(f"{admin}/calls/{call_2.id}")
    assert visits_on_card(card) == [str(visit_a.id), str(visit_b.id), str(visit_c.id)]
    visits = card.locator("#journey li.journey-visit")
    assert "same browser" in visits.nth(0).inner_text() or "same phone number" in visits.nth(0).inner_text()
    assert "the call's visit" in visits.nth(1).inner_text() and "summer" in visits.nth(1).inner_text()
    assert "same phone number" in visits.nth(2).inner_text()
    assert visits.nth(0).locator("li.journey-page").count() == 3  # day one, whole
    assert "first visit 1 day ago" in card.text_content("#journey-summary")
    assert card.locator(f"#journey-earlier a[href='/calls/{call_1.id}']").count() == 1
    assert card.errors == []
    for context in (again, other, staff):
        context.close()


def urlpath(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]
