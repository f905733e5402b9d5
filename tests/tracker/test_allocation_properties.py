"""Property tests: random arrivals, page loads, heartbeats, unloads, sweeps and the passing
of time against a small pool, checked step by step against a plain-Python model.

Invariants: no number is ever live for two sessions; every visitor is shown a number; a
visitor gets a pool number exactly when the model has one free; overflow events are counted
exactly (once per session that met a full pool)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from astertrack.db.engine import session_scope
from astertrack.db.models import NumberAssignment, OverflowEvent, TrackingNumber
from astertrack.dni import allocation
from astertrack.dni.sources import load_site_routing
from astertrack.samples.factories import FALLBACK_NUMBER, pooled_site

POOL = 3
HOLD, CAP, GRACE = 30, 100, 5
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@dataclass
class ModelSession:
    public_id: str
    visitor_id: str
    number: str | None = None
    expires: int = 0
    hard: int = 0
    last_seen: int = 0
    overflowed: bool = False

    def live(self, now: int) -> bool:
        return self.number is not None and self.expires > now

    def alive(self, now: int) -> bool:
        return self.last_seen > now - HOLD


class Model:
    def __init__(self, pool_numbers: set[str]):
        self.pool = pool_numbers
        self.sessions: list[ModelSession] = []
        self.overflows = 0
        self.now = 0

    def free(self) -> set[str]:
        held = {s.number for s in self.sessions if s.live(self.now)}
        return self.pool - held

    def take(self, session: ModelSession, offer) -> None:
        """Check an allocation attempt against the model and apply it."""
        free = self.free()
        if free:
            assert offer.kind == "pool", f"a number was free ({free}) but got {offer.kind}"
            assert offer.number in free, f"{offer.number} is not free; free: {free}"
            session.number = offer.number
            session.hard = self.now + CAP
            session.expires = min(self.now + HOLD, session.hard)
        else:
            assert offer.kind == "fallback" and offer.number == FALLBACK_NUMBER
            session.number = None
            if not session.overflowed:
                session.overflowed = True
                self.overflows += 1

    def extend(self, session: ModelSession, offer) -> None:
        assert offer.number == session.number and offer.kind == "pool"
        session.expires = min(self.now + HOLD, session.hard)


arrival = st.tuples(st.just("arrive"), st.integers(0, 0))
operation = st.one_of(
    arrival, arrival, arrival,
    st.tuples(st.just("page"), st.integers(0, 20)),
    st.tuples(st.just("heartbeat"), st.integers(0, 20)),
    st.tuples(st.just("unload"), st.integers(0, 20)),
    st.tuples(st.just("wait"), st.sampled_from([1, 3, 4, 7, 20, 31, 60])),
    st.tuples(st.just("sweep"), st.integers(0, 0)),
)


def check_traffic_against_model(session_factory, ops):
    with session_scope(session_factory) as db:
        site_row = pooled_site(db, POOL, hold=HOLD, cap=CAP, grace=GRACE)
        site = load_site_routing(db, site_row.public_key)
        pool_numbers = set(db.scalars(select(TrackingNumber.number).where(TrackingNumber.pool_id == site.default_pool_id)))
    model = Model(pool_numbers)

    def at() -> dt.datetime:
        return T0 + dt.timedelta(seconds=model.now)

    for op, arg in ops:
        if op == "wait":
            model.now += arg
            continue
        with session_scope(session_factory) as db:
            if op == "sweep":
                allocation.release_expired(db, at())
            elif op == "arrive" or not model.sessions:
                visitor = f"v{len(model.sessions)}"
                offer = allocation.start(db, site, allocation.clean_visit({"visitor_id": visitor, "user_agent": UA}), at())
                ms = ModelSession(offer.session_id, visitor, last_seen=model.now)
                model.take(ms, offer)
                model.sessions.append(ms)
            else:
                ms = model.sessions[arg % len(model.sessions)]
                if op == "page":
                    visit = allocation.clean_visit({"visitor_id": ms.visitor_id, "user_agent": UA})
                    offer = allocation.start(db, site, visit, at(), session_public_id=ms.public_id)
                    if ms.live(model.now):
                        model.extend(ms, offer)
                        ms.last_seen = model.now
                    elif ms.alive(model.now):
                        ms.last_seen = model.now
                        assert offer.session_id == ms.public_id
                        model.take(ms, offer)
                    else:  # visit over: a new session for the same visitor
                        assert offer.session_id != ms.public_id
                        fresh = ModelSession(offer.session_id, ms.visitor_id, last_seen=model.now)
                        model.take(fresh, offer)
                        model.sessions.append(fresh)
                elif op == "heartbeat":
                    offer = allocation.heartbeat(db, site, ms.public_id, at())
                    if ms.live(model.now):
                        model.extend(ms, offer)
                        ms.last_seen = model.now
                    elif ms.alive(model.now):
                        ms.last_seen = model.now
                        model.take(ms, offer)
                    else:
                        assert offer is not None and not offer.live
                elif op == "unload":
                    allocation.unload(db, site, ms.public_id, at())
                    if ms.live(model.now):
                        ms.expires = min(ms.expires, model.now + GRACE)
                    ms.last_seen = model.now
        _check_invariants(session_factory, site, model, at())
    event(f"overflows: {min(model.overflows, 3)}+" if model.overflows >= 3 else f"overflows: {model.overflows}")


def _check_invariants(session_factory, site, model: Model, now: dt.datetime) -> None:
    with session_scope(session_factory) as db:
        live_rows = db.execute(
            select(NumberAssignment.number_id, func.count())
            .join(TrackingNumber, TrackingNumber.id == NumberAssignment.number_id)
            .where(TrackingNumber.pool_id == site.default_pool_id, NumberAssignment.released_at.is_(None),
                   NumberAssignment.expires_at > now)
            .group_by(NumberAssignment.number_id)).all()
        assert all(count == 1 for _, count in live_rows), f"double assignment: {live_rows}"
        assert len(live_rows) == POOL - len(model.free())
        overflows = db.scalar(select(func.count()).select_from(OverflowEvent).where(OverflowEvent.site_id == site.id))
        assert overflows == model.overflows
        assert allocation.live_count(db, site.default_pool_id, now) == len(live_rows)


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=8, max_size=40))
def test_random_traffic_never_double_assigns_and_counts_overflows(session_factory, ops):
    check_traffic_against_model(session_factory, ops)


def test_least_recently_released_number_is_chosen_first(session_factory):
    with session_scope(session_factory) as db:
        site_row = pooled_site(db, 3, hold=HOLD, cap=CAP, grace=GRACE)
        site = load_site_routing(db, site_row.public_key)
    first = []
    with session_scope(session_factory) as db:
        for i in range(3):
            first.append(allocation.start(db, site, allocation.clean_visit({"visitor_id": f"a{i}", "user_agent": UA}),
                                          T0 + dt.timedelta(seconds=i)))
    # release in the order 2, 0, 1 (unloads at different times), then let the holds run out
    with session_scope(session_factory) as db:
        for delay, index in ((10, 2), (11, 0), (12, 1)):
            allocation.unload(db, site, first[index].session_id, T0 + dt.timedelta(seconds=delay))
    with session_scope(session_factory) as db:
        allocation.release_expired(db, T0 + dt.timedelta(seconds=60))
    with session_scope(session_factory) as db:
        offer = allocation.start(db, site, allocation.clean_visit({"visitor_id": "b", "user_agent": UA}),
                                 T0 + dt.timedelta(seconds=70))
    assert offer.number == first[2].number


def test_reuse_oldest_policy_takes_idle_number_and_flags_it(session_factory):
    with session_scope(session_factory) as db:
        site_row = pooled_site(db, 2, hold=HOLD, cap=CAP, grace=GRACE, policy="reuse_oldest")
        site = load_site_routing(db, site_row.public_key)
    with session_scope(session_factory) as db:
        a = allocation.start(db, site, allocation.clean_visit({"visitor_id": "a", "user_agent": UA}), T0)
        b = allocation.start(db, site, allocation.clean_visit({"visitor_id": "b", "user_agent": UA}), T0)
    with session_scope(session_factory) as db:
        allocation.heartbeat(db, site, a.session_id, T0 + dt.timedelta(seconds=5))
    with session_scope(session_factory) as db:
        c = allocation.start(db, site, allocation.clean_visit({"visitor_id": "c", "user_agent": UA}),
                             T0 + dt.timedelta(seconds=6))
    assert c.kind == "reused" and c.number == b.number
    with session_scope(session_factory) as db:
        events = db.scalars(select(OverflowEvent).where(OverflowEvent.site_id == site.id)).all()
        assert [e.policy for e in events] == ["reuse_oldest"]
        reasons = db.scalars(select(NumberAssignment.release_reason)
                             .where(NumberAssignment.released_at.is_not(None))).all()
        assert "reused" in reasons
    with session_scope(session_factory) as db:
        # b's next heartbeat finds its number gone and none free: the fallback (never a
        # second take-over), and b's lost visit is counted as an overflow too
        offer = allocation.heartbeat(db, site, b.session_id, T0 + dt.timedelta(seconds=7))
        assert offer.kind == "fallback" and offer.number == FALLBACK_NUMBER
        again = allocation.heartbeat(db, site, b.session_id, T0 + dt.timedelta(seconds=8))
        assert again.kind == "fallback"
        events = db.scalars(select(OverflowEvent.policy).where(OverflowEvent.site_id == site.id)
                            .order_by(OverflowEvent.id)).all()
        assert events == ["reuse_oldest", "fallback"]


def test_heartbeat_racing_a_takeover_does_not_keep_a_released_number(session_factory):
    """The hold is looked up as live, then released by another transaction before the
    heartbeat's update: the update must not revive it (and the caller re-allocates)."""
    with session_scope(session_factory) as db:
        site_row = pooled_site(db, 1, hold=HOLD, cap=CAP, grace=GRACE)
        site = load_site_routing(db, site_row.public_key)
    with session_scope(session_factory) as db:
        offer = allocation.start(db, site, allocation.clean_visit({"visitor_id": "a", "user_agent": UA}), T0)
    with session_scope(session_factory) as db:
        row = allocation._find_session(db.connection(), site, offer.session_id, None, T0)
        assert row.a_id is not None
    with session_scope(session_factory) as db:
        number_id = db.scalar(select(TrackingNumber.id).where(TrackingNumber.number == offer.number))
        assert allocation.release_for_call(db, number_id, T0 + dt.timedelta(seconds=1))
    with session_scope(session_factory) as db:
        assert allocation._extend(db.connection(), site, row, T0 + dt.timedelta(seconds=2)) is None
    with session_scope(session_factory) as db:
        again = allocation.heartbeat(db, site, offer.session_id, T0 + dt.timedelta(seconds=3))
    assert again.kind == "pool" and again.number == offer.number  # freed by the call, taken again
