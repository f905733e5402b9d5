"""Issue #20: hostile visitors against the public tracker, over real HTTP, on SQLite and PostgreSQL.

Pool draining (one address, many visitor ids), requests that are not a browser's, link-preview
fetchers against in-app browsers, a JSON number that Python refuses to convert, and the CORS
preflight an integration posting ``application/json`` needs.  Distinct client addresses are
real: the whole of 127.0.0.0/8 is loopback, so each "visitor" connects from its own address.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from astertrack.config import SCHEMA
from astertrack.db.engine import session_scope
from astertrack.db.models import NumberAssignment, NumberPool, OverflowEvent, VisitorSession
from astertrack.dni import allocation, poolhealth
from astertrack.dni.bots import is_bot
from astertrack.dni.sources import load_site_routing
from astertrack.samples.factories import FALLBACK_NUMBER, pooled_site
from tests.tracker.conftest import serve

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
ORIGIN = "http://127.0.0.1"  # in pooled_site's domains
BROWSER = {"User-Agent": CHROME, "Origin": ORIGIN}
LIMIT_KEYS = ("max_holds_per_ip", "max_holds_per_visitor", "pool_pressure", "first_hold_seconds")
DEFAULT_LIMITS = {key: SCHEMA["tracker"][key].default for key in LIMIT_KEYS}  # what an installation runs
T0 = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


def request_from(ip: str, method: str, url: str, body=None, headers=None, raw: bytes | None = None):
    """One request from the loopback address ``ip``: (status, parsed JSON or None, headers)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(ip, 0))
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, parts.path, data, {"Content-Type": "text/plain;charset=UTF-8", **(headers or {})})
        response = conn.getresponse()
        payload = response.read()
        return response.status, (json.loads(payload) if payload else None), response.headers
    finally:
        conn.close()


def start_from(ip: str, url: str, key: str, headers=BROWSER, **fields):
    status, body, _ = request_from(ip, "POST", f"{url}/v/start", {"k": key, **fields}, headers)
    assert status == 200, body
    return body


def live_holds(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(NumberAssignment)
                          .where(NumberAssignment.released_at.is_(None)))


# ---------------------------------------------------------------- pool draining


def test_drain_from_one_address_leaves_numbers_for_real_visitors(session, tracker_app):
    """The issue's attack: 20 page loads from one address, each a new visitor id, a browser's user
    agent and the site's own Origin.  With the settings an installation runs, the address holds
    at most max_holds_per_ip numbers and every real visitor still gets one."""
    site = pooled_site(session, 10)
    limit = DEFAULT_LIMITS["max_holds_per_ip"]
    with serve(tracker_app(**DEFAULT_LIMITS)) as url:
        drained = [start_from("127.0.0.2", url, site.public_key, visitor_id=f"drain-{i}", new=True)
                   for i in range(20)]
        real = [start_from(f"127.0.1.{i}", url, site.public_key, visitor_id=f"real-{i}", new=True)
                for i in range(1, 7)]
    taken = [b["number"] for b in drained if b["kind"] == "pool"]
    assert 0 < len(taken) <= limit
    assert all(b["kind"] == "fallback" and b["number"] == FALLBACK_NUMBER for b in drained if b["kind"] != "pool")
    assert [b["kind"] for b in real] == ["pool"] * 6
    assert len({b["number"] for b in real} | set(taken)) == 6 + len(taken)
    refusals = session.scalars(select(OverflowEvent.policy)).all()
    assert refusals == ["limit_ip"] * (20 - len(taken))  # recorded, once per session, not as overflows


def test_a_drain_fired_all_at_once_is_held_to_the_limit(session, tracker_app):
    """Atomic per client: 20 simultaneous requests from one address must not all pass the
    count before any of them holds a number (PostgreSQL runs them in parallel)."""
    site = pooled_site(session, 12)
    barrier = threading.Barrier(20)

    def one(i: int):
        barrier.wait()
        return start_from("127.0.0.2", url, site.public_key, visitor_id=f"burst-{i}", new=True)

    with serve(tracker_app(max_holds_per_ip=3)) as url, ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(one, range(20)))
    assert sum(b["kind"] == "pool" for b in bodies) == 3
    assert live_holds(session) == 3


def test_one_visitor_id_holds_at_most_its_limit_from_any_address(session, tracker_app):
    """A script that keeps its visitor id but claims to be new on every request (``new``: no
    lookup of the earlier session), each time from another address."""
    site = pooled_site(session, 10)
    with serve(tracker_app(max_holds_per_ip=0, max_holds_per_visitor=2)) as url:
        bodies = [start_from(f"127.0.2.{i}", url, site.public_key, visitor_id="same", new=True) for i in range(1, 7)]
    assert [b["kind"] for b in bodies] == ["pool", "pool"] + ["fallback"] * 4
    assert session.scalars(select(OverflowEvent.policy)).all() == ["limit_visitor"] * 4


def test_an_office_behind_one_address_gets_numbers_up_to_the_limit_and_more_as_they_leave(session, tracker_app):
    site = pooled_site(session, 8, grace=1)
    with serve(tracker_app(max_holds_per_ip=3)) as url:
        staff = [start_from("127.0.0.9", url, site.public_key, visitor_id=f"staff-{i}", new=True) for i in range(4)]
        assert [b["kind"] for b in staff] == ["pool", "pool", "pool", "fallback"]
        # the one who got the fallback keeps heartbeating; once a colleague's hold is gone it gets a number
        status, _, _ = request_from("127.0.0.9", "POST", f"{url}/v/leave",
                                    {"k": site.public_key, "sid": staff[0]["sid"]}, BROWSER)
        assert status == 204
        time.sleep(1.2)  # the 1 s unload grace runs out
        status, beat, _ = request_from("127.0.0.9", "POST", f"{url}/v/ping",
                                       {"k": site.public_key, "sid": staff[3]["sid"]}, BROWSER)
    assert status == 200 and beat["kind"] == "pool" and beat["number"] != FALLBACK_NUMBER


def test_a_request_without_a_browser_origin_never_takes_a_pool_number(session, tracker_app):
    site = pooled_site(session, 3)
    with serve(tracker_app()) as url:  # even with every per-client limit off
        scripted = start_from("127.0.0.2", url, site.public_key, headers={"User-Agent": CHROME}, visitor_id="s")
        assert (scripted["kind"], scripted["number"]) == ("fallback", FALLBACK_NUMBER)
        status, beat, _ = request_from("127.0.0.2", "POST", f"{url}/v/ping",
                                       {"k": site.public_key, "sid": scripted["sid"], "interacted": True},
                                       {"User-Agent": CHROME})
        assert status == 200 and beat["kind"] == "fallback"  # nor on a heartbeat
        browser = start_from("127.0.0.3", url, site.public_key, visitor_id="b")
    assert browser["kind"] == "pool"
    assert live_holds(session) == 1
    assert session.scalars(select(OverflowEvent.policy)).all() == ["no_origin"]


# ---------------------------------------------------------------- pool pressure


def _starter(session_factory, site, limits):
    def start(visitor: str, at: dt.datetime, **kwargs) -> allocation.Offer:
        with session_scope(session_factory) as db:
            visit = allocation.clean_visit({"visitor_id": visitor, "user_agent": CHROME})
            return allocation.start(db, site, visit, at, new_visitor=True, limits=limits, **kwargs)

    return start


def test_under_pool_pressure_a_new_number_is_held_briefly_until_the_browser_answers(session_factory):
    limits = allocation.Limits(pool_pressure=0.5, first_hold_seconds=90)
    with session_scope(session_factory) as db:
        site = load_site_routing(db, pooled_site(db, 6, hold=600, heartbeat=60).public_key)
    start = _starter(session_factory, site, limits)
    full, short = T0 + dt.timedelta(seconds=600), T0 + dt.timedelta(seconds=90)
    calm = [start(v, T0) for v in ("a", "b", "c")]  # 0, 1 and 2 of 6 in use: no pressure
    assert [o.expires_at for o in calm] == [full] * 3
    drainer, reader = start("p1", T0), start("p2", T0)  # 3 and 4 of 6: pressure
    assert (drainer.kind, drainer.expires_at, reader.expires_at) == ("pool", short, short)
    touched = start("d", T0, interacted=True)  # an interaction is a real-browser signal
    assert touched.kind == "pool" and touched.expires_at == full
    with session_scope(session_factory) as db:  # the reader's first heartbeat: the full hold from now
        beat = allocation.heartbeat(db, site, reader.session_id, T0 + dt.timedelta(seconds=60), limits=limits)
    assert beat.number == reader.number and beat.expires_at == T0 + dt.timedelta(seconds=660)
    waiting = start("e", T0 + dt.timedelta(seconds=60))
    assert waiting.kind == "fallback"  # all six held
    # the drainer never answered: its number is free after the short hold, for a real visitor
    with session_scope(session_factory) as db:
        later = allocation.heartbeat(db, site, waiting.session_id, T0 + dt.timedelta(seconds=91), limits=limits)
    assert later.kind == "pool" and later.number == drainer.number
    assert later.expires_at == T0 + dt.timedelta(seconds=691)  # taken on a heartbeat: held in full


def test_the_first_hold_is_never_shorter_than_the_first_heartbeat_needs(session_factory):
    limits = allocation.Limits(pool_pressure=0.5, first_hold_seconds=10)
    with session_scope(session_factory) as db:
        site = load_site_routing(db, pooled_site(db, 2, hold=600, heartbeat=120).public_key)
    start = _starter(session_factory, site, limits)
    assert start("x", T0).expires_at == T0 + dt.timedelta(seconds=600)
    assert start("y", T0).expires_at == T0 + dt.timedelta(seconds=150)  # heartbeat + 30 s


# ---------------------------------------------------------------- pool health


def test_pool_health_shows_refused_and_unconfirmed_allocations(session, tracker_app):
    site = pooled_site(session, 10)
    with serve(tracker_app(max_holds_per_ip=2)) as url:
        for i in range(5):
            start_from("127.0.0.2", url, site.public_key, visitor_id=f"d-{i}", new=True)
        start_from("127.0.0.3", url, site.public_key, headers={"User-Agent": CHROME}, visitor_id="curl")
        real = start_from("127.0.0.4", url, site.public_key, visitor_id="r", new=True)
        request_from("127.0.0.4", "POST", f"{url}/v/ping", {"k": site.public_key, "sid": real["sid"]}, BROWSER)
    pool = session.get(NumberPool, site.default_pool_id)
    now = dt.datetime.now(dt.UTC)
    report = poolhealth.pool_health(session, pool, now - dt.timedelta(hours=1), now, now)
    assert report.refused == {"limit_ip": 3, "no_origin": 1}
    assert report.overflow_count == 0 and report.status != "exhausted"  # refusals are not demand
    assert report.unconfirmed == 2  # the drain's two holds saw no heartbeat and no interaction
    assert report.clients[0] == {"ip": "127.0.0.2", "holds": 2, "refused": 3}
    assert "refused" in poolhealth.render_table([report])


# ---------------------------------------------------------------- who is a bot

IN_APP_BROWSERS = {
    "telegram-android": "Mozilla/5.0 (Linux; Android 7.1.2; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "Chrome/119.0.6045.193 Mobile Safari/537.36 Telegram-Android/11.4.3 "
                        "(Samsung SM-G965N; Android 7.1.2; SDK 25; LOW)",
    "whatsapp-android": "Mozilla/5.0 (Linux; Android 10; SM-A205F Build/QP1A.190711.020; wv) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) Version/4.0 Chrome/81.0.4044.138 Mobile Safari/537.36 "
                        "WhatsApp/2.21.9.15 A",
    "whatsapp-ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 15_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    "Mobile/15E148 WhatsApp/2.22.4.74 W",
    "instagram-ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                     "Mobile/15E148 Instagram 295.0.0.32.119 (iPhone15,3; iOS 16_6; en_US; en; scale=3.00; "
                     "1290x2796; 504708567)",
    "instagram-android": "Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 Instagram "
                         "302.0.0.23.114 Android (33/13; 480dpi; 1080x2340; samsung; SM-G991B; o1s; exynos2100; "
                         "ru_RU; 522484326)",
    "facebook-ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    "Mobile/15E148 [FBAN/FBIOS;FBAV/459.0.0.48.110;FBBV/584117445;FBDV/iPhone15,2;FBMD/iPhone;"
                    "FBSN/iOS;FBSV/17.4.1;FBSS/3;FBID/phone;FBLC/fr_FR;FBOP/5;FBRV/0]",
    "facebook-android": "Mozilla/5.0 (Linux; Android 14; Pixel 7 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36 "
                        "[FB_IAB/FB4A;FBAV/453.0.0.36.110;]",
    "vk-android": "Mozilla/5.0 (Linux; Android 13; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
                  "Chrome/116.0.0.0 Mobile Safari/537.36 VKAndroidApp/8.9-13530 (Samsung, SM-G991B; Android 13; "
                  "Scale 3.0; 1080x2265)",
    "electron-slack": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Slack/4.9.0 Chrome/85.0.4183.93 Electron/10.1.1 Safari/537.36 Sonic Slack_SSB/4.9.0",
    "electron-discord": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "discord/1.0.9028 Chrome/108.0.5359.215 Electron/22.3.26 Safari/537.36",
}
LINK_PREVIEWS = {
    "telegram": "TelegramBot (like TwitterBot)",
    "whatsapp": "WhatsApp/2.23.20.0 A",
    "whatsapp-ios": "WhatsApp/2.23.18.78 i",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "vk": "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
    "slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "discord": "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "twitter": "Twitterbot/1.0",
    "skype": "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "yahoo": "Mozilla/5.0 (compatible; Yahoo Link Preview; https://help.yahoo.com/kb/mail/yahoo-link-preview-SLN23615.html)",
    "google-web-preview": "Mozilla/5.0 (en-us) AppleWebKit/525.13 (KHTML, like Gecko; Google Web Preview) "
                          "Version/3.1 Safari/525.13",
    "linkedin": "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
}


@pytest.mark.parametrize("name", sorted(IN_APP_BROWSERS))
def test_in_app_browsers_are_people_and_get_a_pool_number(session, tracker_url, name):
    site = pooled_site(session, 2)
    body = start_from("127.0.0.5", tracker_url, site.public_key, headers={**BROWSER, "User-Agent": IN_APP_BROWSERS[name]},
                      visitor_id=name)
    assert body["kind"] == "pool" and body["number"] != FALLBACK_NUMBER


@pytest.mark.parametrize("name", sorted(LINK_PREVIEWS))
def test_link_preview_fetchers_are_bots(session, tracker_url, name):
    assert is_bot(LINK_PREVIEWS[name])
    site = pooled_site(session, 2)
    body = start_from("127.0.0.5", tracker_url, site.public_key, headers={**BROWSER, "User-Agent": LINK_PREVIEWS[name]},
                      visitor_id=name)
    assert body["kind"] == "bot"


# ---------------------------------------------------------------- malformed requests


def test_a_5000_digit_integer_is_a_400_with_a_message_and_no_traceback(session, tracker_url, caplog):
    site = pooled_site(session, 2)
    raw = b'{"k": "' + site.public_key.encode() + b'", "utm_term": ' + b"7" * 5000 + b"}"
    with caplog.at_level(logging.INFO):
        status, body, _ = request_from("127.0.0.1", "POST", f"{tracker_url}/v/start", raw=raw, headers=BROWSER)
    assert status == 400 and "number" in body["error"] and "digits" in body["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert session.scalar(select(func.count()).select_from(VisitorSession)) == 0


@pytest.mark.parametrize("path", ["/v/start", "/v/ping", "/v/leave"])
def test_preflight_answers_allowed_origins_only(session, tracker_url, path):
    pooled_site(session, 1, domains=("shop.example.ru", "*.example.com"))
    asking = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for origin in ("https://shop.example.ru", "https://www.example.com"):
        status, _, headers = request_from("127.0.0.1", "OPTIONS", f"{tracker_url}{path}",
                                          headers={**asking, "Origin": origin})
        assert status == 204 and headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert "content-type" in headers["Access-Control-Allow-Headers"].lower()
        assert "Origin" in headers["Vary"] and int(headers["Access-Control-Max-Age"]) > 0
    for origin in ("https://evil.example.org", "https://shop.example.ru.evil.org", "null"):
        status, _, headers = request_from("127.0.0.1", "OPTIONS", f"{tracker_url}{path}",
                                          headers={**asking, "Origin": origin})
        assert not [h for h in headers if h.lower().startswith("access-control-")], (origin, dict(headers))
