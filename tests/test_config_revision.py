"""The configuration counter: triggers bump it on every routing-configuration change and on
nothing else, on schemas made by ``create_all`` and by ``astertrack db upgrade``, on SQLite and
PostgreSQL; the AGI's snapshot is re-read only when it moved."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from agi import snapshot as snapshot_module
from agi.snapshot import SnapshotCache
from astertrack.db import config_revision, migrate
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import (
    Base,
    Manager,
    ManagerGroup,
    RoutingRule,
    Site,
    Source,
    TrackingNumber,
)
from tests.revision_checks import bumps


def _seed(factory) -> None:
    with factory() as s:
        site = Site(name="Shop", timezone="Europe/Moscow")
        s.add(site)
        s.flush()
        source = Source(site_id=site.id, name="billboard")
        group = ManagerGroup(name="sales")
        s.add_all([source, group])
        s.flush()
        s.add(TrackingNumber(number="+74950000101", site_id=site.id, source_id=source.id))
        manager = Manager(name="Ivan", endpoint="PJSIP/101", extension="101")
        group.managers.append(manager)
        s.add(RoutingRule(name="sales", group_id=group.id, site_id=site.id))
        s.commit()




@pytest.fixture(params=["create_all", "migrate"])
def schema_engine(request, empty_url):
    """An empty database whose schema came one way or the other: both must carry the triggers."""
    engine = make_engine(empty_url)
    if request.param == "create_all":
        Base.metadata.create_all(engine)
    else:
        migrate.upgrade(empty_url)
    yield engine
    engine.dispose()


def test_configuration_edits_bump_the_counter_and_live_state_does_not(schema_engine):
    engine = schema_engine
    _seed(make_session_factory(engine))
    for table, live in config_revision.WATCHED.items():
        for column in Base.metadata.tables[table].columns:
            changed = bumps(engine, f"UPDATE {table} SET {column.name} = {column.name}")
            assert changed == (column.name not in live), f"{table}.{column.name}"
    # what calls and the AMI listener write all day is not an admin edit
    assert not bumps(engine, "UPDATE managers SET device_state = 'INUSE', paused = paused")
    assert not bumps(engine, "UPDATE routing_rules SET rr_cursor = rr_cursor + 1")
    # inserts and deletes count, cascades included
    assert bumps(engine, "INSERT INTO manager_groups (name) VALUES ('support')")
    assert bumps(engine, "DELETE FROM manager_group_members")
    assert bumps(engine, "DELETE FROM sites")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tracking_numbers")).scalar_one() == 0


def test_uninstall_leaves_writes_working_and_the_counter_still(schema_engine):
    """The migration's downgrade path: without the triggers, configuration writes still work."""
    engine = schema_engine
    with engine.begin() as conn:
        config_revision.uninstall(conn)
    assert not bumps(engine, "INSERT INTO manager_groups (name) VALUES ('support')")
    with engine.begin() as conn:
        config_revision.install(conn, Base.metadata)  # and a second install is harmless
        config_revision.install(conn, Base.metadata)
    assert bumps(engine, "INSERT INTO manager_groups (name) VALUES ('night')")


def test_the_snapshot_is_reread_only_when_the_configuration_changed(session_factory, monkeypatch):
    _seed(session_factory)
    cache = SnapshotCache(ttl=5)
    first = cache.get(session_factory)
    assert first.revision is not None
    assert first.directory.source_names[first.directory.numbers["+74950000101"].source_id] == "billboard"

    # calls write live state all the time: not a reason to re-read
    with session_factory() as s:
        s.execute(text("UPDATE managers SET device_state = 'INUSE', last_routed_at = NULL"))
        s.commit()
    checked_before = first.checked_at
    assert cache.refresh(session_factory) is False
    assert cache.get(session_factory) is first and first.checked_at >= checked_before

    with session_factory() as s:
        s.query(Source).filter_by(name="billboard").one().name = "metro billboard"
        s.commit()
    assert cache.refresh(session_factory) is True
    second = cache.get(session_factory)
    assert second is not first
    assert second.directory.source_names[second.directory.numbers["+74950000101"].source_id] == "metro billboard"

    # a full re-read still happens now and then, whatever the counter says
    monkeypatch.setattr(snapshot_module, "FULL_RELOAD_SECONDS", 0.0)
    assert cache.refresh(session_factory) is True


def test_a_database_without_the_counter_is_reread_every_time(session_factory, engine, caplog, monkeypatch):
    """An AGI upgraded before ``astertrack db upgrade`` ran keeps routing, as before the counter."""
    _seed(session_factory)
    with engine.begin() as conn:
        config_revision.uninstall(conn)  # SQLite's triggers would fail on the missing table
        conn.execute(text("DROP TABLE config_revision"))
    monkeypatch.setattr(config_revision, "_warned_missing", False)
    try:
        cache = SnapshotCache(ttl=5)
        with caplog.at_level(logging.WARNING, logger="astertrack.db.config_revision"):
            assert cache.refresh(session_factory) is True
            assert cache.refresh(session_factory) is True
        snapshot = cache.get(session_factory)
    finally:
        Base.metadata.create_all(engine)  # the shared PostgreSQL database gets its counter back
    assert snapshot.revision is None and "+74950000101" in snapshot.directory.numbers
    warnings = [r for r in caplog.records if "astertrack db upgrade" in r.getMessage()]
    assert len(warnings) == 1


def test_a_database_that_cannot_be_read_is_an_error_not_a_missing_counter(tmp_path):
    """Only a missing table means "not migrated yet"; a database that is down or locked must
    reach the caller (the AGI hands a locked step to its threads, or fails the call over)."""
    from sqlalchemy.exc import OperationalError

    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'astertrack.db'}")  # no such directory
    try:
        with make_session_factory(engine)() as session, pytest.raises(OperationalError):
            config_revision.read(session)
    finally:
        engine.dispose()
