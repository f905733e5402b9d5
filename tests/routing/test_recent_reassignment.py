"""A pool number handed to a newcomer soon after another visitor's hold ended (#24, #27): the call
still goes to the holder, but no longer at full confidence, and the card can name the other visit.

Holds are seeded as the allocator writes them (released_at set, at most one live hold per number);
runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, select

from astertrack.db.models import NumberAssignment, TrackingNumber, VisitorSession
from astertrack.routing import attribution as attr
from astertrack.samples.factories import pooled_site

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
GRACE = 900
M = dt.timedelta(minutes=1)


def _visit(session, site, name: str) -> VisitorSession:
    visit = VisitorSession(site_id=site.id, visitor_id=name, landing_page=f"https://x.test/{name}",
                           first_seen=NOW - 7 * 24 * 60 * M, last_seen=NOW)
    session.add(visit)
    session.flush()
    return visit


def _hold(session, number, visit, start: dt.datetime, end: dt.datetime | None, expires: dt.datetime | None = None,
          reused: bool = False) -> None:
    """A hold from ``start`` released at ``end`` (None: live until ``expires``, default an hour on)."""
    session.add(NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=start,
                                 last_heartbeat_at=end or NOW, expires_at=expires or end or NOW + 60 * M,
                                 hard_expires_at=(end or NOW) + 60 * M, released_at=end,
                                 release_reason="unload" if end else None, reused=reused))
    session.flush()


def _setup(session):
    site = pooled_site(session, 2)
    number = session.scalars(select(TrackingNumber).where(TrackingNumber.site_id == site.id)
                             .order_by(TrackingNumber.id)).first()
    return site, number, _visit(session, site, "earlier"), _visit(session, site, "holder")


def _attribute(session, number) -> attr.Attribution:
    session.commit()
    return attr.attribute_number(session, attr.load_directory(session), number.number, NOW, GRACE)


def test_a_caller_who_left_and_rang_minutes_later_makes_the_newcomer_uncertain(session):
    site, number, earlier, holder = _setup(session)
    _hold(session, number, earlier, NOW - 30 * M, NOW - 5 * M)  # left 5 minutes ago
    _hold(session, number, holder, NOW - 4 * M, None)  # the newcomer got it a minute later
    found = _attribute(session, number)
    assert found.session_id == holder.id  # still the holder's call
    assert (found.reason, found.confidence, found.candidates) == (
        "held_now_reassigned", attr.RECENTLY_REASSIGNED_CONFIDENCE, 2)
    assert found.other_session_id == earlier.id


def test_a_number_written_down_days_ago_whose_holders_changed_quickly_is_uncertain(session):
    """The previous hold ended long before the grace period before the call, but the current hold
    began right after it: whoever wrote the number down then could be calling now."""
    site, number, earlier, holder = _setup(session)
    _hold(session, number, earlier, NOW - 3 * 24 * 60 * M, NOW - 3 * 60 * M)
    _hold(session, number, holder, NOW - 3 * 60 * M + 2 * M, None)
    found = _attribute(session, number)
    assert (found.session_id, found.reason, found.other_session_id) == (
        holder.id, "held_now_reassigned", earlier.id)
    assert found.confidence < 1.0


def test_a_hold_that_began_after_the_grace_period_is_still_certain(session):
    site, number, earlier, holder = _setup(session)
    _hold(session, number, earlier, NOW - 120 * M, NOW - 60 * M)
    _hold(session, number, holder, NOW - 60 * M + dt.timedelta(seconds=GRACE + 1), None)
    found = _attribute(session, number)
    assert (found.session_id, found.reason, found.confidence, found.candidates) == (holder.id, "held_now", 1.0, 1)
    assert found.other_session_id is None


def test_a_number_nobody_held_before_is_certain(session):
    site, number, _earlier, holder = _setup(session)
    _hold(session, number, holder, NOW - 2 * M, None)
    found = _attribute(session, number)
    assert (found.reason, found.confidence) == ("held_now", 1.0)


def test_the_same_visit_taking_its_number_again_is_not_a_reassignment(session):
    site, number, _earlier, holder = _setup(session)
    _hold(session, number, holder, NOW - 30 * M, NOW - 10 * M)
    _hold(session, number, holder, NOW - 9 * M, None)
    found = _attribute(session, number)
    assert (found.reason, found.confidence) == ("held_now", 1.0)


def test_the_previous_hold_ended_at_its_expiry_when_the_sweeper_released_it_late(session):
    """The earlier visitor stopped heartbeating an hour ago; the sweeper released the hold only when
    the newcomer came: the newcomer's hold began long after the earlier visitor saw the number."""
    site, number, earlier, holder = _setup(session)
    _hold(session, number, earlier, NOW - 120 * M, NOW - 5 * M, expires=NOW - 60 * M)
    _hold(session, number, holder, NOW - 5 * M, None)
    found = _attribute(session, number)
    assert (found.reason, found.confidence) == ("held_now", 1.0)


def test_a_reused_hold_keeps_its_own_reasons(session):
    site, number, earlier, holder = _setup(session)
    _hold(session, number, earlier, NOW - 30 * M, NOW - 2 * M)
    _hold(session, number, holder, NOW - 2 * M, None, reused=True)
    found = _attribute(session, number)
    assert (found.reason, found.confidence) == ("reused_contested", attr.REUSED_CONTESTED_CONFIDENCE)


def test_a_bot_holder_stays_at_the_bot_confidence(session):
    site, number, earlier, holder = _setup(session)
    holder.is_bot = True
    _hold(session, number, earlier, NOW - 30 * M, NOW - 5 * M)
    _hold(session, number, holder, NOW - 4 * M, None)
    found = _attribute(session, number)
    assert found.reason == "held_now_reassigned"
    assert found.confidence == min(attr.RECENTLY_REASSIGNED_CONFIDENCE, attr.BOT_CONFIDENCE)


def test_the_previous_hold_is_one_statement_on_the_number_and_release_index(session, engine):
    site, number, earlier, holder = _setup(session)
    _hold(session, number, earlier, NOW - 30 * M, NOW - 5 * M)
    _hold(session, number, holder, NOW - 4 * M, None)
    session.commit()
    directory = attr.load_directory(session)
    statements: list[tuple[str, object]] = []

    def listener(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        attr.attribute_number(session, directory, number.number, NOW, GRACE)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 2  # the recent holds, then the previous hold
    previous, parameters = statements[1]
    assert "number_assignments" in previous and "visitor_sessions" not in previous
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + previous, parameters).all()
        else:  # a few rows: tell the planner a scan is not an option, then see which index it takes
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = conn.exec_driver_sql("EXPLAIN " + previous, parameters).all()
    assert "ix_number_assignments_number_released" in " ".join(str(part) for row in plan for part in row)
