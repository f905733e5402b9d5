"""Retention keeps the settings history ``[retention] audit_days`` (730 by default), no longer."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.config import load_config
from astertrack.db.models import AuditLog
from astertrack.ops.retention import Sweeper, sweep_from_config

NOW = dt.datetime(2026, 12, 6, 3, 30, tzinfo=dt.UTC)


def _entry(label: str, age_days: int) -> AuditLog:
    return AuditLog(at=NOW - dt.timedelta(days=age_days), action="update", entity_kind="sources", entity_id=1,
                    entity_label=label, before={"name": "a"}, after={"name": "b"}, user_login="admin")


def test_old_audit_entries_are_swept_and_recent_ones_kept(session, session_factory, tmp_path):
    session.add_all([_entry("old", 800), _entry("edge", 731), _entry("recent", 10)])
    session.commit()
    dry = Sweeper(session_factory, tmp_path / "rec", now=NOW, audit_days=730, dry_run=True).run()
    assert dry.audit_deleted == 2 and session.scalar(select(AuditLog.id).limit(1)) is not None
    report = Sweeper(session_factory, tmp_path / "rec", now=NOW, audit_days=730).run()
    assert report.audit_deleted == 2 and report.totals["audit_deleted"] == 2
    session.rollback()  # a new read: the earlier one held its snapshot
    assert [e.entity_label for e in session.scalars(select(AuditLog))] == ["recent"]
    assert Sweeper(session_factory, tmp_path / "rec", now=NOW).run().audit_deleted == 0  # 0/None keeps all


def test_the_config_default_is_two_years_and_zero_keeps_forever(session, session_factory, db_url, tmp_path):
    session.add_all([_entry("three years", 3 * 365), _entry("one year", 365)])
    session.commit()
    base = {"database": {"url": db_url}, "recordings": {"dir": str(tmp_path / "rec")}}
    keep = load_config(environ={}, overrides={**base, "retention": {"audit_days": "0"}})
    assert sweep_from_config(keep, session_factory, now=NOW).audit_deleted == 0
    config = load_config(environ={}, overrides=base)
    assert config.values["retention"]["audit_days"] == 730
    assert sweep_from_config(config, session_factory, now=NOW).audit_deleted == 1
    session.rollback()  # a new read: the earlier one held its snapshot
    assert [e.entity_label for e in session.scalars(select(AuditLog))] == ["one year"]
