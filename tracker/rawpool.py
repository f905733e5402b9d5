"""A tiny pool of bare psycopg connections for the tracker's hot endpoints.

Why not the SQLAlchemy Session: on PostgreSQL a new visitor costs a single SQL statement
(``allocation._CREATE_WITH_PICK``), and the Session around it (checkout, BEGIN, COMMIT,
checkin, the ORM's transaction bookkeeping) cost more CPU and round trips than the
statement.  These connections are in autocommit mode (a single statement is its own
transaction; ``allocation`` opens one where several writes belong together) and prepare every
statement server-side on first use, with generic plans.

LIFO, so a quiet tracker keeps reusing its warmest connections; at most ``size`` idle
connections are kept, more are opened under bursts and closed afterwards.  A connection that
broke (database restart) is dropped: that request answers 503 and the next one reconnects.
Per process: a pool inherited over ``fork`` starts empty in the child.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (an IntEnum), without importing psycopg here


class RawPool:
    def __init__(self, engine: Engine, size: int, synchronous_commit: bool):
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._connect_args = (args, {**kwargs, "autocommit": True, "prepare_threshold": 0})
        self.dialect = engine.dialect
        self.size = size
        self._settings = ["SET plan_cache_mode TO force_generic_plan"]
        if not synchronous_commit:
            # A commit does not wait for the WAL flush: a PostgreSQL crash can lose the last
            # fraction of a second of visitor sessions, never corrupt anything.
            self._settings.append("SET synchronous_commit TO OFF")
        self._idle: list[Any] = []  # psycopg.Connection
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _open(self) -> Any:
        import psycopg

        args, kwargs = self._connect_args
        conn = psycopg.connect(*args, **kwargs)
        for statement in self._settings:
            conn.execute(statement, prepare=False)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            with self._lock:
                if self._pid != os.getpid():
                    self._idle = []
                    self._pid = os.getpid()
        try:
            conn = self._idle.pop()  # list.pop/append are atomic under the GIL
        except IndexError:
            conn = self._open()
        try:
            yield conn
        finally:
            if (conn.closed or conn.broken or conn.info.transaction_status != _IDLE
                    or len(self._idle) >= self.size):
                conn.close()
            else:
                self._idle.append(conn)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def raw_pool_for(engine: Engine, size: int, synchronous_commit: bool) -> RawPool | None:
    """A RawPool when the engine is PostgreSQL through psycopg 3; None otherwise (SQLite keeps
    the Session path and its ``BEGIN IMMEDIATE`` write lock)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    return RawPool(engine, size, synchronous_commit)
