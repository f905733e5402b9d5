"""Migrations and models agree, on an empty SQLite and an empty PostgreSQL database."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, inspect, text

from astertrack.db import config_revision, migrate, models
from astertrack.db.engine import make_engine
from astertrack.db.models import Base
from tests.revision_checks import bumps, revision


def _in_metadata(name, type_, parent_names) -> bool:
    """The transcript search (models.TRANSCRIPT_SEARCH_DDL: SQLite's FTS5 table and its shadow tables,
    PostgreSQL's expression index) is made by DDL beside the metadata, in both the models and 0025."""
    return not (name or "").startswith(("transcript_fts", "ix_transcripts_search"))


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": migrate.VERSION_TABLE,
                                                         "include_name": _in_metadata})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_head_creates_every_table_and_matches_models(empty_url):
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    tables = set(inspect(engine).get_table_names())
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert migrate.VERSION_TABLE in tables
    assert "alembic_version" not in tables  # our own version table, safe beside FreePBX's
    assert _diff(empty_url) == []


def test_downgrade_to_base_and_upgrade_again_round_trips(empty_url):
    migrate.upgrade(empty_url)
    migrate.downgrade(empty_url, "base")
    engine = make_engine(empty_url)
    left = set(inspect(engine).get_table_names()) - {migrate.VERSION_TABLE}
    engine.dispose()
    assert left == set()
    migrate.upgrade(empty_url)
    assert _diff(empty_url) == []


def test_live_assignment_index_forbids_two_live_rows_for_one_number(empty_url):
    """The partial unique index is the last line of defence against double assignment."""
    import datetime as dt

    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from astertrack.db.models import NumberAssignment, Site, TrackingNumber, VisitorSession

    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as s:
        site = Site(name="s")
        s.add(site)
        s.flush()
        number = TrackingNumber(number="+74950000001", site_id=site.id)
        a, b = VisitorSession(site_id=site.id), VisitorSession(site_id=site.id)
        s.add_all([number, a, b])
        s.flush()
        s.add(NumberAssignment(number_id=number.id, session_id=a.id, expires_at=now, hard_expires_at=now,
                               released_at=now))
        s.add(NumberAssignment(number_id=number.id, session_id=a.id, expires_at=now, hard_expires_at=now))
        s.commit()
        s.add(NumberAssignment(number_id=number.id, session_id=b.id, expires_at=now, hard_expires_at=now))
        with pytest.raises(IntegrityError):
            s.commit()
    engine.dispose()


# ------------------------------------------------- migrations carry the schema they need (#19 §4)

MIGRATIONS = Path(migrate.__file__).resolve().parents[2] / "migrations"
NEW_COLUMN = "test_only_note"




def test_upgrade_from_base_installs_working_configuration_triggers(empty_url):
    """The triggers 0004 installs from its own description of the tables work at head: an
    admin's edit moves the counter, the live state calls write does not."""
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        assert revision(engine) == 0
        assert bumps(engine, "INSERT INTO manager_groups (name) VALUES ('sales')")
        assert bumps(engine, "UPDATE manager_groups SET name = 'sales floor'")
        assert bumps(engine, "INSERT INTO routing_rules (name, priority, enabled, match, strategy, sticky, "
                              "sticky_days, schedule, rr_cursor) "
                              "VALUES ('r', 100, true, '{}', 'round_robin', false, 30, '{}', 0)")
        assert not bumps(engine, "UPDATE routing_rules SET rr_cursor = rr_cursor + 1")
        assert bumps(engine, "UPDATE routing_rules SET priority = priority + 1")
        assert bumps(engine, "DELETE FROM routing_rules")
    finally:
        engine.dispose()


def _later_revision(down_revision: str) -> str:
    """A TEST-ONLY migration on top of today's head: ``sites`` gains a column, so its triggers
    are dropped and installed again with this revision's own frozen list of ``sites`` columns,
    as ``astertrack/db/config_revision.py`` tells a real one to."""
    before = config_revision.watched_columns(Base.metadata, "sites")  # frozen into the file, today
    return f'''"""TEST ONLY: sites gains a column the configuration triggers must watch

Revision ID: 9999
Revises: {down_revision}
"""
from alembic import op
import sqlalchemy as sa

from astertrack.db import config_revision


revision = '9999'
down_revision = {down_revision!r}
branch_labels = None
depends_on = None

SITES_BEFORE = {tuple(before)!r}
SITES_AFTER = SITES_BEFORE + ({NEW_COLUMN!r},)


def upgrade() -> None:
    config_revision.uninstall(op.get_bind(), ['sites'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column({NEW_COLUMN!r}, sa.String(length=40), nullable=True))
    config_revision.install(op.get_bind(), {{'sites': SITES_AFTER}})


def downgrade() -> None:
    config_revision.uninstall(op.get_bind(), ['sites'])  # PostgreSQL keeps a column a trigger names
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column({NEW_COLUMN!r})
    config_revision.install(op.get_bind(), {{'sites': SITES_BEFORE}})
'''


@pytest.fixture
def models_with_the_new_column(monkeypatch):
    """Today's models as they will be the day ``sites`` gains the column: a migration that reads
    the models (instead of carrying its own schema) would then see a column that the database
    it runs against does not have yet."""
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    metadata.tables["sites"].append_column(Column(NEW_COLUMN, String(40), nullable=True))
    monkeypatch.setattr(models, "Base", type("Base", (), {"metadata": metadata}))
    return metadata


def test_a_later_column_on_a_watched_table_upgrades_from_base(empty_url, tmp_path, models_with_the_new_column):
    """A fresh ``astertrack db upgrade`` must still pass 0004 once a watched table has gained a
    column: every migration describes the tables as they were at its own revision."""
    head = migrate.head_revision()
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_test_only_sites_column.py").write_text(_later_revision(head))
    cfg = migrate.alembic_config(empty_url)
    cfg.set_main_option("script_location", str(scripts))

    command.upgrade(cfg, "head")

    engine = make_engine(empty_url)
    try:
        assert migrate.current_revision(engine) == "9999"
        assert NEW_COLUMN in {c["name"] for c in inspect(engine).get_columns("sites")}
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO sites (name, domains, public_key, display_format, timezone, "
                              "hold_seconds, heartbeat_seconds, hold_cap_seconds, unload_grace_seconds, "
                              "overflow_policy, lazy_allocation, replace_selectors, replace_numbers, "
                              "attribution_window_days, attribution_model, target_call_seconds, created_at) "
                              "VALUES ('s', '[]', 'k', '+7 (XXX) XXX-XX-XX', 'UTC', 60, 30, 3600, 30, "
                              "'fallback', false, '[]', '[]', 30, 'first_touch', 30, CURRENT_TIMESTAMP)"))
        # the re-installed trigger names the new column, and still every older one
        assert bumps(engine, f"UPDATE sites SET {NEW_COLUMN} = 'new'")
        assert bumps(engine, "UPDATE sites SET name = 'renamed'")

        command.downgrade(cfg, head)  # SQLite rebuilds the table: its triggers come back too
        assert NEW_COLUMN not in {c["name"] for c in inspect(engine).get_columns("sites")}
        assert bumps(engine, "UPDATE sites SET name = 'back'")
    finally:
        engine.dispose()


def _imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_migration_imports_todays_models():
    """A migration runs against the schema of its own revision; today's models describe head.
    What a migration needs of the tables it writes down itself."""
    versions = sorted((MIGRATIONS / "versions").glob("*.py"))
    assert versions
    offenders = {
        path.name: sorted(m for m in _imported_modules(ast.parse(path.read_text(), str(path)))
                          if m == "astertrack.db.models" or m.startswith("astertrack.db.models."))
        for path in versions
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_a_frozen_list_naming_a_missing_column_fails_on_both_backends(empty_url):
    """PostgreSQL refuses a trigger on a column the table lacks; SQLite would accept it and never
    fire, so ``install`` refuses there too: a wrong list in a migration fails on a developer's
    SQLite, not first on a production PostgreSQL."""
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with pytest.raises(Exception, match=NEW_COLUMN), engine.begin() as conn:
            config_revision.install(conn, {"manager_groups": ("id", "name", NEW_COLUMN)})
        assert bumps(engine, "INSERT INTO manager_groups (name) VALUES ('sales')")  # rolled back, intact
    finally:
        engine.dispose()


def test_upgrade_head_makes_the_transcript_search_the_models_make(empty_url):
    """Migration 0025 keeps its own copy of the search DDL (a migration must not change when the
    models do) and the diff above skips these objects: at head they must still be the models'."""
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                stored = set(conn.execute(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'transcript_fts' "
                    "OR name LIKE 'trg_transcripts_fts%'")).scalars())
                assert stored == set(models.TRANSCRIPT_SEARCH_DDL["sqlite"])
            else:
                stored = conn.execute(text("SELECT indexdef FROM pg_indexes "
                                           "WHERE indexname = 'ix_transcripts_search'")).scalars().all()
                assert len(stored) == 1
                assert "USING gin (to_tsvector('simple'::regconfig, COALESCE(search_text, ''::text)))" in stored[0]
    finally:
        engine.dispose()
