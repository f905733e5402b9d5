"""The adaptive hold under a simulated pool shortage (issue #24): stale holds end early when a
new visitor needs a number and the pool is short, active holds are kept, the option off changes
nothing, pool health counts the early ends, and the released visitor keeps the grace period."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from astertrack.db.models import NumberAssignment, NumberPool, OverflowEvent, TrackingNumber, VisitorSession
from astertrack.dni import allocation, poolhealth
from astertrack.dni.sources import load_site_routing
from astertrack.routing import attribution
from astertrack.samples.factories import pooled_site
from tests.tracker.conftest import post

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
GRACE = 900


def _visit(name: str) -> dict:
    return allocation.clean_visit({"visitor_id": name, "user_agent": UA, "landing_page": f"https://x.test/{name}"})


def _start(session, routing, name: str, at: dt.datetime) -> allocation.Offer:
    offer = allocation.start(session, routing, _visit(name), at)
    session.commit()
    return offer


def _beat(session, routing, offer: allocation.Offer, at: dt.datetime) -> allocation.Offer | None:
    beat = allocation.heartbeat(session, routing, offer.session_id, at)
    session.commit()
    return beat


def _hold_of(session, offer: allocation.Offer) -> NumberAssignment:
    return session.scalars(select(NumberAssignment).join(VisitorSession)
                           .where(VisitorSession.public_id == offer.session_id)
                           .order_by(NumberAssignment.id.desc())).first()


def _shortage(session, *, adaptive: bool, policy: str = "fallback", percent: int = 20):
    """A pool of 3, three holders at T0; only ``a`` keeps sending heartbeats (every minute);
    at T0 + 4 min a fourth visitor arrives."""
    site = pooled_site(session, 3, heartbeat=60, hold=600, policy=policy, adaptive_hold=adaptive,
                       adaptive_free_percent=percent)
    routing = load_site_routing(session, site.public_key)
    holders = {name: _start(session, routing, name, T0) for name in "abc"}
    assert all(o.kind == "pool" for o in holders.values())
    for minute in (1, 2, 3, 4):
        _beat(session, routing, holders["a"], T0 + minute * 60 * S)
    arrival = T0 + 4 * 60 * S + 5 * S
    newcomer = _start(session, routing, "d", arrival)
    return site, routing, holders, newcomer, arrival


def test_shortage_ends_stale_holds_and_the_new_visitor_gets_a_number(session):
    site, routing, holders, newcomer, arrival = _shortage(session, adaptive=True)
    assert newcomer.kind == "pool"
    a, b, c = (_hold_of(session, holders[n]) for n in "abc")
    # the active holder keeps its number; the two silent ones ended now, as adaptive
    assert a.released_at is None and a.expires_at > arrival
    for stale in (b, c):
        assert stale.released_at == arrival and stale.release_reason == allocation.ADAPTIVE
    numbers = {holders[n].number for n in "bc"}
    assert newcomer.number in numbers
    assert newcomer.number != holders["a"].number
    # the other stale number is free again: the next visitor takes it, nobody overflows
    fifth = _start(session, routing, "e", arrival + S)
    assert fifth.kind == "pool" and {newcomer.number, fifth.number} == numbers
    assert session.scalar(select(OverflowEvent.id).where(OverflowEvent.site_id == site.id)) is None
    # the active visitor's heartbeat still holds its number
    assert _beat(session, routing, holders["a"], arrival + 10 * S).number == holders["a"].number


def test_active_holders_are_never_cut(session):
    site = pooled_site(session, 3, heartbeat=60, adaptive_hold=True, adaptive_free_percent=50)
    routing = load_site_routing(session, site.public_key)
    holders = [_start(session, routing, name, T0) for name in "abc"]
    for minute in (1, 2, 3):
        for offer in holders:
            _beat(session, routing, offer, T0 + minute * 60 * S)
    # the last heartbeat a minute ago (one interval, not two): still active
    newcomer = _start(session, routing, "d", T0 + 4 * 60 * S)
    assert newcomer.kind == "fallback"
    assert all(_hold_of(session, o).released_at is None for o in holders)
    assert session.scalar(select(OverflowEvent.policy).where(OverflowEvent.site_id == site.id)) == "fallback"


@pytest.mark.parametrize("policy, kind", [("fallback", "fallback"), ("reuse_oldest", "reused")])
def test_option_off_behaves_as_before(session, policy, kind):
    site, _routing, holders, newcomer, arrival = _shortage(session, adaptive=False, policy=policy)
    assert newcomer.kind == kind
    ended = session.scalars(select(NumberAssignment.release_reason).join(TrackingNumber)
                            .join(NumberPool).where(NumberPool.site_id == site.id,
                                                    NumberAssignment.released_at.is_not(None))).all()
    assert allocation.ADAPTIVE not in ended
    assert session.scalar(select(OverflowEvent.policy).where(OverflowEvent.site_id == site.id)) == policy
    if policy == "fallback":
        assert ended == []
    else:  # the silent holder idle the longest lost its number, flagged as reused
        assert ended == ["reused"] and newcomer.number in {holders["b"].number, holders["c"].number}


def test_threshold_ends_stale_holds_before_the_pool_is_empty(session):
    """Pool of 4, threshold 50 %: the visitor who leaves one number free takes a free one, and
    the silent holder's hold ends so that two are free again; at 20 % nothing ends yet."""
    for percent, ends in ((50, True), (20, False)):
        site = pooled_site(session, 4, heartbeat=60, adaptive_hold=True, adaptive_free_percent=percent)
        routing = load_site_routing(session, site.public_key)
        active, silent = _start(session, routing, "a", T0), _start(session, routing, "b", T0)
        for minute in (1, 2, 3):
            _beat(session, routing, active, T0 + minute * 60 * S)
        third = _start(session, routing, "c", T0 + 200 * S)
        assert third.kind == "pool" and third.number not in {active.number, silent.number}
        hold = _hold_of(session, silent)
        assert (hold.release_reason == allocation.ADAPTIVE) is ends
        assert _hold_of(session, active).released_at is None
        assert allocation.live_count(session, site.default_pool_id, T0 + 200 * S) == (2 if ends else 3)


def test_pool_health_counts_the_early_ends(session):
    site, _routing, _holders, _newcomer, arrival = _shortage(session, adaptive=True)
    pool = session.get(NumberPool, site.default_pool_id)
    later = arrival + 60 * S
    report = poolhealth.pool_health(session, pool, T0, later, later)
    assert report.adaptive_ended == 2
    assert report.adaptive_share == 1.0  # the only holds that ended in the window
    assert report.as_dict()["adaptive_ended"] == 2
    assert "ended early" in poolhealth.render_table([report])
    before = poolhealth.pool_health(session, pool, T0, arrival, arrival)
    assert before.adaptive_ended == 0


def test_a_call_from_a_visitor_whose_hold_ended_early_is_still_theirs(session):
    _site, routing, holders, newcomer, arrival = _shortage(session, adaptive=True)
    # the stale number nobody took since: a call on it two minutes later is the released visitor's
    free_number = ({holders["b"].number, holders["c"].number} - {newcomer.number}).pop()
    owner = next(holders[n] for n in "bc" if holders[n].number == free_number)
    call_at = arrival + 120 * S
    result = attribution.attribute_number(session, attribution.load_directory(session), free_number, call_at,
                                          grace_seconds=GRACE)
    owner_row = session.scalar(select(VisitorSession).where(VisitorSession.public_id == owner.session_id))
    assert result.kind == "grace" and result.reason == "released_recently"
    assert result.session_id == owner_row.id
    assert result.confidence == attribution.grace_confidence(120, GRACE, 1)
    # the number handed over is the newcomer's, at full confidence
    taken = attribution.attribute_number(session, attribution.load_directory(session), newcomer.number, call_at,
                                         grace_seconds=GRACE)
    newcomer_row = session.scalar(select(VisitorSession).where(VisitorSession.public_id == newcomer.session_id))
    assert taken.session_id == newcomer_row.id


def test_through_the_tracker_over_http(session, tracker_url):
    """The tracker's own connection (autocommit on PostgreSQL): two silent holders of a pool of 2
    (their last heartbeat moved five minutes back), a third visitor gets a pool number."""
    site = pooled_site(session, 2, heartbeat=60, adaptive_hold=True)
    first = [post(f"{tracker_url}/v/start", {"k": site.public_key, "visitor_id": name}, {"User-Agent": UA})[1]
             for name in "ab"]
    assert [body["kind"] for body in first] == ["pool", "pool"]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    session.execute(update(NumberAssignment).values(last_heartbeat_at=past))
    session.commit()
    status, third, _ = post(f"{tracker_url}/v/start", {"k": site.public_key, "visitor_id": "c"}, {"User-Agent": UA})
    assert status == 200 and third["kind"] == "pool"
    reasons = session.scalars(select(NumberAssignment.release_reason)
                              .where(NumberAssignment.released_at.is_not(None))).all()
    assert reasons == [allocation.ADAPTIVE, allocation.ADAPTIVE]
    assert session.scalar(select(OverflowEvent.id).where(OverflowEvent.site_id == site.id)) is None
