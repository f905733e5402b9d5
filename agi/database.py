"""The AGI's database engines: tuned for many tiny transactions with a caller waiting on each.

On PostgreSQL every round trip counts (an inbound decision is four statements), so:

* no ``pool_pre_ping`` (one extra round trip per checkout, two per call); a connection that
  died under us is detected by the failed statement, the pool drops it, and ``run_with_retry``
  runs the (read-only or rolled-back) step once more on a fresh connection;
* ``synchronous_commit = off`` for the whole session: a routing decision is visible to the
  other calls at commit, and a database crash loses at most the last few hundred
  milliseconds of decisions instead of every call waiting for a WAL flush;
* autocommit from the connection's start: each of a decision's statements stands alone
  (``agi.store``), so no BEGIN or COMMIT, and no switching every connection taken from the
  pool into autocommit and back; the rare step that needs a transaction asks for one.

A database on this machine (SQLite, or PostgreSQL on a Unix socket or a loopback address) is
also used on the event loop itself (``inline_engine``, ``[agi] db_inline``): a step's statements
run there with no hand-off to a thread and back, which under load cost a PostgreSQL decision
more CPU than its statements (4.0 against 5.3-6.1 ms) and most of its slowest answers.  A step
that would wait (a lock, a slow statement, a lost connection) gives up after ``INLINE_BUSY_MS``
and runs again in the threads, so a busy database never holds the other calls' sockets for long.

SQLite uses the shared engine from ``astertrack.db.engine`` (its pragmas and write-lock handling),
except that our own commits never run a WAL checkpoint: the commit that crosses SQLite's
1000-page mark would copy the log into the database and fsync it, a few milliseconds
stolen from one unlucky caller.  A background thread checkpoints every second instead
(``PASSIVE``: it never waits for, nor blocks, the writers).
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
import threading
import weakref
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from astertrack.config import Config
from astertrack.db.engine import make_engine, normalise_url

log = logging.getLogger(__name__)
_CHECKPOINTERS: weakref.WeakKeyDictionary[Engine, WalCheckpointer] = weakref.WeakKeyDictionary()


CHECKPOINT_SECONDS = 1.0
# Inline (event-loop) SQLite work waits at most this long for a lock before handing the
# step to the thread pool, so a busy database never freezes the other calls' sockets.
INLINE_BUSY_MS = 50
_inline = threading.local()


class InlineBusy(Exception):
    """The database (or our own writer lock) is busy: run this step in a thread instead."""


def running_inline() -> bool:
    return getattr(_inline, "active", False)


def on_this_machine(url: str) -> bool:
    """SQLite, or PostgreSQL through a Unix socket or a loopback address: a round trip that is
    only a context switch, never a network."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return True
    host = parsed.host or parsed.query.get("host") or ""
    if isinstance(host, tuple):  # several hosts: only when every one is here
        return all(_local_host(h) for h in host)
    return _local_host(host)


def _local_host(host: str) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def inline_engine(config: Config, checkpoint_thread: bool = True) -> Engine | None:
    """A second engine for the steps run on the event loop, whose statements give up after
    INLINE_BUSY_MS instead of waiting (the thread pool then runs the step with the normal
    engine): SQLite's busy timeout; PostgreSQL's lock and statement timeouts.  None when
    ``[agi] db_inline`` is off or the database is across a network (``on_this_machine``): a
    network round trip must never block the loop."""
    db = config.values["database"]
    url = normalise_url(db["url"])
    if not config.values["agi"]["db_inline"] or not on_this_machine(url):
        return None
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        # one event loop: one step at a time, and a step may hold a second connection (a snapshot
        # read); overflow instead of ever waiting for a connection on the loop
        engine = create_engine(url, echo=db["echo"], pool_size=2, max_overflow=4, pool_pre_ping=False,
                               isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2, "options": (
                                   f"-c lock_timeout={INLINE_BUSY_MS} -c statement_timeout={INLINE_BUSY_MS}")})
        event.listen(engine, "connect", _async_commit)
        return engine
    if backend != "sqlite":
        return None
    engine = make_engine(url, pool_size=2, echo=db["echo"])

    @event.listens_for(engine, "connect")
    def _short_busy(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
        if checkpoint_thread:
            _no_autocheckpoint(dbapi_connection, _record)

    return engine


# PostgreSQL's SQLSTATEs for a statement cancelled by statement_timeout and a lock not had within
# lock_timeout: what the inline engine's connections raise instead of waiting.
_GAVE_UP = {"57014", "55P03"}


def run_inline(func, *args):
    """Run one database step on the calling (event loop) thread; InlineBusy if it would wait
    or its connection was lost (the step's connection rolled back on the way out, so the thread
    pool can run it again)."""
    _inline.active = True
    try:
        return func(*args)
    except DBAPIError as exc:
        reason = str(exc.orig)
        if exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _GAVE_UP or (
                isinstance(exc, OperationalError) and ("locked" in reason or "busy" in reason)):
            raise InlineBusy(reason.splitlines()[0] if reason else type(exc.orig).__name__) from None
        raise
    finally:
        _inline.active = False


def agi_engine(config: Config, checkpoint_thread: bool = True) -> Engine:
    """The AGI's engine.  ``checkpoint_thread=False`` for a short-lived process (the per-call
    script): it exits before a background checkpoint would run, so its commits keep SQLite's
    own automatic checkpoint."""
    db = config.values["database"]
    url = normalise_url(db["url"])
    if make_url(url).get_backend_name() == "sqlite":
        engine = make_engine(url, pool_size=db["pool_size"], echo=db["echo"])
        path = make_url(url).database
        if checkpoint_thread and path and path != ":memory:":
            event.listen(engine, "connect", _no_autocheckpoint)
            checkpointer = _CHECKPOINTERS[engine] = WalCheckpointer(path)
            checkpointer.start()
        return engine
    if make_url(url).get_backend_name() != "postgresql":
        return make_engine(url, pool_size=db["pool_size"], echo=db["echo"])
    engine = create_engine(url, echo=db["echo"], pool_size=db["pool_size"], max_overflow=db["pool_size"],
                           pool_pre_ping=False, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    event.listen(engine, "connect", _async_commit)
    return engine


def _async_commit(dbapi_connection, _record) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    dbapi_connection.commit()


def run_with_retry(func, *args):
    """Run one database step; if the connection turned out to be dead, once more on a new one."""
    try:
        return func(*args)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost (%s); retrying on a new connection", type(exc.orig).__name__)
        return func(*args)


def close_engine(engine: Engine) -> None:
    """Dispose of an engine made by ``agi_engine`` (and stop its checkpoint thread)."""
    checkpointer = _CHECKPOINTERS.pop(engine, None)
    if checkpointer is not None:
        checkpointer.stop()
    engine.dispose()


def _no_autocheckpoint(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


class WalCheckpointer(threading.Thread):
    """Checkpoints the SQLite write-ahead log off the callers' path, once a second.

    A daemon thread on its own connection; it ends with the process.  If a checkpoint fails
    it logs and tries again next second (the log only grows meanwhile, nothing is lost).
    """

    def __init__(self, path: str, interval: float = CHECKPOINT_SECONDS):
        super().__init__(name="agi-wal-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)

    def run(self) -> None:
        conn = None
        while not self.stopped.wait(self.interval):
            try:
                if conn is None:
                    # mode=rw: never create a database that has gone away
                    conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, timeout=1)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed (%s); retrying in %.0fs", exc, self.interval)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
