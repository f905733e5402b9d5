"""A counter the database bumps itself whenever routing configuration changes.

The AGI keeps rules, numbers, sources, sites and managers in memory (``agi.snapshot``) and
must notice an admin's edit within seconds.  Re-reading all of it every few seconds costs
milliseconds of CPU that land on whichever calls arrive meanwhile; comparing one integer costs
almost nothing.  Triggers (not application code) bump it, so every writer counts: the web
admin, the CLI, a CSV import, a hand-written ``UPDATE`` in psql.

Only what a snapshot reads is watched.  Columns that calls and the AMI listener write all the
time (device state, reservations, round-robin cursor, last release of a pool number) are left
out, or every call would look like an admin edit.

A migration that adds a column to a watched table, or rebuilds one (SQLite's batch mode copies
the table and loses its triggers), calls ``install`` again; ``tests/test_config_revision.py``
fails until it does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, MetaData, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

TABLE = "config_revision"
FUNCTION = "astertrack_config_changed"

# watched table -> columns whose updates are live state, not configuration
WATCHED: dict[str, frozenset[str]] = {
    "sites": frozenset(),
    "sources": frozenset(),
    "tracking_numbers": frozenset({"last_released_at"}),
    "managers": frozenset({"paused", "device_state", "device_state_at", "reserved_until", "reserved_call_uid",
                           "last_routed_at"}),
    "manager_groups": frozenset(),
    "manager_group_members": frozenset(),
    "routing_rules": frozenset({"rr_cursor"}),
}

_BUMP = f"UPDATE {TABLE} SET value = value + 1 WHERE id = 1"
_SEED = f"INSERT INTO {TABLE} (id, value) SELECT 1, 0 WHERE NOT EXISTS (SELECT 1 FROM {TABLE} WHERE id = 1)"


def watched_columns(metadata: MetaData, table: str) -> list[str]:
    """The columns of ``table`` whose updates count as a configuration change."""
    return [c.name for c in metadata.tables[table].columns if c.name not in WATCHED[table]]


def _trigger_names(table: str) -> tuple[str, str, str]:
    return (f"trg_{table}_config_ins", f"trg_{table}_config_upd", f"trg_{table}_config_del")


def _sqlite_ddl(metadata: MetaData) -> Iterable[str]:
    for table in WATCHED:
        ins, upd, dele = _trigger_names(table)
        columns = ", ".join(watched_columns(metadata, table))
        yield f"DROP TRIGGER IF EXISTS {ins}"
        yield f"DROP TRIGGER IF EXISTS {upd}"
        yield f"DROP TRIGGER IF EXISTS {dele}"
        yield f"CREATE TRIGGER {ins} AFTER INSERT ON {table} BEGIN {_BUMP}; END"
        yield f"CREATE TRIGGER {upd} AFTER UPDATE OF {columns} ON {table} BEGIN {_BUMP}; END"
        yield f"CREATE TRIGGER {dele} AFTER DELETE ON {table} BEGIN {_BUMP}; END"


def _postgresql_ddl(metadata: MetaData) -> Iterable[str]:
    yield (f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
           f"$$ BEGIN {_BUMP}; RETURN NULL; END $$")
    for table in WATCHED:
        ins, upd, _ = _trigger_names(table)
        columns = ", ".join(watched_columns(metadata, table))
        yield f"DROP TRIGGER IF EXISTS {ins} ON {table}"
        yield f"DROP TRIGGER IF EXISTS {upd} ON {table}"
        # per statement: a bulk import bumps once, not once per row
        yield (f"CREATE TRIGGER {ins} AFTER INSERT OR DELETE OR TRUNCATE ON {table} "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        yield (f"CREATE TRIGGER {upd} AFTER UPDATE OF {columns} ON {table} "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")


def install(connection: Connection, metadata: MetaData) -> None:
    """Create (or re-create) the triggers and the counter's row.  Idempotent.

    ``metadata`` is the models' (``astertrack.db.models.Base.metadata``): passed in, so this
    module never imports the models that import it."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        statements = _sqlite_ddl(metadata)
    elif dialect == "postgresql":
        statements = _postgresql_ddl(metadata)
    else:  # pragma: no cover - the two supported backends are above
        raise RuntimeError(f"no configuration triggers for {dialect}")
    for statement in statements:
        connection.execute(text(statement))
    seed(connection)


def seed(connection: Connection) -> None:
    """Put the counter's row back if it is missing (it starts at 0)."""
    connection.execute(text(_SEED))


def uninstall(connection: Connection) -> None:
    dialect = connection.dialect.name
    for table in WATCHED:
        for name in _trigger_names(table):
            suffix = f" ON {table}" if dialect == "postgresql" else ""
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}{suffix}"))
    if dialect == "postgresql":
        connection.execute(text(f"DROP FUNCTION IF EXISTS {FUNCTION}()"))


_warned_missing = False


def read(session: Session | Connection) -> int | None:
    """The current revision, or None when the database has no counter (not migrated yet):
    then the caller re-reads everything, as it did before there was one."""
    global _warned_missing
    try:
        value = session.execute(text(f"SELECT value FROM {TABLE} WHERE id = 1")).scalar_one_or_none()
    except DBAPIError as exc:
        if TABLE not in str(exc.orig):  # a database that is down or busy: the caller's problem
            raise
        session.rollback()  # PostgreSQL: the failed statement aborted the transaction
        if not _warned_missing:
            _warned_missing = True
            log.warning("no %s table (%s): run `astertrack db upgrade`; until then the routing "
                        "snapshot is re-read in full every time", TABLE, exc.orig.__class__.__name__)
        return None
    return int(value) if value is not None else None
