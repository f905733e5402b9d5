"""The AGI's database engine: tuned for many tiny transactions with a caller waiting on each.

On PostgreSQL every round trip counts (a decision is about a dozen statements), so:

* no ``pool_pre_ping`` (one extra round trip per checkout, two per call); a connection that
  died under us is detected by the failed statement, the pool drops it, and ``run_with_retry``
  runs the (read-only or rolled-back) step once more on a fresh connection;
* ``synchronous_commit = off`` for the whole session: a routing decision is visible to the
  other calls at commit, and a database crash loses at most the last few hundred
  milliseconds of decisions instead of every call waiting for a WAL flush.

SQLite uses the shared engine from ``astertrack.db`` (its pragmas and write-lock handling).
"""

from __future__ import annotations

import logging
import weakref

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from astertrack.config import Config
from astertrack.db import make_engine, normalise_url

log = logging.getLogger(__name__)
ASYNC_COMMIT_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def agi_engine(config: Config) -> Engine:
    db = config.values["database"]
    url = normalise_url(db["url"])
    if make_url(url).get_backend_name() != "postgresql":
        return make_engine(url, pool_size=db["pool_size"], echo=db["echo"])
    engine = create_engine(url, echo=db["echo"], pool_size=db["pool_size"], max_overflow=db["pool_size"],
                           pool_pre_ping=False, connect_args={"connect_timeout": 5})

    ASYNC_COMMIT_ENGINES.add(engine)  # agi.store then skips its per-transaction SET LOCAL

    @event.listens_for(engine, "connect")
    def _async_commit(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        dbapi_connection.commit()

    return engine


def run_with_retry(func, *args):
    """Run one database step; if the connection turned out to be dead, once more on a new one."""
    try:
        return func(*args)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost (%s); retrying on a new connection", type(exc.orig).__name__)
        return func(*args)
