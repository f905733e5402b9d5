"""Real browser tests: headless Debian Chromium (Playwright) against the app served by a real
threaded HTTP server on loopback.  They also save screenshots of the main pages (see SCREENSHOTS)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from astertrack.db.models import Call, Site, User
from astertrack.db.types import utcnow
from tests.webadmin.browser import ServerThread, login
from tests.webadmin.seed import XSS

pytestmark = pytest.mark.browser

# Screenshots are test artifacts (artifacts/screenshots, ignored by git); set
# ASTERTRACK_UPDATE_SCREENSHOTS=1 to refresh the README's copies in docs/screenshots.
_REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = _REPO / ("docs" if os.environ.get("ASTERTRACK_UPDATE_SCREENSHOTS") else "artifacts") / "screenshots"


@pytest.fixture
def page(page):
    """The shared page, with alerts and confirmations recorded and dismissed."""
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    return page


def shot(page, name: str, request) -> None:
    # One backend is enough for the README pictures.
    if "sqlite" in request.node.name:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_login_page_and_bad_password(page, live, request):
    page.goto(f"{live}/reports/sources")
    assert "/auth/login" in page.url
    shot(page, "login", request)
    page.fill("#login", "admin")
    page.fill("#password", "wrong-password")
    page.click("#login-button")
    assert page.get_by_text("Wrong login or password.").is_visible()


def test_sources_report_chart_is_drawn(page, live, request):
    login(page, live, "super")
    page.goto(f"{live}/reports/sources")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('series-chart'))")
    painted = page.evaluate("""() => {
        const canvas = document.getElementById('series-chart');
        const chart = Chart.getChart(canvas);
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let ink = 0;
        for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) ink++; }
        return {ink, points: chart.data.labels.length, total: chart.data.datasets[0].data.reduce((a, b) => a + b, 0),
                bars: Chart.getChart(document.getElementById('bars-chart')).data.labels};
    }""")
    assert painted["ink"] > 1000 and painted["points"] == 30 and painted["total"] == 3
    assert "Yandex Direct" in painted["bars"]
    assert page.get_by_text("How the numbers are counted").is_visible()
    assert page.errors == []  # no script errors and nothing blocked by the Content-Security-Policy
    shot(page, "report-sources", request)


def test_call_card_plays_and_seeks_recording(page, live, data, request):
    login(page, live, "super")
    page.goto(f"{live}/calls/{data.answered}")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert duration == pytest.approx(3.0, abs=0.1)
    page.evaluate("() => { const a = document.getElementById('player'); a.muted = true; return a.play(); }")
    page.wait_for_function("() => document.getElementById('player').currentTime > 0.3", timeout=10000)
    # seeking needs HTTP Range on the recording URL
    page.evaluate("() => { const a = document.getElementById('player'); a.pause(); a.currentTime = 2.0; }")
    page.wait_for_function("() => { const a = document.getElementById('player'); return !a.seeking && a.currentTime >= 1.9; }")
    assert page.get_by_text("Hello, I would like a sofa.").is_visible()
    assert page.errors == []
    page.evaluate("() => document.getElementById('player').currentTime = 0")
    shot(page, "call-card", request)


def test_forged_cross_site_post_is_rejected(page, live, db, browser):
    login(page, live, "admin")
    before = db.query(User).count()
    # 1. a page on another site (localhost is a different site from 127.0.0.1) auto-submits a form at us
    evil_html = f"""<html><body><form id="f" method="post" action="{live}/users/new">
        <input name="login" value="eve"><input name="role" value="admin"><input name="password" value="eve-password-1">
        <input name="active" value="on"></form><script>document.getElementById('f').submit()</script></body></html>"""

    def evil_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [evil_html.encode()]

    with ServerThread(evil_app) as evil:
        page.goto(f"http://localhost:{evil.port}/")
        page.wait_for_url(f"{live}/users/new")
        page.wait_for_load_state()
        assert page.get_by_text("did not come from this site").is_visible()
    # 2. even from our own origin, a POST without the token fails
    page.goto(f"{live}/reports/sources")
    status = page.evaluate("""async () => {
        const body = new URLSearchParams({login: 'mallory', role: 'admin', password: 'mallory-pass-1', active: 'on'});
        const r = await fetch('/users/new', {method: 'POST', body});
        return r.status;
    }""")
    assert status == 400
    db.rollback()
    assert db.query(User).count() == before
    assert db.query(User).filter(User.login.in_(["eve", "mallory"])).count() == 0


def test_ringing_call_pops_up_for_its_manager(page, live, data, db, request):
    login(page, live, "anna")
    page.goto(f"{live}/calls/")
    page.wait_for_timeout(500)  # the EventSource is open
    started = time.monotonic()
    call = Call(site_id=data.site, caller_number="+79161234567", caller_name="Ivan", state="ringing",
                started_at=utcnow(), routed_manager_id=data.anna, source_id=data.yandex, session_id=data.visit,
                utm_campaign="winter-sale", keyword="buy sofa")
    db.add(call)
    db.commit()
    popup = page.locator(f'.popup[data-call-id="{call.id}"]')
    popup.wait_for(state="visible", timeout=5000)
    latency = time.monotonic() - started
    print(f"pop-up shown {latency:.2f} s after the ringing call was committed")
    text = popup.inner_text()
    for expected in ("+7 (916) 123-45-67", "Ivan", "Yandex Direct", "winter-sale", "buy sofa", "shop.example/sofas"):
        assert expected in text
    assert popup.locator("a", has_text="Open in CRM").get_attribute("href") == \
        "https://crm.example/search?phone=%2B79161234567"
    shot(page, "manager-popup", request)


def test_hostile_utm_source_is_shown_as_text_everywhere(page, live, data, db, request):
    ringing = Call(site_id=data.site, caller_number="+79160000077", caller_name=XSS, state="ringing",
                   started_at=utcnow(), routed_manager_id=data.anna, utm_campaign=XSS, keyword=XSS,
                   session_id=data.visit, utm_source=XSS)
    db.add(ringing)
    db.commit()
    login(page, live, "anna")  # anna has a manager link: the pop-up runs on every page
    popup = page.locator(f'.popup[data-call-id="{ringing.id}"]')
    popup.wait_for(state="visible", timeout=5000)
    assert XSS in popup.inner_text()
    page.goto(f"{live}/calls/{data.answered}")
    assert page.locator("#attribution .utm-source").inner_text() == XSS
    page.goto(f"{live}/calls/{ringing.id}")
    page.wait_for_load_state()
    assert page.get_by_text(XSS).first.is_visible()
    page.context.clear_cookies()
    login(page, live, "super")
    page.goto(f"{live}/reports/sources?dimension=utm_source")
    page.wait_for_function("() => Chart.getChart(document.getElementById('bars-chart'))")
    assert page.locator("#report-table").get_by_text(XSS).is_visible()
    page.goto(f"{live}/live/")
    page.wait_for_timeout(800)
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.dialogs == []


def test_screenshots_of_main_pages(page, live, data, request):
    login(page, live, "admin")
    for name, path in [("calls", "/calls/"), ("report-missed", "/reports/missed"),
                       ("report-managers", "/reports/managers"), ("report-funnel", "/reports/funnel"),
                       ("report-pools", "/reports/pools"), ("live-board", "/live/"), ("settings", "/settings/"),
                       ("settings-source", f"/settings/sources/{data.yandex}"),
                       ("numbers-import", "/settings/numbers/import")]:
        response = page.goto(f"{live}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("networkidle") if "live" not in path else page.wait_for_timeout(600)
        shot(page, name, request)


def test_logout_ends_the_session_for_a_copied_cookie(page, live, browser):
    """A copy of the cookie (another browser, a stolen one) works until logout, then never again."""
    login(page, live, "admin")
    copy = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    try:
        copy.add_cookies(page.context.cookies())
        other = copy.new_page()
        assert other.goto(f"{live}/users/").status == 200 and other.url == f"{live}/users/"
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(f"{live}/auth/login")
        other.goto(f"{live}/users/")
        assert "/auth/login" in other.url
        assert other.locator("#password").is_visible()
    finally:
        copy.close()


def test_site_page_snippet_is_copied_with_the_keyboard(page, live, data, db):
    key = db.get(Site, data.site).public_key
    expected = f'<script async src="/ct/v.js" data-key="{key}"></script>'
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live)
    login(page, live, "admin")
    page.goto(f"{live}/settings/sites/{data.site}")
    assert page.locator("#snippet-code").input_value() == expected
    page.locator("#snippet-code").focus()
    page.keyboard.press("Tab")  # the button is next in the tab order
    assert page.evaluate("() => document.activeElement.id") == "snippet-copy"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('snippet-status').textContent.trim() !== ''")
    assert page.locator("#snippet-status").inner_text() == "Copied."
    assert page.evaluate("() => navigator.clipboard.readText()") == expected
    page.evaluate("() => navigator.clipboard.writeText('')")
    page.keyboard.press("Space")  # a button answers Space as well as Enter
    page.wait_for_function(f"async () => (await navigator.clipboard.readText()) === {expected!r}")
    assert page.errors == []  # nothing blocked by the Content-Security-Policy
