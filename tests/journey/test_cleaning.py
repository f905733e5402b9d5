"""The pure parts of the journey, without a database: URL and text cleaning, IP anonymisation and
the batch validation the tracker relies on."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.journey import ingest
from astertrack.journey.cleaning import allowed_params, anonymise_ip, clean_target, clean_text, clean_url

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("url, expected", [
    ("https://Shop.Example/p?utm_source=ya&UTM_Term=x&token=SECRET&gclid=1&_openstat=o#frag",
     "https://shop.example/p?utm_source=ya&UTM_Term=x&gclid=1&_openstat=o"),
    ("https://user:pass@shop.example:8443/a?email=me%40x.ru", "https://shop.example:8443/a"),
    ("http://[::1]/x?msclkid=m&yclid=y&fbclid=f", "http://[::1]/x?msclkid=m&yclid=y&fbclid=f"),
    ("javascript:alert(1)", None), ("ftp://x/", None), ("", None), (None, None), (42, None), ("https:///nohost", None),
])
def test_clean_url_keeps_only_utm_and_click_ids(url, expected):
    assert clean_url(url) == expected


def test_a_site_may_keep_more_parameters_case_insensitively():
    allowed = allowed_params(["Page", " color ", "", 5, "x" * 100])
    assert allowed == frozenset({"page", "color"})
    assert clean_url("https://s.example/?page=2&Color=red&session=1", allowed) == "https://s.example/?page=2&Color=red"


def test_clean_url_caps_length():
    assert len(clean_url("https://s.example/" + "a" * 5000)) == 2048


def test_clean_text_drops_control_characters_and_caps():
    assert clean_text("a\x00b\nc\x1b[1m\u2028d  e", 100) == "a b c [1m d e"
    assert clean_text("\ud800x", 10) == "?x"
    assert clean_text("я" * 50, 10) == "я" * 10
    assert clean_text({"x": 1}, 10) is None and clean_text(True, 10) is None and clean_text("   ", 5) is None


def test_clean_target_drops_what_the_visitor_typed_into_links():
    assert clean_target("https://wa.me/79990000000?text=my+name") == "https://wa.me/79990000000"
    assert clean_target("viber://chat?number=%2B7999") == "viber://chat"
    assert clean_target("tel:+74950000000") == "tel:+74950000000"
    assert clean_target("+7 (495) 000-00-00") == "+7 (495) 000-00-00"


@pytest.mark.parametrize("ip, expected", [
    ("203.0.113.77", "203.0.113.0"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1::"),
    ("::ffff:198.51.100.9", "198.51.100.0"), ("not an ip", None), (None, None), ("", None),
])
def test_anonymise_ip_zeroes_the_host_part(ip, expected):
    assert anonymise_ip(ip) == expected


def test_parse_batch_dates_by_age_dedupes_and_keeps_the_longest_time_on_page():
    batch = ingest.parse_batch([
        {"t": "p", "id": "v1", "d": 60_000, "u": "https://s.example/a", "s": 5},
        {"t": "p", "id": "v1", "d": 60_000, "u": "https://s.example/a", "s": 30},
        {"t": "p", "id": "v1", "d": 60_000, "u": "https://s.example/a", "s": 10},
        {"t": "a", "id": "c1", "d": 10**12, "k": "phone_click", "x": "8 800 000 00 00"},
        {"t": "a", "id": "c1", "k": "tel_link"},
    ], NOW)
    assert len(batch) == 2  # one page load, one action
    view, = batch.pageviews
    assert view["at"] == NOW - dt.timedelta(minutes=1) and view["seconds_on_page"] == 30
    action, = batch.actions
    assert action["kind"] == "phone_click" and action["at"] == NOW - dt.timedelta(days=1)  # capped age


def test_parse_batch_clamps_numbers_and_refuses_nan_and_booleans():
    view, = ingest.parse_batch([{"t": "p", "id": "v", "u": "https://s.example/", "s": 10**9, "d": -5}], NOW).pageviews
    assert view["seconds_on_page"] == ingest.MAX_SECONDS and view["at"] == NOW
    for bad in (float("nan"), True, "1"):
        with pytest.raises(ingest.BatchError) as err:
            ingest.parse_batch([{"t": "p", "id": "v", "u": "https://s.example/", "s": bad}], NOW)
        assert err.value.status == 400 and "field 's'" in err.value.message
