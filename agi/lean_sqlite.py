"""The decision's Core statements run straight on one sqlite3 connection (the inline path).

On SQLite, SQLAlchemy's per-execution machinery (execution context, events, result metadata,
pool checkout, BEGIN/COMMIT through the dialect) cost three times what SQLite itself spent on
a decision's ten small statements: 0.9 of 1.2 ms.  Here each statement is still written and
compiled by SQLAlchemy - the same SQL, the same bind and result type processing, the
columns' Python-side defaults - but only once; a call then binds a tuple and runs it.

Used only by the event-loop thread, on a connection it keeps for the life of the app (so
no pool either).  Everything else - the thread-pool path, PostgreSQL, the snapshot's ORM
reads - keeps using SQLAlchemy as before.
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.orm import Session, sessionmaker

_CACHE_LIMIT = 512  # statements built per call (rare off the hot path) must not grow it for ever
_PARAM, _EXPANDED, _FIXED, _PREFETCH = range(4)


class LeanResult:
    """The part of SQLAlchemy's ``Result`` the AGI's statements use; rows are fetched at once."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list, rowcount: int):
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator:
        return iter(self._rows)

    def all(self) -> list:
        return self._rows

    def first(self):
        return self._rows[0] if self._rows else None

    def scalar(self):
        return self._rows[0][0] if self._rows else None

    def scalar_one_or_none(self):
        if len(self._rows) > 1:
            raise MultipleResultsFound("more than one row where one or none was expected")
        return self._rows[0][0] if self._rows else None

    def scalar_one(self):
        if len(self._rows) != 1:
            raise (MultipleResultsFound if self._rows else NoResultFound)("expected exactly one row")
        return self._rows[0][0]


class _Prepared:
    """One statement for one set of parameter names (and lengths of its IN lists)."""

    __slots__ = ("sql", "binders", "row_type", "processors")

    def __init__(self, sql: str, binders: list[tuple], row_type, processors: list[Callable | None] | None):
        self.sql = sql
        self.binders = binders
        self.row_type = row_type
        self.processors = processors

    def bind(self, params: dict[str, Any]) -> tuple:
        values = []
        for kind, key, index, processor in self.binders:
            if kind == _PARAM:
                value = params[key]
            elif kind == _EXPANDED:
                value = params[key][index]
            elif kind == _FIXED:
                value = key
            else:
                value = key()
            values.append(processor(value) if processor is not None else value)
        return tuple(values)


def _default_factory(column) -> Callable[[], Any]:
    default = column.default if column.default is not None else column.onupdate
    if default.is_scalar:
        return lambda: default.arg
    if default.is_callable:
        return lambda: default.arg(None)  # SQLAlchemy wraps zero-argument callables to take a context
    raise NotImplementedError(f"{column} has a SQL-side default; run this statement through SQLAlchemy")


def _prepare(compiled, params: dict[str, Any], dialect) -> _Prepared:
    prefetch = {column.key: _default_factory(column)
                for column in (*compiled.insert_prefetch, *compiled.update_prefetch)}
    state = compiled.construct_expanded_state({**params, **{key: make() for key, make in prefetch.items()}})
    expanded_from = {name: (original, index) for original, names in state.parameter_expansion.items()
                     for index, name in enumerate(names)}
    bind_processors = {**compiled._bind_processors, **state.processors}  # the latter: the IN lists' own
    binders = []
    for name in state.positiontup or ():
        processor = bind_processors.get(name)
        if name in expanded_from:
            original, index = expanded_from[name]
            binders.append((_EXPANDED, compiled.binds[original].key, index, processor))
            continue
        key = compiled.binds[name].key
        if key in prefetch:
            binders.append((_PREFETCH, prefetch[key], None, processor))
        elif key in params:
            binders.append((_PARAM, key, None, processor))
        elif compiled.binds[name].callable is None:  # a value fixed in the statement (literal(), ...)
            binders.append((_FIXED, state.parameters[name], None, processor))
        else:
            raise NotImplementedError(f"bind parameter {name!r} is computed per execution; use SQLAlchemy")
    columns = compiled._result_columns
    if not columns:
        return _Prepared(state.statement, binders, None, None)
    row_type = namedtuple("Row", [column[0] for column in columns], rename=True)  # noqa: PYI024
    result_processors = [column[3]._cached_result_processor(dialect, None) for column in columns]
    return _Prepared(state.statement, binders, row_type, result_processors if any(result_processors) else None)


class LeanConnection:
    """One sqlite3 connection running SQLAlchemy Core statements without SQLAlchemy's execution.

    The subset of ``Connection`` the decision's code uses: ``execute``, ``commit``,
    ``rollback``, ``dialect``; write transactions are opened explicitly (``begin``), reads
    run in autocommit.
    """

    def __init__(self, engine: Engine):
        self.dialect = engine.dialect
        self._pooled = engine.raw_connection()  # the engine's connect events ran: pragmas, autocommit mode
        self.raw = self._pooled.driver_connection
        self._compiled: dict[tuple, tuple] = {}

    def close(self) -> None:
        self._pooled.close()

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def begin(self) -> None:
        """A write transaction that holds SQLite's write lock from its start."""
        self.raw.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def _prepared(self, statement, params: dict[str, Any]) -> _Prepared:
        key = (id(statement), tuple(params))
        entry = self._compiled.get(key)
        if entry is None or entry[0] is not statement:
            if len(self._compiled) >= _CACHE_LIMIT:
                self._compiled.clear()
            compiled = statement.compile(dialect=self.dialect, column_keys=list(params))
            expanding = tuple(bind.key for bind in compiled.binds.values() if bind.expanding)
            entry = self._compiled[key] = (statement, compiled, expanding, {})
        _, compiled, expanding, by_length = entry
        lengths = tuple(len(params[name]) for name in expanding)
        prepared = by_length.get(lengths)
        if prepared is None:
            prepared = by_length[lengths] = _prepare(compiled, params, self.dialect)
        return prepared

    def execute(self, statement, params: dict[str, Any] | None = None) -> LeanResult:
        prepared = self._prepared(statement, params or {})
        cursor = self.raw.execute(prepared.sql, prepared.bind(params or {}))
        if prepared.row_type is None:
            return LeanResult([], cursor.rowcount)
        make, processors = prepared.row_type._make, prepared.processors
        if processors is None:
            rows = [make(row) for row in cursor.fetchall()]
        else:
            rows = [make([value if process is None else process(value)
                          for process, value in zip(processors, row, strict=True)])
                    for row in cursor.fetchall()]
        return LeanResult(rows, cursor.rowcount)


class LeanFactory:
    """The inline path's session factory: ORM sessions as usual (``factory()``), plus the one
    ``LeanConnection`` that ``agi.store`` runs the decision's statements on."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self.kw = sessions.kw
        self.connection: LeanConnection | None = None  # opened by the first call, as a pool would

    def __call__(self, **kw: Any) -> Session:
        return self.sessions(**kw)

    @contextlib.contextmanager
    def transaction(self, write: bool) -> Iterator[LeanConnection]:
        """A write transaction (holding the lock from its start), rolled back
        unless the body committed; or, for reads, none: each SELECT sees the latest commit,
        and the write that follows re-checks what matters anyway.

        The connection opens on first use: a database that cannot be opened fails that call
        (to the fallback), not the daemon's start."""
        if self.connection is None:
            self.connection = LeanConnection(self.kw["bind"])
        conn = self.connection
        if conn.in_transaction:  # a step that died half-way without its rollback (cannot happen twice)
            conn.rollback()
        if write:
            conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
