"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python on every backend.

    SQLite has no time zones and returns naive values; PostgreSQL returns aware ones.  Mixing
    the two makes comparisons raise, so we store UTC and always hand back aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    # SQLite: the two steps above and SQLAlchemy's text conversion fused into one function
    # each way (the AGI reads and writes a few dozen of these per call).  Same text as
    # SQLAlchemy's SQLite DATETIME ("2026-12-04 15:41:48.000000", microseconds always):
    # stored values compare as text, so the format must never vary.

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        utc = dt.UTC

        def process(value):
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
            return value.astimezone(utc).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect, coltype):
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        utc, parse = dt.UTC, dt.datetime.fromisoformat

        def process(value):
            if value is None:
                return None
            parsed = parse(value)
            return parsed.replace(tzinfo=utc) if parsed.tzinfo is None else parsed.astimezone(utc)

        return process


class IdList(TypeDecorator):
    """A list of integer ids bound as one parameter: an array on PostgreSQL, JSON text on SQLite.

    Used with ``one_of``.  A statement's text is then the same whatever the list's length, so
    it is compiled once: an expanding ``IN`` is rendered again on every execution, one
    placeholder per id, and PostgreSQL prepares each length anew.  SQLite reads the list with
    ``json_each`` (its JSON functions: built in since 3.38, and in Debian's and Ubuntu's
    builds before that).
    """

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Integer))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        ids = [int(v) for v in value]
        return ids if dialect.name == "postgresql" else json.dumps(ids)


class one_of(FunctionElement):  # noqa: N801 - used like SQLAlchemy's own SQL functions
    """``one_of(column, bindparam("ids", type_=IdList()))``: the column's value is in the list."""

    name = "one_of"
    inherit_cache = True


@compiles(one_of)
def _one_of_json(element, compiler, **kw):
    column, ids = element.clauses
    return f"{compiler.process(column, **kw)} IN (SELECT value FROM json_each({compiler.process(ids, **kw)}))"


@compiles(one_of, "postgresql")
def _one_of_array(element, compiler, **kw):
    column, ids = element.clauses
    return f"{compiler.process(column, **kw)} = ANY ({compiler.process(ids, **kw)})"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
