"""The visitor's journey as the admin shows it (#24, display side), through the test client on
SQLite and PostgreSQL: the partial on the call card, the lead card and the manager's pop-up, the
per-call CSV (content and hostile text), the "top pages before a call" report's numbers, and who
may read a journey (a manager only their own calls; anonymous visitors go to the login page)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import pytest

from astertrack.db.models import Call, Lead, PageView, User, VisitorAction, VisitorSession
from astertrack.db.types import utcnow
from tests.webadmin.conftest import AuthActions
from tests.webadmin.seed import XSS
from tests.webadmin.test_live import _events

HOSTILE_TITLE = '=HYPERLINK("http://evil.example","x")<script>alert(1)</script>'
SCRIPT_URL = "javascript:alert(document.cookie)"


def _pages(db, data, visit_id=None, start=None):
    """Three pages and a tel: click on the seeded call's visit, an hour before the call (the call
    started two hours ago); the second page has a hostile title, the third a javascript: URL."""
    visit_id = visit_id or data.visit
    start = start or utcnow() - dt.timedelta(hours=3)
    rows = [("https://shop.example/sofas?utm_source=x", "Sofas", 0),
            ("https://shop.example/sofas/red", HOSTILE_TITLE, 60),
            (SCRIPT_URL, "Contacts", 120)]
    for n, (url, title, offset) in enumerate(rows):
        db.add(PageView(session_id=visit_id, site_id=data.site, client_key=f"p{visit_id}-{n}",
                        at=start + dt.timedelta(seconds=offset), url=url, title=title, seconds_on_page=30))
    db.add(VisitorAction(session_id=visit_id, site_id=data.site, client_key=f"a{visit_id}", kind="tel_link",
                         at=start + dt.timedelta(seconds=130), target="tel:+74951000000",
                         url="https://shop.example/contacts"))
    db.commit()
    return start


def _login(app, who):
    client = app.test_client()
    AuthActions(client).login(who)
    return client


def _hhmmss(moment: dt.datetime) -> str:
    return moment.astimezone(ZoneInfo("Europe/Moscow")).strftime("%H:%M:%S")


def _journey_section(html: str) -> str:
    match = re.search(r'<section id="journey">(.*?)</section>', html, re.S)
    assert match, "no journey section"
    return match.group(1)


def _check_partial(html: str, start: dt.datetime):
    section = _journey_section(html)
    # the pages in order with their times (the site's zone, Europe/Moscow), the click after them
    positions = [section.index(s) for s in ("https://shop.example/sofas?utm_source=x", "https://shop.example/sofas/red",
                                            "javascript:alert(document.cookie)", "tel:+74951000000")]
    assert positions == sorted(positions)
    for offset in (0, 60, 120, 130):
        assert _hhmmss(start + dt.timedelta(seconds=offset)) in section
    assert "Clicked a phone link" in section
    assert "Yandex Direct" in section and "winter-sale" in section and "buy sofa" in section
    # browser text is text: no tag, no javascript: link; http(s) links open without opener/referrer
    assert "<script>" not in section and "<img" not in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section and "&lt;img src=x onerror=alert(1)&gt;" in section
    assert 'href="javascript:' not in section
    links = re.findall(r'<a class="url" href="([^"]+)" target="_blank" rel="noopener noreferrer">', section)
    assert links == ["https://shop.example/sofas?utm_source=x", "https://shop.example/sofas/red"]
    assert "3 pages" in section and "1 phone click" in section
    return section


def test_the_call_card_shows_the_journey(app, auth, client, data, db):
    start = _pages(db, data)
    auth.login("admin")
    html = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    section = _check_partial(html, start)
    assert f'href="/journey/call/{data.answered}.csv"' in section


def test_the_lead_card_shows_the_journey_of_its_call(app, auth, client, data, db):
    start = _pages(db, data)
    lead = db.query(Lead).filter(Lead.call_id == data.answered).one()
    auth.login("admin")
    html = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    section = _check_partial(html, start)
    assert f'href="/journey/lead/{lead.id}.csv"' in section


def test_the_lead_card_in_russian(app, data, db):
    _pages(db, data)
    lead = db.query(Lead).filter(Lead.call_id == data.answered).one()
    db.get(User, data.users["admin"]).locale = "ru"
    db.commit()
    section = _journey_section(_login(app, "admin").get(f"/leads/{lead.id}").get_data(as_text=True))
    assert "Путь клиента" in section and "Нажал ссылку на телефон" in section and "3 страницы" in section


def test_a_journey_links_visits_by_visitor_id_and_counts_days(app, auth, client, data, db):
    first = db.get(VisitorSession, data.visit)
    first.visitor_id = "v-1"
    earlier = VisitorSession(site_id=data.site, visitor_id="v-1", utm_source="google", utm_campaign="autumn",
                             keyword="red sofa", first_seen=utcnow() - dt.timedelta(days=3, hours=4),
                             last_seen=utcnow() - dt.timedelta(days=3))
    db.add(earlier)
    db.commit()
    _pages(db, data, visit_id=earlier.id, start=utcnow() - dt.timedelta(days=3, hours=4))
    auth.login("admin")
    section = _journey_section(client.get(f"/calls/{data.answered}").get_data(as_text=True))
    assert section.index("Visit 1") < section.index("autumn") < section.index("Visit 2") < section.index("winter-sale")
    assert "same browser" in section and "first visit 3 days ago" in section


def test_the_popup_carries_the_compact_journey(app, client, data, db):
    _pages(db, data)
    call = Call(site_id=data.site, caller_number="+79161234567", state="ringing", started_at=utcnow(),
                routed_manager_id=data.anna, source_id=data.yandex, session_id=data.visit)
    db.add(call)
    db.commit()
    anna = _login(app, "anna")
    (event, card), = _events(anna.get("/live/popup/stream"))
    assert event == "ring" and card["id"] == call.id
    assert card["journey_source"] == f"Yandex Direct · {XSS} / cpc"  # text: popup.js sets textContent
    assert (card["journey_campaign"], card["journey_keyword"]) == ("winter-sale", "buy sofa")
    assert (card["journey_pages"], card["journey_phone_clicks"], card["journey_days"]) == ("3", "1", "0")
    assert card["journey_earlier"] == "1 / 1"  # the answered call (Anna's), its lead
    # the pop-up's template has a line for each, in the page's language
    page = anna.get("/calls/").get_data(as_text=True)
    template = page[page.index('<template id="popup-template">'):]
    for key in ("journey_source", "journey_pages", "journey_phone_clicks", "journey_days", "journey_earlier"):
        assert f'data-f="{key}"' in template
    assert "Phone clicks" in template and "Days since first visit" in template


def test_a_managers_popup_counts_only_their_own_earlier_calls(app, data, db):
    call = Call(site_id=data.site, caller_number="+79161234567", state="ringing", started_at=utcnow(),
                routed_manager_id=data.boris, session_id=data.visit)
    db.add(call)
    db.commit()
    (_, card), = _events(_login(app, "boris").get("/live/popup/stream"))
    assert card["journey_earlier"] == "0 / 0"  # Anna's call and lead stay hers


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def test_the_csv_export_lists_every_page_and_click_with_hostile_text_neutralised(app, auth, client, data, db):
    start = _pages(db, data)
    auth.login("admin")
    response = client.get(f"/journey/call/{data.answered}.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f'filename="journey-call-{data.answered}.csv"' in response.headers["Content-Disposition"]
    header, *rows = _csv(response)
    assert header[:5] == ["visit", "session_id", "linked_by", "visit_started_at", "source"]
    col = {name: i for i, name in enumerate(header)}
    assert [r[col["row"]] for r in rows] == ["page", "page", "page", "tel_link"]
    assert [r[col["url"]] for r in rows] == ["https://shop.example/sofas?utm_source=x",
                                            "https://shop.example/sofas/red", SCRIPT_URL,
                                            "https://shop.example/contacts"]
    assert rows[1][col["title"]] == "'" + HOSTILE_TITLE  # a formula cell becomes text
    assert rows[0][col["utm_source"]] == XSS and rows[0][col["source"]] == "Yandex Direct"
    assert rows[3][col["target"]] == "tel:+74951000000"
    assert dt.datetime.fromisoformat(rows[0][col["at"]]) == start
    assert {r[col["visit"]] for r in rows} == {"1"} and {r[col["linked_by"]] for r in rows} == {"call"}


def test_who_may_read_a_journey(app, client, data, db):
    _pages(db, data)
    lead = db.query(Lead).filter(Lead.call_id == data.answered).one()
    # anonymous: the login page
    for path in (f"/journey/call/{data.answered}.csv", f"/journey/lead/{lead.id}.csv"):
        response = client.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    # another manager: as if the call did not exist
    boris = _login(app, "boris")
    assert boris.get(f"/journey/call/{data.answered}.csv").status_code == 404
    assert boris.get(f"/journey/lead/{lead.id}.csv").status_code == 404
    assert boris.get("/journey/call/999999.csv").status_code == 404
    # the call's own manager and the staff: yes
    assert _login(app, "anna").get(f"/journey/call/{data.answered}.csv").status_code == 200
    assert _login(app, "super").get(f"/journey/call/{data.answered}.csv").status_code == 200


def test_a_manager_sees_only_their_own_earlier_calls_in_the_journey(app, data, db):
    _pages(db, data)
    # the same caller called Boris the day before, from the same visit
    boris_call = Call(site_id=data.site, caller_number="+79161234567", state="finished", outcome="answered",
                      started_at=utcnow() - dt.timedelta(days=1), manager_id=data.boris,
                      routed_manager_id=data.boris, session_id=data.visit)
    db.add(boris_call)
    db.commit()
    admin_html = _journey_section(_login(app, "admin").get(f"/calls/{data.answered}").get_data(as_text=True))
    assert f'href="/calls/{boris_call.id}"' in admin_html
    anna_html = _journey_section(_login(app, "anna").get(f"/calls/{data.answered}").get_data(as_text=True))
    assert f'href="/calls/{boris_call.id}"' not in anna_html
    assert "Yandex Direct" in anna_html  # the visits themselves stay


# ---------------------------------------------------------------- the report


def _report_data(db, data):
    """Three calls with visits: two viewed /a (one of them twice) and /b, one viewed /b only after
    calling (not counted), one has no pages; a fourth call two months ago (outside the period)."""
    now = utcnow()
    calls = []
    for n, (pages, ago) in enumerate([(["/a", "/a", "/b"], 1), (["/a"], 2), (["/late"], 3), ([], 4),
                                      (["/a"], 60 * 24)]):
        visit = VisitorSession(site_id=data.site, first_seen=now - dt.timedelta(hours=ago + 1),
                               last_seen=now - dt.timedelta(hours=ago))
        db.add(visit)
        db.flush()
        call = Call(site_id=data.site, caller_number=f"+7916555000{n}", state="finished", outcome="answered",
                    started_at=now - dt.timedelta(hours=ago), session_id=visit.id)
        db.add(call)
        db.flush()
        for i, path in enumerate(pages):
            late = path == "/late"
            db.add(PageView(session_id=visit.id, site_id=data.site, client_key=f"r{n}-{i}", url=f"https://shop.example{path}",
                            at=call.started_at + dt.timedelta(minutes=5 if late else -10 + i)))
        calls.append(call)
    db.commit()
    return calls


def test_top_pages_before_a_call_counts_calls_not_views(app, auth, client, data, db):
    _report_data(db, data)
    _pages(db, data)  # the seeded call: /sofas?…, /sofas/red, javascript:… an hour before it
    auth.login("admin")
    response = client.get(f"/reports/pages?site={data.site}&format=csv")
    header, *rows = _csv(response)
    assert header == ["site", "url", "calls", "share", "calls_with_pages"]
    got = {r[1]: (int(r[2]), float(r[3]), int(r[4])) for r in rows}
    # calls with pages in the period: the two /a calls and the seeded one (the /late call viewed nothing before)
    assert got["https://shop.example/a"] == (2, pytest.approx(2 / 3, abs=1e-4), 3)
    assert got["https://shop.example/b"] == (1, pytest.approx(1 / 3, abs=1e-4), 3)
    assert "https://shop.example/late" not in got
    assert rows[0][1] == "https://shop.example/a"  # busiest first
    assert got[SCRIPT_URL][0] == 1 and SCRIPT_URL in [r[1] for r in rows]
    page = client.get(f"/reports/pages?site={data.site}").get_data(as_text=True)
    assert "Top pages before a call" in page and 'data-chart-kind="bar"' in page
    assert "66.7%" in page and "https://shop.example/a" in page
    assert 'href="javascript:' not in page


def test_the_report_is_for_staff(app, client, data):
    assert client.get("/reports/pages").status_code == 302
    assert _login(app, "anna").get("/reports/pages").status_code == 403
    assert _login(app, "super").get("/reports/pages").status_code == 200
