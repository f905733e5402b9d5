"""Retention sweeper on both databases, with real files in a temporary recordings directory."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from astertrack.db.models import (
    Call,
    CallEvent,
    CdrRecord,
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    PoolUsageSample,
    Site,
    TrackingNumber,
    VisitorSession,
)
from astertrack.ops.retention import Policy, Sweeper, recordings_disk_usage
from astertrack.routing.recording import recording_name

NOW = dt.datetime(2026, 11, 23, 3, 30, tzinfo=dt.UTC)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def add_call(session, recdir, site, age_days, with_file=True, size=1000, uid=None):
    started = days_ago(age_days)
    call = Call(site_id=site.id if site else None, started_at=started, state="finished", outcome="answered")
    if uid:
        call.call_uid = uid
    session.add(call)
    session.flush()
    name = recording_name(call.call_uid, started) + ".wav"
    call.recording_path = name
    call.recording_state = "kept"
    if with_file:
        path = recdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    session.add(CallEvent(call_id=call.id, name="Hangup", headers={"Uniqueid": "1.1"}, received_at=started))
    return call


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def make_site(session, name, calls=None, sessions=None, recordings=None):
    site = Site(name=name, calls_retention_days=calls, sessions_retention_days=sessions,
                recordings_retention_days=recordings)
    session.add(site)
    session.flush()
    return site


def test_each_site_keeps_its_own_days(session, session_factory, tmp_path):
    recdir = tmp_path / "monitor"
    short = make_site(session, "short", calls=30, sessions=7, recordings=10)
    forever = make_site(session, "forever")  # NULL everywhere: keep
    old_short = add_call(session, recdir, short, 40, size=5000)
    mid_short = add_call(session, recdir, short, 20, size=3000)  # recording goes, call stays
    new_short = add_call(session, recdir, short, 2, size=700)
    old_forever = add_call(session, recdir, forever, 400, size=9000)
    pool = NumberPool(site_id=short.id, name="p")
    session.add(pool)
    session.flush()
    number = TrackingNumber(number="+74950000101", site_id=short.id, pool_id=pool.id)
    session.add(number)
    stale = VisitorSession(site_id=short.id, first_seen=days_ago(9), last_seen=days_ago(8))
    fresh = VisitorSession(site_id=short.id, first_seen=days_ago(1), last_seen=days_ago(1))
    forever_visit = VisitorSession(site_id=forever.id, first_seen=days_ago(300), last_seen=days_ago(300))
    session.add_all([stale, fresh, forever_visit])
    session.flush()
    session.add(NumberAssignment(number_id=number.id, session_id=stale.id, assigned_at=days_ago(8),
                                 expires_at=days_ago(8), hard_expires_at=days_ago(8), released_at=days_ago(8)))
    mid_short.session_id = stale.id  # a kept call that points at a deleted session loses only the link
    session.add_all([
        OverflowEvent(site_id=short.id, pool_id=pool.id, occurred_at=days_ago(8), policy="fallback"),
        OverflowEvent(site_id=short.id, pool_id=pool.id, occurred_at=days_ago(1), policy="fallback"),
        PoolUsageSample(pool_id=pool.id, sampled_at=days_ago(8), live=1, size=1),
        PoolUsageSample(pool_id=pool.id, sampled_at=days_ago(1), live=1, size=1),
    ])
    session.commit()
    ids = {name: call.id for name, call in
           [("old", old_short), ("mid", mid_short), ("new", new_short), ("forever", old_forever)]}
    paths = {name: recdir / call.recording_path for name, call in
             [("old", old_short), ("mid", mid_short), ("new", new_short), ("forever", old_forever)]}

    report = Sweeper(session_factory, recdir, now=NOW).run()

    by_site = {site.site_name: site for site in report.sites}
    assert by_site["short"].calls_deleted == 1
    assert by_site["short"].recordings_deleted == 2  # old (with its call) and mid (call kept)
    assert by_site["short"].bytes_freed == 8000
    assert by_site["short"].sessions_deleted == 1
    assert by_site["forever"].calls_deleted == by_site["forever"].recordings_deleted == 0
    assert report.totals["bytes_freed"] == 8000 and report.totals["errors"] == 0
    assert "short: freed 1 calls, 1 sessions, 2 recordings (7.8 KB)" == by_site["short"].summary()

    session.expire_all()
    assert session.get(Call, ids["old"]) is None
    assert count(session, CallEvent, CallEvent.call_id == ids["old"]) == 0
    mid = session.get(Call, ids["mid"])
    assert mid.recording_state == "deleted" and mid.session_id is None
    assert session.get(Call, ids["new"]).recording_state == "kept"
    assert session.get(Call, ids["forever"]).recording_state == "kept"
    assert not paths["old"].exists() and not paths["mid"].exists()
    assert paths["new"].exists() and paths["forever"].exists()
    assert not paths["old"].parent.exists()  # emptied day directories are pruned
    assert session.get(VisitorSession, fresh.id) is not None
    assert session.get(VisitorSession, forever_visit.id) is not None
    assert count(session, NumberAssignment) == 0
    assert count(session, OverflowEvent) == 1 and count(session, PoolUsageSample) == 1

    again = Sweeper(session_factory, recdir, now=NOW).run()
    assert again.totals["calls_deleted"] == again.totals["recordings_deleted"] == 0


def test_config_defaults_apply_to_sites_without_settings_and_to_siteless_calls(session, session_factory, tmp_path):
    recdir = tmp_path / "rec"
    plain = make_site(session, "plain")
    own = make_site(session, "own", calls=0)  # explicit 0 = keep forever, beats the default
    a = add_call(session, recdir, plain, 100)
    b = add_call(session, recdir, own, 100)
    c = add_call(session, recdir, None, 100)
    session.commit()
    a, b, c = a.id, b.id, c.id
    report = Sweeper(session_factory, recdir, defaults=Policy(calls_days=90), now=NOW).run()
    session.expire_all()
    assert session.get(Call, a) is None
    assert session.get(Call, b) is not None
    assert session.get(Call, c) is None
    assert report.totals["calls_deleted"] == 2


def test_dry_run_changes_nothing_but_reports(session, session_factory, tmp_path):
    recdir = tmp_path / "rec"
    site = make_site(session, "s", calls=30, recordings=10, sessions=5)
    call = add_call(session, recdir, site, 40, size=1234)
    session.add(VisitorSession(site_id=site.id, last_seen=days_ago(6)))
    session.commit()
    report = Sweeper(session_factory, recdir, now=NOW, dry_run=True).run()
    assert report.totals["calls_deleted"] == 1
    assert report.totals["recordings_deleted"] == 1 and report.totals["bytes_freed"] == 1234
    assert report.totals["sessions_deleted"] == 1
    session.expire_all()
    assert session.get(Call, call.id).recording_state == "kept"
    assert (recdir / call.recording_path).exists()
    assert count(session, VisitorSession) == 1


def test_missing_files_and_escaping_paths(session, session_factory, tmp_path):
    recdir = tmp_path / "rec"
    recdir.mkdir()
    site = make_site(session, "s", recordings=1)
    gone = add_call(session, recdir, site, 5, with_file=False)
    evil = add_call(session, recdir, site, 5, with_file=False)
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"keep me")
    evil.recording_path = "../precious.wav"
    noext = add_call(session, recdir, site, 5, with_file=False)
    noext.recording_path = "2026/11/18/noext-call"
    (recdir / "2026/11/18").mkdir(parents=True)
    (recdir / "2026/11/18/noext-call.WAV").write_bytes(b"x" * 10)
    session.commit()
    report = Sweeper(session_factory, recdir, now=NOW).run()
    site_report = report.sites[0]
    assert site_report.recordings_missing == 1
    assert site_report.recordings_deleted == 1 and site_report.bytes_freed == 10  # found by its suffix
    assert len(site_report.errors) == 1 and "outside" in site_report.errors[0]
    assert outside.read_bytes() == b"keep me"
    session.expire_all()
    assert session.get(Call, gone.id).recording_state == "deleted"
    assert session.get(Call, evil.id).recording_state == "kept"


def test_undeletable_recording_keeps_its_call(session, session_factory, tmp_path, monkeypatch):
    recdir = tmp_path / "rec"
    site = make_site(session, "s", calls=1)
    call = add_call(session, recdir, site, 5)
    other = add_call(session, recdir, site, 5)
    session.commit()
    call_id, other_id, stuck = call.id, other.id, (recdir / call.recording_path)
    real_unlink = type(stuck).unlink

    def unlink(self, *args, **kwargs):  # the OS refusing (root ignores chmod, so refuse here)
        if self == stuck:
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(type(stuck), "unlink", unlink)
    report = Sweeper(session_factory, recdir, now=NOW).run()
    site_report = report.sites[0]
    assert site_report.calls_deleted == 1
    assert len(site_report.errors) == 1 and "Permission denied" in site_report.errors[0]
    session.expire_all()
    assert session.get(Call, call_id) is not None and stuck.exists()
    assert session.get(Call, other_id) is None


def test_raw_events_and_batches(session, session_factory, tmp_path):
    recdir = tmp_path / "rec"
    site = make_site(session, "s", calls=50)
    calls = [add_call(session, recdir, site, 60 + i, size=10) for i in range(7)]
    keep = add_call(session, recdir, site, 5)
    for i in range(5):
        session.add(CallEvent(call_id=keep.id, name="VarSet", received_at=days_ago(40 + i)))
    session.add(CallEvent(call_id=None, name="Orphan", received_at=days_ago(100)))
    session.commit()
    call_ids = [c.id for c in calls]
    report = Sweeper(session_factory, recdir, now=NOW, batch_size=3, raw_events_days=30).run()
    assert report.totals["calls_deleted"] == 7
    assert report.totals["recordings_deleted"] == 7 and report.totals["bytes_freed"] == 70
    assert report.raw_events_deleted == 6  # 5 old events of the kept call + the orphan
    session.expire_all()
    assert count(session, Call) == 1
    assert count(session, CallEvent, CallEvent.call_id == keep.id) == 1  # its recent Hangup
    assert all(session.get(Call, i) is None for i in call_ids)


def test_disk_usage(tmp_path):
    recdir = tmp_path / "rec"
    (recdir / "2026/10/01").mkdir(parents=True)
    (recdir / "2026/11/02").mkdir(parents=True)
    (recdir / "2026/10/01/a.wav").write_bytes(b"a" * 100)
    (recdir / "2026/11/02/b.wav").write_bytes(b"b" * 50)
    (recdir / "loose.wav").write_bytes(b"c" * 7)
    usage = recordings_disk_usage(recdir, max_age=0)
    assert usage.files == 3 and usage.bytes == 157
    assert usage.by_month == {"2026-10": 100, "2026-11": 50, "other": 7}
    assert usage.filesystem_free and usage.filesystem_total >= usage.filesystem_free
    (recdir / "loose.wav").unlink()
    assert recordings_disk_usage(recdir, max_age=300).bytes == 157  # cached
    assert recordings_disk_usage(recdir, max_age=0).bytes == 150
    empty = recordings_disk_usage(tmp_path / "nope", max_age=0)
    assert empty.files == 0 and empty.bytes == 0


def test_cli_sweeps_reports_and_keeps_the_last_report(session, db_url, tmp_path):
    from click.testing import CliRunner

    from astertrack.cli.main import main
    from astertrack.ops.retention import last_report

    recdir, data = tmp_path / "rec", tmp_path / "data"
    data.mkdir()
    site = make_site(session, "shop", calls=30)
    add_call(session, recdir, site, 400, size=2048)
    add_call(session, recdir, site, 1, size=10)
    session.commit()
    conf = tmp_path / "astertrack.conf"
    conf.write_text(f"[general]\ndata_dir = {data}\n[recordings]\ndir = {recdir}\n")
    secrets = tmp_path / "conf.d"
    secrets.mkdir()
    (secrets / "10-db.conf").write_text(f"[database]\nurl = {db_url}\n")
    (secrets / "10-db.conf").chmod(0o640)
    runner = CliRunner()
    dry = runner.invoke(main, ["-c", str(conf), "retention", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would free shop: freed 1 calls" in dry.output and last_report(data) is None
    result = runner.invoke(main, ["-c", str(conf), "retention"])
    assert result.exit_code == 0, result.output
    assert "shop: freed 1 calls, 0 sessions, 1 recordings (2.0 KB)" in result.output
    assert "total: 1 calls" in result.output
    saved = last_report(data)
    assert saved["totals"]["calls_deleted"] == 1 and saved["totals"]["bytes_freed"] == 2048
    assert [s["site_name"] for s in saved["sites"]][0] == "shop"
    as_json = runner.invoke(main, ["-c", str(conf), "retention", "--json"])
    assert as_json.exit_code == 0 and '"calls_deleted": 0' in as_json.output


def test_cdr_lines_go_with_the_raw_events(session, session_factory, tmp_path):
    def line(linkedid: str, age_days: int) -> CdrRecord:
        return CdrRecord(node="pbx1", linkedid=linkedid, uniqueid=linkedid, channel="SIP/trunk-1",
                         disposition="ANSWERED", start=1.0, answer=2.0, end=3.0, read_at=days_ago(age_days))

    session.add_all([line("old.1", 40), line("old.2", 31), line("new.1", 2)])
    session.commit()
    report = Sweeper(session_factory, tmp_path / "rec", now=NOW, raw_events_days=30).run()
    assert report.raw_events_deleted == 2
    session.expire_all()
    assert [r.linkedid for r in session.scalars(select(CdrRecord))] == ["new.1"]
