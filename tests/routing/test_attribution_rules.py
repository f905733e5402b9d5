"""The confidence rules of attribution, one test per rule (pure functions, no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.routing import attribution as attr
from astertrack.routing.attribution import Attribution, SiteSettings, Visit

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
SHOP = ("shop.example",)


# ---------------------------------------------------------------- a pool number held now


def test_a_number_held_now_without_reuse_is_certain():
    assert attr.pool_hold_score(False, None, 900, False) == (1.0, "held_now", 1)


def test_a_reused_number_is_less_sure_and_says_why():
    confidence, reason, candidates = attr.pool_hold_score(True, None, 900, False)
    assert confidence == attr.REUSED_CONFIDENCE < 1.0
    assert (reason, candidates) == ("reused_number", 1)


def test_a_reused_number_whose_previous_holder_left_within_the_grace_period_is_lower_still():
    contested = attr.pool_hold_score(True, 60, 900, False)
    assert contested == (attr.REUSED_CONTESTED_CONFIDENCE, "reused_contested", 2)
    assert contested[0] < attr.REUSED_CONFIDENCE
    # lost it longer ago than the grace period: only the reuse counts
    assert attr.pool_hold_score(True, 901, 900, False)[1] == "reused_number"


def test_a_previous_holder_does_not_lower_a_hold_that_was_not_reused():
    assert attr.pool_hold_score(False, 10, 900, False) == (1.0, "held_now", 1)


def test_a_hold_that_began_within_the_grace_period_after_another_ended_is_not_certain():
    """The previous holder may be the caller (left and rang later, or wrote the number down)."""
    assert attr.pool_hold_score(False, None, 900, False, 60) == (
        attr.RECENTLY_REASSIGNED_CONFIDENCE, "held_now_reassigned", 2)
    assert attr.pool_hold_score(False, None, 900, False, 900)[1] == "held_now_reassigned"
    assert attr.RECENTLY_REASSIGNED_CONFIDENCE < 1.0
    # the hold began after the grace period: the previous holder could no longer be attributed
    assert attr.pool_hold_score(False, None, 900, False, 901) == (1.0, "held_now", 1)
    # a reused hold keeps its own reasons
    assert attr.pool_hold_score(True, 60, 900, False, 0)[1] == "reused_contested"
    assert attr.pool_hold_score(True, None, 900, False, 0)[1] == "reused_number"


def test_the_gap_runs_from_the_previous_hold_end_to_this_hold_start():
    start = NOW
    assert attr.reassignment_gap(start, NOW - dt.timedelta(minutes=2), NOW + dt.timedelta(minutes=5)) == 120
    # released late by the sweeper: the hold ended at its expiry
    assert attr.reassignment_gap(start, NOW, NOW - dt.timedelta(hours=1)) == 3600
    # released after this hold began (a clock step): no negative gap
    assert attr.reassignment_gap(start, NOW + dt.timedelta(seconds=3), NOW + dt.timedelta(minutes=5)) == 0
    assert attr.reassignment_gap(start, None, None) is None


def test_a_bot_holding_the_number_is_never_above_the_bot_confidence():
    assert attr.pool_hold_score(False, None, 900, True)[0] == attr.BOT_CONFIDENCE
    assert attr.pool_hold_score(True, 5, 900, True)[0] == min(attr.REUSED_CONTESTED_CONFIDENCE, attr.BOT_CONFIDENCE)


# ---------------------------------------------------------------- the pool's fallback number


def test_a_fallback_number_shown_to_one_visit_is_attributed_low():
    assert attr.fallback_score(1) == (attr.FALLBACK_CONFIDENCE, "fallback_single_visit")
    assert 0 < attr.FALLBACK_CONFIDENCE < attr.REUSED_CONTESTED_CONFIDENCE


@pytest.mark.parametrize(("candidates", "reason"), [(0, "fallback_no_visit"), (2, "fallback_ambiguous"),
                                                    (7, "fallback_ambiguous")])
def test_a_fallback_number_shown_to_none_or_several_visits_stays_unattributed(candidates, reason):
    assert attr.fallback_score(candidates) == (0.0, reason)


def test_the_fallback_window_is_ten_minutes_by_default():
    assert attr.FALLBACK_WINDOW_MINUTES == 10


# ---------------------------------------------------------------- direct or not


@pytest.mark.parametrize("fields", [
    {}, {"referrer": "https://shop.example/catalog"}, {"referrer": "https://www.shop.example/"},
    {"referrer": "https://m.shop.example/x"}, {"utm_source": "  "}, {"referrer": ""},
    {"utm_medium": "cpc", "utm_campaign": "winter"},  # no utm_source: Metrica counts it direct too
])
def test_direct_visits(fields):
    assert attr.is_direct(Visit(id=1, **fields), SHOP)


@pytest.mark.parametrize("fields", [
    {"utm_source": "yandex"}, {"gclid": "Cj0K"}, {"yclid": "123"}, {"fbclid": "IwAR"},
    {"referrer": "https://yandex.ru/search/?text=boots"}, {"referrer": "https://notshop.example/"},
])
def test_non_direct_visits(fields):
    assert not attr.is_direct(Visit(id=1, **fields), SHOP)


def test_a_site_without_domains_counts_every_referrer_as_external():
    assert not attr.is_direct(Visit(id=1, referrer="https://shop.example/"), ())
    assert attr.is_direct(Visit(id=1), ())


def test_the_latest_non_direct_visit_wins_and_bots_never_do():
    ad = Visit(id=1, utm_source="yandex", first_seen=NOW - dt.timedelta(days=3))
    search = Visit(id=2, referrer="https://www.google.com/", first_seen=NOW - dt.timedelta(days=1))
    direct = Visit(id=3, first_seen=NOW - dt.timedelta(hours=1))
    bot = Visit(id=4, utm_source="spam", is_bot=True, first_seen=NOW)
    assert attr.latest_non_direct([ad, direct, search, bot], SHOP) == search
    assert attr.latest_non_direct([direct, bot], SHOP) is None


# ---------------------------------------------------------------- when last_non_direct looks back


def _on(visit: Visit | None, kind: str = "dynamic") -> Attribution:
    return Attribution(kind=kind, confidence=1.0, site_id=1, session_id=visit.id if visit else None, visit=visit,
                       reason="held_now")


@pytest.mark.parametrize(("model", "visit", "kind", "looks"), [
    ("last_non_direct", Visit(id=1), "dynamic", True),  # a direct winning visit
    ("last_non_direct", Visit(id=1, referrer="https://shop.example/"), "grace", True),  # own referrer: direct
    ("last_non_direct", Visit(id=1, utm_source="yandex"), "dynamic", False),  # already an ad visit
    ("last_non_direct", None, "static", False),  # no visit (a static number): nothing to replace
    ("last_non_direct", Visit(id=1), "repeat", False),  # first touch chose already
    ("last_touch", Visit(id=1), "dynamic", False),
    ("first_touch", Visit(id=1), "dynamic", False),
])
def test_only_a_direct_winning_visit_on_a_last_non_direct_site_looks_back(model, visit, kind, looks):
    site = SiteSettings(id=1, attribution_model=model, domains=SHOP)
    assert attr.wants_lookback(_on(visit, kind), site) is looks


def test_no_query_when_the_model_does_not_look_back():
    class NoDatabase:
        def execute(self, *args, **kwargs):
            raise AssertionError("the hot path must not query")

    site = SiteSettings(id=1, attribution_model="last_non_direct", domains=SHOP)
    current = _on(Visit(id=1, utm_source="google"))
    assert attr.apply_model(NoDatabase(), None, current, site, "+79161234567", NOW) is current


def test_last_non_direct_is_a_model_the_settings_offer():
    assert attr.ATTRIBUTION_MODELS == ("first_touch", "last_touch", "last_non_direct")


def test_every_reason_is_one_code_of_the_vocabulary():
    assert len(set(attr.REASONS)) == len(attr.REASONS)
    assert attr.UNKNOWN.reason in attr.REASONS
    assert all(len(code) <= 24 for code in attr.REASONS)  # Call.attribution_reason
