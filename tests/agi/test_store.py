"""agi.store on its own, on both backends and on the AGI's own engines (``agi.database``: on
PostgreSQL in autocommit): the parts of a decision a call flow might not reach (id lists of other
lengths, the round-robin position read alongside, a write that fails half-way, the hold committed
before the call's record, the record in one statement on PostgreSQL)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import threading
import time

import pytest
from sqlalchemy import event, select

from agi import store
from agi.database import agi_engine, close_engine
from agi.settings import AgiSettings
from agi.snapshot import ManagerProfile
from astertrack.db.models import Call, CallerProfile, Manager, RoutingRule
from astertrack.routing import attribution as attr
from astertrack.routing import reservations
from astertrack.routing.rules import ManagerView, RuleView
from tests.agi.conftest import make_config

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
def engine(db_url, tmp_path):
    """The daemon's engine for this database, as ``AgiApp`` makes it."""
    engine = agi_engine(make_config(tmp_path, db_url), checkpoint_thread=False)
    yield engine
    close_engine(engine)


@pytest.fixture
def six_managers(session):
    """Six managers (the third paused, odd ones routed before) and a rule whose cursor is 7."""
    rule = RoutingRule(name="sales", rr_cursor=7)
    rows = [Manager(name=f"M{i}", endpoint=f"PJSIP/{100 + i}", extension=str(100 + i), paused=(i == 3),
                    last_routed_at=NOW - dt.timedelta(minutes=i) if i % 2 else None) for i in range(1, 7)]
    session.add_all([rule, *rows])
    session.commit()
    profiles = {m.id: ManagerProfile(endpoint=m.endpoint, name=m.name, extension=m.extension, schedule={})
                for m in rows}
    return rule, [m.id for m in rows], profiles


def test_an_id_list_of_any_length_is_bound_as_one_value_of_one_statement(engine, session_factory, six_managers):
    """The statement's text does not depend on the list's length: compiled once by SQLAlchemy,
    prepared once by PostgreSQL (an expanding IN renders one placeholder per id)."""
    rule, ids, profiles = six_managers
    sent = []

    def capture(_conn, _cursor, statement, parameters, *_args):
        if statement.startswith("SELECT"):  # not SQLite's BEGIN
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with store.read_connection(session_factory) as conn:
            found = [set(store.load_managers(conn, set(ids[:n]), NOW, "c1", profiles, rule.id)[0]) for n in (1, 2, 6)]
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert found == [{ids[0]}, {ids[0], ids[1]}, set(ids) - {ids[2]}]
    assert len({statement for statement, _ in sent}) == 1
    assert len(sent[-1][1]) == len(sent[0][1])  # the same number of parameters for 1 id and for 6


@pytest.mark.parametrize("picked", [[0, 1], [0, 1, 2, 3, 4, 5], [3]])
def test_manager_reads_take_any_length_of_id_list_and_the_cursor_in_the_same_row(
        session_factory, six_managers, picked):
    rule, ids, profiles = six_managers
    wanted = {ids[i] for i in picked}
    with store.read_connection(session_factory) as conn:
        views, cursor = store.load_managers(conn, wanted, NOW, "c1", profiles, rule.id)
    assert cursor == 7
    assert set(views) == wanted - {ids[2]}  # the paused manager is filtered out by the query
    for view in views.values():
        assert view.endpoint == profiles[view.id].endpoint  # the rest comes from the snapshot
        if view.last_routed_at is not None:
            assert view.last_routed_at.tzinfo is not None and view.last_routed_at < NOW


def test_a_manager_held_for_another_call_is_left_out_unless_the_hold_is_ours(session_factory, six_managers):
    _, ids, profiles = six_managers
    with store.write_session(session_factory) as conn:
        assert reservations.reserve(conn, ids[0], "call-a", NOW, 15)
        conn.commit()
    with store.read_connection(session_factory) as conn:
        theirs, cursor = store.load_managers(conn, {ids[0], ids[1]}, NOW, "call-b", profiles)
        ours, _ = store.load_managers(conn, {ids[0], ids[1]}, NOW, "call-a", profiles)
    assert set(theirs) == {ids[1]} and cursor is None
    assert set(ours) == {ids[0], ids[1]}


def test_a_write_that_fails_half_way_is_rolled_back_and_frees_the_next_writer(session_factory, six_managers):
    _, ids, _ = six_managers
    with pytest.raises(RuntimeError), store.write_session(session_factory) as conn:
        assert reservations.reserve(conn, ids[1], "call-a", NOW, 15)
        raise RuntimeError("the step failed half-way")
    with store.write_session(session_factory) as conn:  # would wait for ever on a leaked lock
        assert reservations.reserve(conn, ids[1], "call-b", NOW, 15)  # call-a's hold never existed
        conn.rollback()
    with store.read_connection(session_factory) as conn:
        assert conn.execute(Manager.__table__.select().where(Manager.id == ids[1])).first().reserved_call_uid is None


def test_every_value_of_the_call_row_is_bound_by_the_insert():
    """``CALL_ROW_COLUMNS`` lists what ``_call_row`` fills: a value added to one and not the other
    would be dropped from every call's record without an error."""
    plan = store.Plan(call_uid="c", now=NOW, rule=None, timezone=None, is_first_call=True, history=None,
                      info=store.CallerInfo(did=None, caller=None, caller_raw=None, caller_name=None,
                                            uniqueid=None, linkedid=None),
                      attribution=attr.Attribution(kind="unknown", confidence=0.0))
    row = store._call_row(plan, store.Decision(call_uid="c"), [], AgiSettings())
    assert list(row) == list(store.CALL_ROW_COLUMNS)
    assert set(row) <= {column.name for column in Call.__table__.columns}


def test_the_call_is_recorded_in_one_statement_on_postgresql(engine, session_factory, six_managers):
    """PostgreSQL: after the hold, the call row, the caller's new profile and the round-robin
    move go in one round trip; SQLite runs the same three statements in its one transaction."""
    rule_row, ids, _ = six_managers
    rule_id = rule_row.id
    rule = RuleView(id=rule_id, name="rr", strategy="round_robin", member_ids=tuple(ids))
    plan = store.Plan(call_uid="call-1", now=NOW, rule=rule, timezone=None, is_first_call=True, history=None,
                      info=store.CallerInfo(did="+74950000101", caller="+79161234567", caller_raw=None,
                                            caller_name="Olga", uniqueid="1.1", linkedid="1.1"),
                      attribution=attr.Attribution(kind="unknown", confidence=0.0))
    statements = []
    listen = functools.partial(event.listen, engine, "before_cursor_execute")
    listen(record := lambda _c, _cur, statement, *_a: statements.append(statement.split(None, 1)[0]))
    try:
        decision = store.commit_inbound(session_factory, plan, [ManagerView(id=ids[1], endpoint="PJSIP/102")],
                                        AgiSettings(), True)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [m.id for m in decision.managers] == [ids[1]]
    if engine.dialect.name == "postgresql":
        assert statements == ["UPDATE", "WITH"]
    else:
        assert statements == ["BEGIN", "UPDATE", "INSERT", "INSERT", "UPDATE"]  # BEGIN IMMEDIATE
    with store.read_connection(session_factory) as conn:
        call = conn.execute(select(Call.routed_manager_id, Call.transferred, Call.lead_channel)
                            .where(Call.call_uid == "call-1")).one()
        profile = conn.execute(select(CallerProfile.name, CallerProfile.calls_count, CallerProfile.is_vip,
                                      CallerProfile.tags).where(CallerProfile.number == "+79161234567")).one()
        rule_after = conn.execute(select(RoutingRule.rr_cursor, RoutingRule.name, RoutingRule.site_id)
                                  .where(RoutingRule.id == rule_id)).one()
    assert tuple(call) == (ids[1], False, "call")
    assert tuple(profile) == ("Olga", 1, False, [])
    assert tuple(rule_after) == (ids[1], "sales", None)  # the cursor moved, nothing else of the rule


def test_the_hold_is_committed_before_the_call_is_recorded(engine, session_factory, six_managers):
    """PostgreSQL: a concurrent call that wants the same manager waits for the reservation only,
    not for the whole record of the call that took it: the hold is visible, and the row free of
    locks, while the call row is still being written.  SQLite: one transaction for the whole step
    (its writers queue on the database lock anyway)."""
    _, ids, _ = six_managers
    plan = store.Plan(call_uid="call-a", now=NOW, rule=None, timezone=None, is_first_call=True, history=None,
                      info=store.CallerInfo(did="+74950000101", caller=None, caller_raw=None, caller_name=None,
                                            uniqueid="1.1", linkedid="1.1"),
                      attribution=attr.Attribution(kind="unknown", confidence=0.0))
    recording, go = threading.Event(), threading.Event()

    def pause_at_the_call_row(_conn, _cursor, statement, *_args):  # PostgreSQL: inside the one statement
        if "INSERT INTO calls" in statement:
            recording.set()
            go.wait(10)

    event.listen(engine, "before_cursor_execute", pause_at_the_call_row)
    writer = concurrent.futures.ThreadPoolExecutor(1)
    try:
        decided = writer.submit(store.commit_inbound, session_factory, plan,
                                [ManagerView(id=ids[0], endpoint="PJSIP/101")], AgiSettings(), True)
        assert recording.wait(10), decided.exception(0)
        with store.read_connection(session_factory) as conn:
            held = conn.execute(select(Manager.reserved_call_uid).where(Manager.id == ids[0])).scalar_one()
        if engine.dialect.name == "sqlite":
            assert held is None  # not committed before the call's record
        else:
            assert held == "call-a"
            with store.write_session(session_factory) as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                started = time.monotonic()
                assert not reservations.reserve(conn, ids[0], "call-b", NOW, 15)
                assert time.monotonic() - started < 1.0
                conn.rollback()
    finally:
        go.set()
        decision = decided.result(10)
        writer.shutdown()
        event.remove(engine, "before_cursor_execute", pause_at_the_call_row)
    assert [m.id for m in decision.managers] == [ids[0]]
    with store.read_connection(session_factory) as conn:
        row = conn.execute(select(Call.routed_manager_id, Call.state).where(Call.call_uid == "call-a")).one()
    assert tuple(row) == (ids[0], "ringing")


def test_a_decision_whose_record_failed_is_run_again_and_keeps_its_manager(engine, session_factory, six_managers):
    """The record fails after the hold (PostgreSQL: already committed); the step run again, as
    ``run_with_retry`` does, renews the call's own hold instead of losing the manager."""
    _, ids, _ = six_managers
    plan = store.Plan(call_uid="call-a", now=NOW, rule=None, timezone=None, is_first_call=True, history=None,
                      info=store.CallerInfo(did="+74950000101", caller=None, caller_raw=None, caller_name=None,
                                            uniqueid="1.1", linkedid="1.1"),
                      attribution=attr.Attribution(kind="unknown", confidence=0.0))
    failures = [RuntimeError("connection lost while recording the call")]

    def fail_once_at_the_call_row(_conn, _cursor, statement, *_args):
        if "INSERT INTO calls" in statement and failures:
            raise failures.pop()

    free = [ManagerView(id=ids[0], endpoint="PJSIP/101")]
    event.listen(engine, "before_cursor_execute", fail_once_at_the_call_row)
    try:
        with pytest.raises(RuntimeError):
            store.commit_inbound(session_factory, plan, free, AgiSettings(), True)
        decision = store.commit_inbound(session_factory, plan, free, AgiSettings(), True)
    finally:
        event.remove(engine, "before_cursor_execute", fail_once_at_the_call_row)
    assert [m.id for m in decision.managers] == [ids[0]]
    with store.read_connection(session_factory) as conn:
        assert conn.execute(select(Call.routed_manager_id).where(Call.call_uid == "call-a")).scalars().all() == [ids[0]]
        assert conn.execute(select(Manager.reserved_call_uid).where(Manager.id == ids[0])).scalar_one() == "call-a"
