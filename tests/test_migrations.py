"""Migrations and models agree, on an empty SQLite and an empty PostgreSQL database."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from astertrack.db import migrate
from astertrack.db.engine import make_engine
from astertrack.db.models import Base


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": migrate.VERSION_TABLE})
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
