"""agi.lean_sqlite: the decision's statements give what SQLAlchemy gives, without its execution.

SQLite only by nature (it is the inline path of a local file); the routes' own tests run it
on every decision they make on SQLite, and these check the parts a route might not reach:
IN lists of other lengths, Python-side column defaults, RETURNING, rowcounts, fixed values,
transactions, the bounded statement cache.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from sqlalchemy import bindparam, literal, select
from sqlalchemy.exc import MultipleResultsFound

from agi import lean_sqlite, store
from agi.lean_sqlite import LeanFactory
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Base, Call, CallerProfile, Manager, RoutingRule
from astertrack.routing import reservations

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
def lean(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'lean.db'}")
    Base.metadata.create_all(engine)
    factory = LeanFactory(make_session_factory(engine))
    with factory() as session:
        session.add(RoutingRule(name="sales", rr_cursor=7))
        session.add_all([Manager(name=f"M{i}", endpoint=f"PJSIP/{100 + i}", extension=str(100 + i),
                                 paused=(i == 3), last_routed_at=NOW - dt.timedelta(minutes=i) if i % 2 else None)
                         for i in range(1, 7)])
        session.commit()
    yield factory
    factory.close()
    engine.dispose()


def both(factory: LeanFactory, statement, params: dict) -> tuple[list, list]:
    """The statement's rows through SQLAlchemy and through the lean connection."""
    with factory.kw["bind"].connect() as conn:
        expected = conn.execute(statement, params).all()
    with factory.transaction(write=False) as conn:
        got = conn.execute(statement, params).all()
    return expected, got


@pytest.mark.parametrize("ids", [[1, 2], [1, 2, 3, 4, 5, 6], [4]])
def test_manager_reads_match_sqlalchemy_for_any_length_of_in_list(lean, ids):
    params = {"ids": ids, "now": NOW, "call_uid": "c1", "rule_id": 1}
    expected, got = both(lean, store._LOAD_MANAGERS_RR, params)
    assert got == [tuple(row) for row in expected] and got  # same values, same order
    assert 3 not in [row.id for row in got] or 3 not in ids  # the paused manager is filtered by SQL
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.last_routed_at == theirs.last_routed_at and mine.rr_cursor == 7
        if mine.last_routed_at is not None:
            assert mine.last_routed_at.tzinfo is not None  # the UTCDateTime type ran on the result


def test_an_insert_gets_the_columns_python_defaults_and_its_types_processed(lean):
    with lean.transaction(write=True) as conn:
        conn.execute(store._CALL_INSERT, {"did": "+74950000101", "routing_tried": [3, 5], "is_first_call": True})
        conn.commit()
    with lean() as session:
        call = session.scalars(select(Call)).one()
    assert len(call.call_uid) == 32 and call.node == "pbx1" and call.state == "ringing"
    assert call.routing_tried == [3, 5] and call.is_first_call is True and call.transferred is False
    assert abs((dt.datetime.now(dt.UTC) - call.started_at).total_seconds()) < 5
    with lean.transaction(write=True) as conn:  # the callable default runs per execution
        conn.execute(store._CALL_INSERT, {"did": "+74950000101", "routing_tried": [], "is_first_call": False})
        conn.commit()
    with lean() as session:
        assert len(set(session.scalars(select(Call.call_uid)))) == 2


def test_returning_rowcount_and_conflicts(lean):
    profile = {"site_id": None, "number": "+79161234567", "name": "Ivan", "first_call_at": NOW,
               "first_source_id": None, "first_session_id": None, "last_call_at": NOW, "last_source_id": None,
               "last_session_id": None, "calls_count": 1, "tags": ["vip"], "personal_manager_id": None,
               "personal_manager_at": None}
    with lean.transaction(write=True) as conn:
        created = conn.execute(store._PROFILE_INSERT["sqlite"], profile).first()
        again = conn.execute(store._PROFILE_INSERT["sqlite"], {**profile, "site_id": None}).first()
        assert created is not None and created.id >= 1
        assert again is None or again.id != created.id  # NULL site ids never conflict in SQL
        assert reservations.reserve(conn, 1, "call-a", NOW, 15) is True
        assert reservations.reserve(conn, 1, "call-b", NOW, 15) is False  # held for call-a
        assert reservations.release(conn, "call-a") == 1
        conn.commit()
    with lean() as session:
        row = session.get(CallerProfile, created.id)
        assert row.tags == ["vip"] and row.first_call_at == NOW


def test_values_fixed_in_the_statement_and_scalar_helpers(lean):
    statement = select(Manager.id, literal("fixed").label("tag"), bindparam("given", value=41) + 1).where(
        Manager.id <= bindparam("upto"))
    expected, got = both(lean, statement, {"upto": 2})
    assert got == [tuple(row) for row in expected] == [(1, "fixed", 42), (2, "fixed", 42)]
    assert got[0].tag == "fixed"
    with lean.transaction(write=False) as conn:
        one = select(Manager.id).where(Manager.id == bindparam("id"))
        assert conn.execute(one, {"id": 2}).scalar_one_or_none() == 2
        assert conn.execute(one, {"id": 99}).scalar_one_or_none() is None
        with pytest.raises(MultipleResultsFound):
            conn.execute(select(Manager.id), {}).scalar_one_or_none()


def test_a_transaction_left_without_commit_is_rolled_back(lean):
    with lean.transaction(write=True) as conn:
        assert reservations.reserve(conn, 2, "call-a", NOW, 15)
    with pytest.raises(RuntimeError), lean.transaction(write=True) as conn:
        reservations.reserve(conn, 2, "call-b", NOW, 15)
        raise RuntimeError("the step failed half-way")
    with lean() as session:
        assert session.get(Manager, 2).reserved_call_uid is None
    assert not lean.connection.in_transaction


def test_statements_built_per_call_do_not_grow_the_cache_for_ever(lean, monkeypatch):
    monkeypatch.setattr(lean_sqlite, "_CACHE_LIMIT", 20)
    with lean.transaction(write=False) as conn:
        for n in range(50):
            assert conn.execute(select(Manager.id).where(Manager.id == n % 6 + 1), {}).scalar() == n % 6 + 1
        assert len(conn._compiled) <= 20


def test_a_parameter_computed_per_execution_is_refused_not_frozen(lean):
    statement = select(Manager.id).where(Manager.id == bindparam("x", callable_=lambda: 1))
    with lean.transaction(write=False) as conn, pytest.raises(NotImplementedError, match="per execution"):
        conn.execute(statement, {})


def test_a_database_that_cannot_be_opened_fails_the_call_not_the_start(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'agi.db'}")
    factory = LeanFactory(make_session_factory(engine))  # no connection yet: nothing to fail
    with pytest.raises(sqlite3.OperationalError), factory.transaction(write=False):
        pass
    factory.close()
    engine.dispose()
