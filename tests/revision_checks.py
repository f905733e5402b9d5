"""Reading the configuration revision counter in tests (tests/test_config_revision.py, tests/test_migrations.py)."""

from __future__ import annotations

from sqlalchemy import text


def revision(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT value FROM config_revision WHERE id = 1")).scalar_one()


def bumps(engine, statement: str) -> bool:
    """Whether running ``statement`` moved the counter (a trigger fired)."""
    before = revision(engine)
    with engine.begin() as conn:
        conn.execute(text(statement))
    return revision(engine) != before
