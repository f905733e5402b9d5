"""A counter the database bumps itself whenever routing configuration changes.

The AGI keeps rules, numbers, sources, sites and managers in memory (``agi.snapshot``) and
must notice an admin's edit within seconds.  Re-reading all of it every few seconds costs
milliseconds of CPU that land on whichever calls arrive meanwhile; comparing one integer costs
almost nothing.  Triggers (not application code) bump it, so every writer counts: the web
admin, the CLI, a CSV import, a hand-written ``UPDATE`` in psql.

Only what a snapshot reads is watched.  Columns that calls and the AMI listener write all the
time (device state, reservations, round-robin cursor, last release of a pool number) are left
out, or every call would look like an admin edit.

Two ways to say which columns the triggers name:

- ``create_all`` (tests, benches) installs from today's models: ``install(connection,
  Base.metadata)``; every column of a table in ``WATCHED`` but its live-state ones.
- A migration never reads today's models: it runs against the schema of its own revision, and
  the models describe head.  It passes a frozen mapping, written down in the migration itself,
  of each watched table to the columns whose updates count *at that revision*::

      SITES = ("id", "name", ..., "created_at")   # 0004's sites, as they were then
      config_revision.install(op.get_bind(), {"sites": SITES, "sources": (...), ...})

  Only the tables named are (re-)installed; the others keep their triggers.

A later migration that changes a watched table (adds, drops, renames or retypes a column, or
rebuilds it: SQLite's batch mode copies the table and loses its triggers) drops that table's
triggers first (PostgreSQL will not drop or alter a column a trigger names), changes the table,
then installs them again with its own frozen list: the last migration's list for that table,
copied, plus the new column (unless it is live state: then add it to ``WATCHED`` instead)::

      SITES_BEFORE = (...)                      # copied from the previous list
      SITES_AFTER = SITES_BEFORE + ("new_column",)

      def upgrade():
          config_revision.uninstall(op.get_bind(), ["sites"])
          with op.batch_alter_table("sites") as batch_op:
              batch_op.add_column(sa.Column("new_column", ...))
          config_revision.install(op.get_bind(), {"sites": SITES_AFTER})

      def downgrade():
          config_revision.uninstall(op.get_bind(), ["sites"])
          with op.batch_alter_table("sites") as batch_op:
              batch_op.drop_column("new_column")
          config_revision.install(op.get_bind(), {"sites": SITES_BEFORE})

A migration that adds a watched table installs its triggers the same way.  Never build the list
from ``Base.metadata`` or from ``WATCHED`` (both are head's): a fresh ``astertrack db upgrade``
replays every migration, and a trigger naming a column that its revision has not created yet
fails on PostgreSQL.  ``install`` checks the names against the database on SQLite too, which
would silently accept them.  ``tests/test_config_revision.py`` fails until head's triggers watch
every configuration column of the models; ``tests/test_migrations.py`` replays the chain from
an empty database with a later column on top.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, MetaData, inspect, text
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
                           "last_routed_at", "chat_away"}),
    "manager_groups": frozenset(),
    "manager_group_members": frozenset(),
    "routing_rules": frozenset({"rr_cursor"}),
}

_BUMP = f"UPDATE {TABLE} SET value = value + 1 WHERE id = 1"
_SEED = f"INSERT INTO {TABLE} (id, value) SELECT 1, 0 WHERE NOT EXISTS (SELECT 1 FROM {TABLE} WHERE id = 1)"


def watched_columns(metadata: MetaData, table: str) -> list[str]:
    """The columns of ``table`` whose updates count as a configuration change."""
    return [c.name for c in metadata.tables[table].columns if c.name not in WATCHED[table]]


def columns_from_metadata(metadata: MetaData) -> dict[str, tuple[str, ...]]:
    """Every table of ``WATCHED`` with the columns its triggers name, read from ``metadata``:
    what ``create_all`` installs.  Not for migrations (see the module's docstring)."""
    return {table: tuple(watched_columns(metadata, table)) for table in WATCHED}


Watched = MetaData | Mapping[str, Iterable[str]]


def _as_columns(watched: Watched) -> dict[str, tuple[str, ...]]:
    if isinstance(watched, MetaData):
        return columns_from_metadata(watched)
    columns = {table: tuple(names) for table, names in watched.items()}
    empty = sorted(table for table, names in columns.items() if not names)
    if empty:
        raise ValueError(f"no columns for the configuration triggers of {', '.join(empty)}")
    return columns


def _trigger_names(table: str) -> tuple[str, str, str]:
    return (f"trg_{table}_config_ins", f"trg_{table}_config_upd", f"trg_{table}_config_del")


def _sqlite_ddl(columns: Mapping[str, tuple[str, ...]]) -> Iterable[str]:
    for table, names in columns.items():
        ins, upd, dele = _trigger_names(table)
        yield f"DROP TRIGGER IF EXISTS {ins}"
        yield f"DROP TRIGGER IF EXISTS {upd}"
        yield f"DROP TRIGGER IF EXISTS {dele}"
        yield f"CREATE TRIGGER {ins} AFTER INSERT ON {table} BEGIN {_BUMP}; END"
        yield f"CREATE TRIGGER {upd} AFTER UPDATE OF {', '.join(names)} ON {table} BEGIN {_BUMP}; END"
        yield f"CREATE TRIGGER {dele} AFTER DELETE ON {table} BEGIN {_BUMP}; END"


def _postgresql_ddl(columns: Mapping[str, tuple[str, ...]]) -> Iterable[str]:
    yield (f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
           f"$$ BEGIN {_BUMP}; RETURN NULL; END $$")
    for table, names in columns.items():
        ins, upd, _ = _trigger_names(table)
        yield f"DROP TRIGGER IF EXISTS {ins} ON {table}"
        yield f"DROP TRIGGER IF EXISTS {upd} ON {table}"
        # per statement: a bulk import bumps once, not once per row
        yield (f"CREATE TRIGGER {ins} AFTER INSERT OR DELETE OR TRUNCATE ON {table} "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        yield (f"CREATE TRIGGER {upd} AFTER UPDATE OF {', '.join(names)} ON {table} "
               f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")


def _check_sqlite_columns(connection: Connection, columns: Mapping[str, tuple[str, ...]]) -> None:
    """SQLite accepts ``UPDATE OF`` a column the table lacks (a trigger that never fires for
    it); PostgreSQL refuses.  Refuse on both, so a wrong frozen list fails on a developer's
    SQLite as it would on a production PostgreSQL."""
    inspector = inspect(connection)
    for table, names in columns.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        missing = [name for name in names if name not in have]
        if missing:
            raise ValueError(f"configuration triggers of {table}: no column {', '.join(missing)} "
                             f"in the database (has {', '.join(sorted(have))})")


def install(connection: Connection, watched: Watched) -> None:
    """Create (or re-create) the triggers of the tables in ``watched``, the function they call
    and the counter's row.  Idempotent.

    ``watched`` is either a ``MetaData`` (``create_all``: the models' ``Base.metadata``, passed
    in so this module never imports the models that import it; every table of ``WATCHED``), or,
    from a migration, a mapping of table name to the columns whose updates count, frozen at
    that migration's revision (only those tables)."""
    columns = _as_columns(watched)
    dialect = connection.dialect.name
    if dialect == "sqlite":
        _check_sqlite_columns(connection, columns)
        statements = _sqlite_ddl(columns)
    elif dialect == "postgresql":
        statements = _postgresql_ddl(columns)
    else:  # pragma: no cover - the two supported backends are above
        raise RuntimeError(f"no configuration triggers for {dialect}")
    for statement in statements:
        connection.execute(text(statement))
    seed(connection)


def seed(connection: Connection) -> None:
    """Put the counter's row back if it is missing (it starts at 0)."""
    connection.execute(text(_SEED))


def uninstall(connection: Connection, tables: Iterable[str] | None = None) -> None:
    """Drop the triggers of ``tables`` (a migration passes its own frozen list; default: every
    table of ``WATCHED``), and on PostgreSQL the function they call once no trigger calls it."""
    dialect = connection.dialect.name
    for table in WATCHED if tables is None else tables:
        for name in _trigger_names(table):
            suffix = f" ON {table}" if dialect == "postgresql" else ""
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}{suffix}"))
    if dialect == "postgresql":
        callers = connection.execute(text(
            "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = :f"
        ), {"f": FUNCTION}).scalar_one()
        if not callers:
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
