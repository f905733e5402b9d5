"""Issue #20 in a real headless Chromium against a real tracker: an office behind one address,
and an integration posting ``application/json`` across origins (the CORS preflight)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from werkzeug.wrappers import Request, Response

from astertrack.db.models import NumberAssignment, VisitorSession
from astertrack.phones import format_display
from astertrack.samples.factories import FALLBACK_NUMBER, pooled_site
from tests.tracker.conftest import serve
from tests.tracker.test_browser import DISPLAY, ORIGINAL, landing_app, visitor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")



def shown(page) -> str:
    page.wait_for_function(f"document.querySelector('#hdr').textContent !== {ORIGINAL!r}", timeout=15000)
    return page.text_content("#hdr")


def test_an_office_behind_one_address_gets_numbers_up_to_the_limit(browser, session, tracker_app):
    """Four colleagues, one address (every Chromium context here connects from 127.0.0.1), a
    limit of three: three distinct pool numbers, the fourth the fallback, and the fourth gets a
    pool number on a heartbeat once a colleague closes the tab."""
    site = pooled_site(session, 6, heartbeat=1, grace=1)
    tracker = tracker_app(max_holds_per_ip=3)
    fallback = format_display(FALLBACK_NUMBER, DISPLAY)
    contexts = []
    with serve(tracker) as _, serve(landing_app(tracker, site.public_key)) as url:
        try:
            numbers = []
            for _ in range(4):
                context = visitor(browser)
                contexts.append(context)
                page = context.new_page()
                page.goto(f"{url}/")
                numbers.append(shown(page))
            assert len(set(numbers[:3])) == 3 and fallback not in numbers[:3]
            assert numbers[3] == fallback
            assert session.scalar(select(func.count()).select_from(NumberAssignment)) == 3
            leaving = contexts.pop(0)
            leaving.pages[0].goto("about:blank")  # pagehide: the 1 s unload grace, then the hold is gone
            leaving.close()
            last = contexts[-1].pages[0]
            last.wait_for_function(f"document.querySelector('#hdr').textContent !== {fallback!r}", timeout=15000)
            assert last.text_content("#hdr") not in (numbers[1], numbers[2], fallback)
        finally:
            for context in contexts:
                context.close()


@Request.application
def integration_page(request: Request) -> Response:
    """A customer's own page that calls the API itself (no snippet)."""
    return Response("<!doctype html><title>integration</title>", mimetype="text/html")


JSON_POST = """async ([api, key]) => {
  try {
    const r = await fetch(api + '/v/start', {method: 'POST', headers: {'Content-Type': 'application/json'},
                          body: JSON.stringify({k: key, visitor_id: 'integration'})});
    return {status: r.status, body: await r.json()};
  } catch (e) { return {error: String(e)}; }
}"""


@pytest.mark.parametrize("allowed", [True, False])
def test_an_integration_posting_json_across_origins_passes_the_preflight_only_for_its_site(
        browser, session, tracker_app, allowed):
    # the page is on 127.0.0.1, the tracker on "localhost": a cross-origin, non-simple request
    site = pooled_site(session, 2, domains=("127.0.0.1",) if allowed else ("localhost",))
    with serve(tracker_app()) as tracker_url, serve(integration_page) as url:
        context = visitor(browser)  # no request interception: Playwright would answer preflights itself
        try:
            page = context.new_page()
            page.goto(f"{url}/")
            result = page.evaluate(JSON_POST, [tracker_url.replace("127.0.0.1", "localhost"), site.public_key])
        finally:
            context.close()
    if allowed:
        assert result["status"] == 200 and result["body"]["kind"] == "pool"
    else:
        assert "error" in result  # the browser refused: no Access-Control-Allow-* for this origin
        time.sleep(0.2)
        assert session.scalar(select(func.count()).select_from(VisitorSession)) == 0
