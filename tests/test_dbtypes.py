"""UTCDateTime's fused SQLite processors give exactly what SQLAlchemy's two-step chain gives;
``one_of`` with an ``IdList`` selects the listed rows on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError
from sqlalchemy.types import TypeDecorator

from astertrack.db.models import Manager
from astertrack.db.types import IdList, UTCDateTime, one_of

DIALECT = sqlite.dialect()
MSK = dt.timezone(dt.timedelta(hours=3))


def chained(kind: str):
    """SQLAlchemy's own TypeDecorator processors (process_*_param plus the SQLite DATETIME)."""
    adapted = UTCDateTime().dialect_impl(DIALECT)  # its impl becomes SQLite's DATETIME, as in use
    if kind == "bind":
        return TypeDecorator.bind_processor(adapted, DIALECT)
    return TypeDecorator.result_processor(adapted, DIALECT, None)


@pytest.mark.parametrize("value", [
    None, dt.datetime(2026, 12, 4, 15, 41, 48, tzinfo=dt.UTC), dt.datetime(2026, 12, 4, 15, 41, 48, 5, tzinfo=dt.UTC),
    dt.datetime(2026, 12, 4, 2, 0, 0, 999999, tzinfo=MSK), dt.datetime(1999, 1, 1, tzinfo=dt.UTC),
])
def test_bind_text_is_sqlalchemys_byte_for_byte(value):
    fast = UTCDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
    assert fast(value) == chained("bind")(value)
    if value is not None:
        assert fast(value).endswith(f".{value.microsecond:06d}")  # text order = time order


@pytest.mark.parametrize("text", [None, "2026-12-04 15:41:48.000000", "2026-12-04 15:41:48", "2026-12-04 15:41:48.5",
                                  "2026-12-04T15:41:48.123456"])
def test_results_are_sqlalchemys_and_aware(text):
    fast = UTCDateTime().dialect_impl(DIALECT).result_processor(DIALECT, None)
    assert fast(text) == chained("result")(text)
    if text is not None:
        assert fast(text).tzinfo is dt.UTC


def test_an_offset_in_stored_text_is_converted_to_utc():
    fast = UTCDateTime().dialect_impl(DIALECT).result_processor(DIALECT, None)
    assert fast("2026-12-04 18:00:00+03:00") == dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.UTC)


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().bind_processor(DIALECT)(dt.datetime(2026, 12, 4))


def test_sqlalchemy_runs_the_fused_processors_on_sqlite(monkeypatch):
    """Spied through the public TypeDecorator hooks while a real engine writes and reads a row."""
    from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select

    asked = []
    for hook in ("bind_processor", "result_processor"):
        original = getattr(UTCDateTime, hook)

        def spy(self, dialect, *args, _original=original, _hook=hook):
            processor = _original(self, dialect, *args)
            asked.append((_hook, dialect.name, getattr(processor, "__qualname__", "")))
            return processor

        monkeypatch.setattr(UTCDateTime, hook, spy)
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))
    engine = create_engine("sqlite://")
    moment = dt.datetime(2026, 12, 4, 15, 41, 48, 5, tzinfo=MSK)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(insert(table), {"at": moment})
        assert conn.execute(select(table.c.at)).scalar_one() == moment.astimezone(dt.UTC)
    engine.dispose()
    assert ("bind_processor", "sqlite", "UTCDateTime.bind_processor.<locals>.process") in asked
    assert ("result_processor", "sqlite", "UTCDateTime.result_processor.<locals>.process") in asked


@pytest.mark.parametrize("picked", [[], [0], [4, 1], [0, 1, 2, 3, 4]])
def test_one_of_selects_exactly_the_listed_ids(session, picked):
    rows = [Manager(name=f"M{i}", endpoint=f"PJSIP/{100 + i}") for i in range(5)]
    session.add_all(rows)
    session.commit()
    wanted = [rows[i].id for i in picked] + [10_000]  # and one id no row has
    statement = select(Manager.id).where(one_of(Manager.id, bindparam("ids", type_=IdList())))
    assert sorted(session.execute(statement, {"ids": wanted}).scalars()) == sorted(rows[i].id for i in picked)


def test_an_id_list_takes_integers_only(session):
    statement = select(Manager.id).where(one_of(Manager.id, bindparam("ids", type_=IdList())))
    with pytest.raises(StatementError, match="invalid literal for int"):  # refused before any SQL is sent
        session.execute(statement, {"ids": ["1; DROP TABLE managers"]})
