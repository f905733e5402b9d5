"""Source rules, keyword extraction and bot detection (pure functions)."""

from __future__ import annotations

import pytest

from astertrack.dni.bots import is_bot
from astertrack.dni.sources import (
    SiteRouting,
    SourceRule,
    choose_source,
    extract_keyword,
    parse_conditions,
    route_visit,
    visit_fields,
)

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def rule(id, conditions, kind="static", pool_id=None, static_number=None, fallback=None, priority=100):
    return SourceRule(id=id, name=f"s{id}", kind=kind, channel=None, priority=priority,
                      conditions=parse_conditions(conditions), pool_id=pool_id, fallback_number=fallback,
                      static_number=static_number)


def site(sources=(), default_pool_id=None, default_number="+74950000001", pool_fallbacks=None):
    return SiteRouting(id=1, public_key="k", domains=(), display_format="", hold_seconds=600, heartbeat_seconds=60,
                       hold_cap_seconds=3600, unload_grace_seconds=120, overflow_policy="fallback",
                       lazy_allocation=False, replace_selectors=(), replace_numbers=(),
                       default_number=default_number, default_pool_id=default_pool_id, sources=tuple(sources),
                       pool_fallbacks=pool_fallbacks or {})


@pytest.mark.parametrize("referrer, expected", [
    ("https://yandex.ru/search/?text=%D0%BE%D1%87%D0%BA%D0%B8+%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C&lr=213", "очки купить"),
    ("https://www.google.com/search?q=buy+glasses", "buy glasses"),
    ("https://www.bing.com/search?q=", None),
    ("https://example.com/page", None),
    ("not a url at all", None),
])
def test_keyword_from_search_referrer(referrer, expected):
    assert extract_keyword(None, referrer) == expected


def test_utm_term_wins_over_referrer_query():
    assert extract_keyword("  glasses  ", "https://www.google.com/search?q=other") == "glasses"


def test_rules_all_conditions_must_match_case_insensitively():
    direct = rule(1, [{"field": "utm_source", "op": "equals", "value": "Yandex"},
                      {"field": "utm_medium", "op": "prefix", "value": "cpc"}])
    fields = visit_fields({"utm_source": "yandex", "utm_medium": "CPC_search"})
    assert choose_source((direct,), fields) is direct
    assert choose_source((direct,), visit_fields({"utm_source": "yandex"})) is None


def test_referrer_host_regex_present_and_absent():
    organic = rule(1, [{"field": "referrer_host", "op": "regex", "value": r"(^|\.)(google|yandex)\.[a-z.]+$"},
                       {"field": "utm_source", "op": "absent"}])
    ads = rule(2, [{"field": "gclid", "op": "present"}])
    fields = visit_fields({"referrer": "https://www.google.co.uk/search?q=x"})
    assert choose_source((ads, organic), fields) is organic
    assert choose_source((ads, organic), visit_fields({"referrer": "https://www.google.com/", "gclid": "abc"})) is ads
    assert choose_source((organic,), visit_fields({"referrer": "https://evilgoogle.com/"})) is None


def test_first_matching_source_by_order_wins_and_empty_rules_never_match():
    catch_all = rule(1, [])
    a = rule(2, [{"field": "utm_campaign", "op": "contains", "value": "sale"}])
    b = rule(3, [{"field": "utm_campaign", "op": "contains", "value": "summer"}])
    fields = visit_fields({"utm_campaign": "summer_sale"})
    assert choose_source((catch_all, a, b), fields) is a


@pytest.mark.parametrize("bad, message", [
    ({"field": "utm_source"}, "must be a list"),
    ([{"field": "cookie", "op": "equals", "value": "x"}], "unknown field"),
    ([{"field": "utm_source", "op": "like", "value": "x"}], "unknown op"),
    ([{"field": "utm_source", "op": "regex", "value": "(unclosed"}], "invalid regular expression"),
    (["utm_source"], "expected an object"),
])
def test_bad_rules_are_refused_with_a_message(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_conditions(bad)


def test_routes_static_pool_default():
    static = rule(1, [{"field": "utm_medium", "op": "equals", "value": "email"}], static_number="+74951112233")
    dynamic = rule(2, [{"field": "utm_source", "op": "equals", "value": "google"}], kind="dynamic", pool_id=7,
                   fallback="+74951110000")
    routing = site((static, dynamic), default_pool_id=9, pool_fallbacks={9: "+74959990000"})
    assert route_visit(routing, {"utm_medium": "email"}).number == "+74951112233"
    pool = route_visit(routing, {"utm_source": "google"})
    assert (pool.kind, pool.pool_id, pool.number) == ("pool", 7, "+74951110000")
    default = route_visit(routing, {})
    assert (default.kind, default.pool_id, default.number, default.source) == ("pool", 9, "+74959990000", None)
    plain = route_visit(site(), {})
    assert (plain.kind, plain.number) == ("default", "+74950000001")


@pytest.mark.parametrize("ua, webdriver, bot", [
    (CHROME, False, False),
    (CHROME, True, True),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", False, True),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
     False, True),
    ("curl/8.5.0", False, True),
    ("", False, True),
    (None, False, True),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.0 Mobile/15E148 Safari/604.1", False, False),
])
def test_bot_detection(ua, webdriver, bot):
    assert is_bot(ua, webdriver) is bot
