"""Attribution that says how sure it is (#24), through the real FastAGI route.

Each test seeds what the tracker would have written (holds, overflows, visits), plays a recorded
Asterisk session (tests/fixtures/asterisk/agi) at the server and reads the call row: kind,
confidence, reason, candidates and the winning visit.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.db.models import Call, NumberAssignment, OverflowEvent, Source
from astertrack.db.types import utcnow
from astertrack.routing import attribution as attr
from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import recording
from tests.agi.fake_asterisk import FakeAsterisk, run

POOL_NUMBERS = ["+74950000501", "+74950000502"]
FALLBACK = "+74950000599"  # what the pool shows when full: not a tracking number


def call_to(fake: FakeAsterisk, did: str, name: str = "pjsip_fastagi_1") -> dict[str, str]:
    rec = recording(name)
    env = FakeAsterisk.environment(rec, overrides={"agi_extension": did.lstrip("+"), "agi_dnid": did.lstrip("+")},
                                   script="inbound")
    return run(fake.session(env, variables={"CHANNEL(linkedid)": rec.env_dict.get("agi_uniqueid", "")})).variables


def the_call(session, variables: dict[str, str]) -> Call:
    session.expire_all()
    return session.execute(select(Call).where(Call.call_uid == variables[v.CALL_ID])).scalar_one()


def pool_site(seed, fallback: str | None = FALLBACK):
    pool, numbers = seed.pool("main", "vk-ads", POOL_NUMBERS)
    pool.fallback_number = fallback
    seed.rule("all", seed.group("all", seed.managers("101")))
    return pool, numbers


def pool_source(seed) -> Source:
    """The pool's dynamic source: the source of every visit that overflowed it."""
    return seed.session.execute(select(Source).where(Source.name == "vk-ads")).scalar_one()


def overflow(seed, pool, visit, minutes_ago: float, policy: str = "fallback") -> None:
    seed.session.add(OverflowEvent(site_id=seed.site.id, pool_id=pool.id, session_id=visit.id, policy=policy,
                                   occurred_at=utcnow() - dt.timedelta(minutes=minutes_ago)))
    seed.session.flush()


def taken_over(seed, number, displaced, newcomer, displaced_ago: float) -> None:
    """reuse_oldest as the allocator records it: the displaced hold released 'reused', the new one flagged."""
    now = utcnow()
    at = now - dt.timedelta(seconds=displaced_ago)
    seed.session.add(NumberAssignment(number_id=number.id, session_id=displaced.id, assigned_at=at - dt.timedelta(
        minutes=20), last_heartbeat_at=at - dt.timedelta(minutes=15), expires_at=at, hard_expires_at=at,
        released_at=at, release_reason="reused"))
    seed.session.add(NumberAssignment(number_id=number.id, session_id=newcomer.id, assigned_at=at,
                                      last_heartbeat_at=now, expires_at=now + dt.timedelta(minutes=10),
                                      hard_expires_at=now + dt.timedelta(hours=1), reused=True))
    seed.session.flush()


# ---------------------------------------------------------------- reused numbers


def test_call_on_a_number_held_normally_is_certain_and_says_so(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    seed.assign(number, seed.visit(seed.source("yandex-cpc"), utm_source="yandex"))
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, number.number))

    assert (call.attribution_kind, call.attribution_confidence) == ("dynamic", 1.0)
    assert (call.attribution_reason, call.attribution_candidates) == ("held_now", 1)


def test_call_on_reused_number_has_lower_confidence(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    ads = seed.source("yandex-cpc")
    displaced = seed.visit(ads, utm_campaign="displaced")
    newcomer = seed.visit(ads, utm_campaign="newcomer")
    taken_over(seed, number, displaced, newcomer, displaced_ago=3600)  # long before the 900 s grace period
    seed.commit()
    _, fake = agi

    got = call_to(fake, number.number)

    call = the_call(session, got)
    assert got[v.CAMPAIGN] == "newcomer" and call.session_id == newcomer.id
    assert call.attribution_confidence == attr.REUSED_CONFIDENCE < 1.0
    assert (call.attribution_reason, call.attribution_candidates) == ("reused_number", 1)


def test_call_on_a_number_reused_moments_ago_is_lower_still_since_either_visitor_could_call(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    ads = seed.source("yandex-cpc")
    displaced, newcomer = seed.visit(ads), seed.visit(ads)
    taken_over(seed, number, displaced, newcomer, displaced_ago=120)
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, number.number))

    assert call.session_id == newcomer.id
    assert call.attribution_confidence == attr.REUSED_CONTESTED_CONFIDENCE < attr.REUSED_CONFIDENCE
    assert (call.attribution_reason, call.attribution_candidates) == ("reused_contested", 2)


# ---------------------------------------------------------------- the pool's fallback number


def test_call_to_fallback_number_with_one_visit_is_attributed_low(agi, seed, session):
    pool, _ = pool_site(seed)
    ads = pool_source(seed)
    visit = seed.visit(ads, utm_source="vk", utm_campaign="spring", last_seen=utcnow())
    overflow(seed, pool, visit, minutes_ago=3)
    earlier = seed.visit(ads, last_seen=utcnow() - dt.timedelta(minutes=40))  # left long ago
    overflow(seed, pool, earlier, minutes_ago=45)
    seed.commit()
    _, fake = agi

    got = call_to(fake, FALLBACK)

    call = the_call(session, got)
    assert got[v.CAMPAIGN] == "spring" and got[v.SOURCE] == "vk-ads"
    assert call.attribution_kind == "fallback" and call.session_id == visit.id and call.site_id == seed.site.id
    assert call.attribution_confidence == attr.FALLBACK_CONFIDENCE
    assert (call.attribution_reason, call.attribution_candidates) == ("fallback_single_visit", 1)


def test_call_to_fallback_number_with_two_visits_stays_unknown_with_candidates(agi, seed, session):
    pool, _ = pool_site(seed)
    ads = pool_source(seed)
    for minutes in (2, 6):
        overflow(seed, pool, seed.visit(ads, last_seen=utcnow() - dt.timedelta(minutes=1)), minutes_ago=minutes)
    seed.commit()
    _, fake = agi

    got = call_to(fake, FALLBACK)

    call = the_call(session, got)
    assert got[v.SOURCE] == "" and call.session_id is None and call.source_id is None
    assert (call.attribution_kind, call.attribution_confidence) == ("unknown", 0.0)
    assert (call.attribution_reason, call.attribution_candidates) == ("fallback_ambiguous", 2)
    assert call.site_id == seed.site.id  # the number is this site's fallback, so its hours and rules apply


def test_a_visitor_who_got_a_pool_number_after_the_overflow_is_no_fallback_candidate(agi, seed, session):
    pool, (number, _) = pool_site(seed)
    ads = pool_source(seed)
    shown = seed.visit(ads, utm_campaign="shown", last_seen=utcnow())
    overflow(seed, pool, shown, minutes_ago=5)
    moved_on = seed.visit(ads, last_seen=utcnow())  # overflowed, then took a freed pool number 20 min ago
    overflow(seed, pool, moved_on, minutes_ago=30)
    seed.assign(number, moved_on, now=utcnow() - dt.timedelta(minutes=15))
    bot = seed.visit(ads, is_bot=True, last_seen=utcnow())
    overflow(seed, pool, bot, minutes_ago=1)
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, FALLBACK))

    assert call.session_id == shown.id and call.attribution_reason == "fallback_single_visit"


def test_call_to_the_site_default_number_used_as_fallback_with_no_recent_visit_keeps_default(agi, seed, session):
    seed.site.default_number = "+74950000500"
    pool_site(seed, fallback=None)  # the pool has none: visitors see the site's default number
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, "+74950000500"))

    assert (call.attribution_kind, call.attribution_confidence) == ("default", 0.0)
    assert (call.attribution_reason, call.attribution_candidates) == ("fallback_no_visit", 0)


# ---------------------------------------------------------------- last non-direct


def _journey(seed, number, **direct_fields):
    """Yesterday an ad visit; today a direct return visit of the same person holds a pool number."""
    seed.site.attribution_model = "last_non_direct"
    ads = seed.source("yandex-cpc")
    ad_visit = seed.visit(ads, utm_source="yandex", utm_medium="cpc", utm_campaign="boots", visitor_id="v-1",
                          first_seen=utcnow() - dt.timedelta(days=1))
    direct = seed.visit(None, referrer="https://shop.example/catalog", first_seen=utcnow() - dt.timedelta(minutes=5),
                        **direct_fields)
    seed.assign(number, direct)
    seed.commit()
    return ad_visit, direct


def test_last_non_direct_keeps_the_ad_source_over_a_direct_return_visit(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    ad_visit, _direct = _journey(seed, number, visitor_id="v-1")
    _, fake = agi

    got = call_to(fake, number.number)

    call = the_call(session, got)
    assert got[v.SOURCE] == "yandex-cpc" and got[v.CAMPAIGN] == "boots"
    assert call.session_id == ad_visit.id and call.attribution_kind == "non_direct"
    assert call.attribution_reason == "last_non_direct"
    assert call.attribution_confidence == attr.LAST_NON_DIRECT_CONFIDENCE


def test_last_non_direct_links_the_visits_by_metrica_id_too(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    ad_visit, direct = _journey(seed, number, visitor_id="another-browser-id")
    ad_visit.ym_client_id = direct.ym_client_id = "1700000000123"
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, number.number))

    assert call.session_id == ad_visit.id and call.attribution_reason == "last_non_direct"


def test_last_non_direct_links_the_visits_by_an_earlier_call_of_the_same_number(agi, seed, session):
    pool, (first_number, second_number) = pool_site(seed)
    seed.site.attribution_model = "last_non_direct"
    ad_visit = seed.visit(seed.source("google-cpc"), gclid="Cj0KCQ", first_seen=utcnow() - dt.timedelta(days=2))
    seed.assign(first_number, ad_visit)
    seed.commit()
    _, fake = agi
    first = the_call(session, call_to(fake, first_number.number))  # +79161234567 calls from the ad visit
    assert first.session_id == ad_visit.id and first.attribution_reason == "held_now"
    direct = seed.visit(None, visitor_id="new-device", first_seen=utcnow() - dt.timedelta(minutes=3))
    seed.assign(second_number, direct)
    seed.commit()

    again = the_call(session, call_to(fake, second_number.number))  # the same caller, a direct visit today

    assert again.session_id == ad_visit.id and again.attribution_reason == "last_non_direct"
    assert again.source.name == "google-cpc" and again.is_first_call is False


def test_a_direct_visit_stays_the_winner_on_a_last_touch_site(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    _ad_visit, direct = _journey(seed, number, visitor_id="v-1")
    seed.site.attribution_model = "last_touch"
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, number.number))

    assert call.session_id == direct.id and call.attribution_reason == "held_now"


def test_last_non_direct_ignores_ad_visits_before_the_attribution_window(agi, seed, session):
    _pool, (number, _) = pool_site(seed)
    ad_visit, direct = _journey(seed, number, visitor_id="v-1")
    seed.site.attribution_window_days = 7
    ad_visit.first_seen = utcnow() - dt.timedelta(days=8)
    seed.commit()
    _, fake = agi

    call = the_call(session, call_to(fake, number.number))

    assert call.session_id == direct.id and call.attribution_kind == "dynamic"
