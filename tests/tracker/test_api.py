"""The tracker API over real HTTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import urllib.request

from sqlalchemy import func, select

from astertrack.db.models import NumberAssignment, OverflowEvent, VisitorSession
from astertrack.samples.factories import (
    DEFAULT_NUMBER,
    add_dynamic_source,
    add_pool,
    add_static_source,
    number_range,
    pooled_site,
)
from tests.tracker.conftest import post, serve

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
HEADERS = {"User-Agent": UA}


def start(url, key, **fields):
    return post(f"{url}/v/start", {"k": key, **fields}, HEADERS)


def test_start_returns_formatted_number_and_keeps_it_across_pages(session, tracker_url):
    site = pooled_site(session, 3, display_format="8 (XXX) XXX-XX-XX")
    status, body, _ = start(tracker_url, site.public_key, visitor_id="v1", landing_page="https://example.ru/")
    assert status == 200
    assert body["kind"] == "pool" and body["number"].startswith("+7")
    digits = body["number"][2:]
    assert body["display"] == f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"
    assert body["expires_at"].endswith("Z") and body["selectors"] == [".phone"]
    # next page of the same visit: same session, same number
    status, again, _ = start(tracker_url, site.public_key, visitor_id="v1", sid=body["sid"])
    assert (again["sid"], again["number"]) == (body["sid"], body["number"])
    # another tab without the session id: recognised by the first-party visitor id
    _, tab, _ = start(tracker_url, site.public_key, visitor_id="v1")
    assert (tab["sid"], tab["number"]) == (body["sid"], body["number"])
    # a different visitor gets a different number
    _, other, _ = start(tracker_url, site.public_key, visitor_id="v2")
    assert other["number"] != body["number"] and other["sid"] != body["sid"]
    row = session.scalar(select(VisitorSession).where(VisitorSession.public_id == body["sid"]))
    assert row.page_views == 3 and row.user_agent == UA and row.ip == "127.0.0.1"


def test_heartbeat_extends_and_leave_shortens_the_hold(session, tracker_url):
    site = pooled_site(session, 2, hold=600, grace=30)
    _, body, _ = start(tracker_url, site.public_key, visitor_id="v1")
    status, beat, _ = post(f"{tracker_url}/v/ping", {"k": site.public_key, "sid": body["sid"],
                                                      "page": "https://example.ru/next"}, HEADERS)
    assert status == 200 and beat["number"] == body["number"] and beat["expires_at"] >= body["expires_at"]
    status, _, _ = post(f"{tracker_url}/v/leave", {"k": site.public_key, "sid": body["sid"]}, HEADERS)
    assert status == 204
    session.expire_all()
    assignment = session.scalar(select(NumberAssignment))
    held = (assignment.expires_at - assignment.last_heartbeat_at).total_seconds()
    assert held <= 31 and assignment.released_at is None
    status, gone, _ = post(f"{tracker_url}/v/ping", {"k": site.public_key, "sid": "0" * 32}, HEADERS)
    assert status == 200 and gone == {"live": False}


def test_exhausted_pool_gives_fallback_and_records_overflow(session, tracker_url):
    site = pooled_site(session, 1)
    _, first, _ = start(tracker_url, site.public_key, visitor_id="a")
    _, second, _ = start(tracker_url, site.public_key, visitor_id="b", utm_source="yandex")
    assert first["kind"] == "pool"
    assert second["kind"] == "fallback" and second["number"] == "+74957770000"
    event = session.scalar(select(OverflowEvent))
    assert event.policy == "fallback" and event.visitor["utm_source"] == "yandex"


def test_sources_pick_static_number_or_their_own_pool(session, tracker_url):
    site = pooled_site(session, 2)
    add_static_source(session, site, "Email", ["+74958880000"], priority=10,
                      match_rules=[{"field": "utm_medium", "op": "equals", "value": "email"}])
    direct_pool = add_pool(session, site, "Direct", number_range("+74997000000", 2))
    add_dynamic_source(session, site, "Direct", direct_pool, priority=20, fallback_number="+74958880009",
                       match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"},
                                    {"field": "utm_medium", "op": "prefix", "value": "cpc"}])
    session.commit()
    _, email, _ = start(tracker_url, site.public_key, visitor_id="e", utm_medium="EMAIL")
    assert (email["kind"], email["number"]) == ("static", "+74958880000")
    _, direct, _ = start(tracker_url, site.public_key, visitor_id="d", utm_source="yandex", utm_medium="cpc_search",
                         debug=True)
    assert direct["kind"] == "pool" and direct["number"].startswith("+7499700000")
    assert direct["debug"]["source"] == "Direct (dynamic)"
    _, plain, _ = start(tracker_url, site.public_key, visitor_id="p")
    assert plain["kind"] == "pool" and not plain["number"].startswith("+7499700000")


def test_bots_get_the_static_number_and_no_pool_number(session, tracker_url):
    site = pooled_site(session, 2)
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    status, bot, _ = post(f"{tracker_url}/v/start", {"k": site.public_key, "visitor_id": "g"},
                          {"User-Agent": googlebot})
    assert status == 200 and bot["kind"] == "bot" and bot["number"] == "+74957770000"
    _, automated, _ = start(tracker_url, site.public_key, visitor_id="w", wd=True)
    assert automated["kind"] == "bot"
    assert session.scalar(select(func.count()).select_from(NumberAssignment)) == 0
    assert session.scalar(select(func.count()).select_from(VisitorSession).where(VisitorSession.is_bot)) == 2


def test_lazy_allocation_waits_for_interaction(session, tracker_url):
    site = pooled_site(session, 2, lazy=True)
    _, lazy, _ = start(tracker_url, site.public_key, visitor_id="l")
    assert lazy["kind"] == "lazy" and lazy["number"] == "+74957770000"
    assert session.scalar(select(func.count()).select_from(NumberAssignment)) == 0
    _, claimed, _ = start(tracker_url, site.public_key, visitor_id="l", sid=lazy["sid"], interacted=True)
    assert claimed["kind"] == "pool" and claimed["sid"] == lazy["sid"]


def test_site_without_pool_shows_default_number(session, tracker_url):
    site = pooled_site(session, 0, with_default_pool=False)
    _, body, _ = start(tracker_url, site.public_key, visitor_id="x")
    assert (body["kind"], body["number"]) == ("default", DEFAULT_NUMBER)


def test_hostile_input_is_refused_with_a_message(session, tracker_url):
    site = pooled_site(session, 2)
    url = f"{tracker_url}/v/start"
    status, body, _ = post(url, None, HEADERS, raw=b'{"k": "' + site.public_key.encode() + b'", "utm_source": ')
    assert status == 400 and body["error"].startswith("invalid JSON")
    status, body, _ = post(url, None, HEADERS, raw=b'{"k": "\xff\xfe"}')
    assert status == 400 and "UTF-8" in body["error"]
    status, body, _ = post(url, None, HEADERS, raw=b"x" * (1024 * 1024))
    assert status == 413 and "too large" in body["error"]
    status, body, _ = post(url, None, HEADERS, raw=b"[1, 2]")
    assert status == 400 and body["error"] == "expected a JSON object"
    status, body, _ = post(url, None, HEADERS, raw=b"")
    assert status == 400
    status, body, _ = post(url, {"visitor_id": "x"}, HEADERS)
    assert status == 400 and "site key" in body["error"]
    status, body, _ = post(url, {"k": "nope"}, HEADERS)
    assert status == 404
    assert session.scalar(select(func.count()).select_from(VisitorSession)) == 0


def test_hostile_values_are_stored_as_text_and_capped(session, tracker_url):
    site = pooled_site(session, 2)
    script = '<script>window.__pwned=1</script>"><img src=x onerror=alert(1)>'
    status, body, _ = start(tracker_url, site.public_key, visitor_id="h", utm_source=script,
                            utm_campaign="a\u0000b\ud800c", referrer="https://r.example/" + "x" * 10000,
                            utm_medium={"nested": ["object"]}, utm_term=12345)
    assert status == 200
    row = session.scalar(select(VisitorSession).where(VisitorSession.public_id == body["sid"]))
    assert row.utm_source == script
    assert row.utm_campaign == "ab?c"  # NUL dropped, lone surrogate replaced
    assert len(row.referrer) == 2048
    assert row.utm_medium is None and row.utm_term == "12345" and row.keyword == "12345"


def test_cors_only_for_the_site_domains(session, tracker_url):
    site = pooled_site(session, 2, domains=("shop.example.ru", "*.example.com"))
    for origin in ("https://shop.example.ru", "https://www.example.com", "http://example.com"):
        status, _, headers = post(f"{tracker_url}/v/start", {"k": site.public_key},
                                  {**HEADERS, "Origin": origin})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == origin
    for origin in ("https://evil.example.org", "https://shop.example.ru.evil.org", "null"):
        status, body, headers = post(f"{tracker_url}/v/start", {"k": site.public_key},
                                     {**HEADERS, "Origin": origin})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_rate_limit_per_ip(session, tracker_app):
    site = pooled_site(session, 2)
    with serve(tracker_app(rate_limit_per_minute=5)) as url:
        statuses = [post(f"{url}/v/start", {"k": site.public_key}, HEADERS)[0] for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]


def test_snippet_is_served_small_and_cacheable(tracker_url):
    with urllib.request.urlopen(f"{tracker_url}/v.js") as response:
        body = response.read()
        assert response.headers["Content-Type"].startswith("application/javascript")
        assert "max-age" in response.headers["Cache-Control"] and response.headers["ETag"]
    assert len(gzip.compress(body, 9)) <= 5 * 1024
    assert b"innerHTML" not in body and b"eval(" not in body


def test_app_builds_its_own_tuned_engine(session, db_url):
    from sqlalchemy import text

    from tests.tracker.conftest import tracker_config
    from tracker import create_app, tracker_engine

    site = pooled_site(session, 1)
    config = tracker_config(db_url)
    app = create_app(config)
    client = app.test_client()
    response = client.post("/v/start", data=f'{{"k": "{site.public_key}", "visitor_id": "e"}}',
                           headers={"User-Agent": UA, "Origin": "http://localhost"})
    assert response.status_code == 200 and response.json["kind"] == "pool"
    engine = tracker_engine(config)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "off"
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_generic_plan"
    engine.dispose()


def test_health_and_metrics_endpoints(db_url, session_factory):
    import json as _json

    from tests.tracker.conftest import tracker_config
    from tracker import create_app

    config = tracker_config(db_url)
    config.values["general"]["metrics_token"] = "t0ken"  # the public tracker serves metrics to its holder only
    with serve(create_app(config, session_factory=session_factory)) as tracker_url:
        with urllib.request.urlopen(f"{tracker_url}/healthz") as response:
            assert response.status == 200 and _json.loads(response.read())["status"] == "ok"
        request = urllib.request.Request(f"{tracker_url}/metrics", headers={"Authorization": "Bearer t0ken"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 200 and b"# HELP" in response.read()
