"""The demo data set holds together as a running call centre's data would (issue #21 §7).

Each test loads a small demo into an empty database of each backend and checks one promise
against the rule that owns it: working hours (``routing.schedule``), attribution (the pool
number a visit held, a repeat caller's first touch), pool health and the recordings folder.
"""

from __future__ import annotations

import datetime as dt
import re
import wave
from collections import Counter
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from astertrack.db.models import (
    Call,
    CallerProfile,
    Manager,
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    RoutingRule,
    Site,
    Source,
    TrackingNumber,
    VisitorSession,
)
from astertrack.db.types import utcnow
from astertrack.dni.poolhealth import pool_health
from astertrack.routing.recording import resolve_recording
from astertrack.routing.schedule import DAYS, is_open
from astertrack.samples.demo import load_demo


def test_calls_ring_only_in_working_hours_busiest_late_morning_and_afternoon(session):
    load_demo(session, days=8, calls_per_day=40)
    site = session.scalar(select(Site))
    local = ZoneInfo(site.timezone)
    rules = {rule.name: rule for rule in session.scalars(select(RoutingRule))}
    managers = {m.id: m for m in session.scalars(select(Manager))}
    calls = session.scalars(select(Call)).all()
    assert len(calls) > 200
    hours: Counter[int] = Counter()
    dates = set()
    for call in calls:
        at = call.started_at.astimezone(local)
        hours[at.hour] += 1
        dates.add(at.date())
        rule, manager = rules[call.routed_by], managers[call.routed_manager_id]
        assert is_open(rule.schedule, call.started_at, site.timezone), (rule.name, at)
        assert is_open(manager.schedule, call.started_at, site.timezone), (manager.name, at)
        if call.manager_id is not None:
            assert call.manager_id == call.routed_manager_id
    # Not spread back from "now" (that put every call between 18:00 and 08:00): a working day's shape.
    assert set(hours) <= set(range(9, 21))
    assert sum(hours[h] for h in range(9, 18)) > 3 * sum(hours[h] for h in (18, 19, 20))
    peak = hours.most_common(1)[0][0]
    assert peak in (10, 11, 12, 14, 15, 16), hours
    assert hours[11] > hours[9] and hours[15] > hours[20]
    assert len(dates) == 8  # every day of the week has calls, Sunday too

    # Every day with calls is a day the schedules of the routing rule and its managers cover.
    main_rule = rules["Everyone else"]
    for date in dates:
        weekday = DAYS[date.weekday()]
        for schedule in [main_rule.schedule, *(m.schedule for m in managers.values())]:
            assert schedule.get(weekday), (weekday, schedule)
            assert date.isoformat() not in schedule.get("closed_dates", [])


def test_each_call_has_the_attribution_its_visit_and_history_give_it(session):
    load_demo(session, days=6, calls_per_day=60)
    visits = {v.id: v for v in session.scalars(select(VisitorSession))}
    numbers = {n.id: n for n in session.scalars(select(TrackingNumber))}
    sources = {s.id: s for s in session.scalars(select(Source))}
    holds: dict[int, list[NumberAssignment]] = {}
    for hold in session.scalars(select(NumberAssignment)):
        holds.setdefault(hold.session_id, []).append(hold)
    calls = session.scalars(select(Call).order_by(Call.started_at)).all()
    kinds = Counter(call.attribution_kind for call in calls)
    assert kinds["dynamic"] and kinds["static"] and kinds["repeat"], kinds
    for call in calls:
        if call.session_id is not None:  # the visit the call is attributed to came from the call's source
            visit = visits[call.session_id]
            assert visit.source_id == call.source_id, (call.id, call.attribution_kind)
            assert (call.utm_source, call.utm_campaign) == (visit.utm_source, visit.utm_campaign)
        if call.attribution_kind == "dynamic":  # came in on the number its visit held at that moment
            [hold] = holds[call.session_id]
            assert hold.assigned_at <= call.started_at < hold.released_at
            assert numbers[hold.number_id].number == call.did
            rivals = session.scalar(select(func.count()).select_from(NumberAssignment).where(
                NumberAssignment.number_id == hold.number_id, NumberAssignment.id != hold.id,
                NumberAssignment.assigned_at <= call.started_at, NumberAssignment.released_at > call.started_at))
            assert rivals == 0  # one live hold per number, as the allocator guarantees
        elif call.attribution_kind == "static":
            assert sources[call.source_id].kind == "static" and call.session_id is None

    # A repeat caller keeps the source and visit of their first call (first touch).
    first_calls: dict[str, Call] = {}
    repeats = 0
    for call in calls:
        first = first_calls.setdefault(call.caller_number, call)
        if first is call:
            assert call.is_first_call
            continue
        repeats += 1
        assert not call.is_first_call and call.attribution_kind == "repeat"
        assert (call.source_id, call.session_id) == (first.source_id, first.session_id)
    assert repeats > 10
    for profile in session.scalars(select(CallerProfile)):
        first = first_calls[profile.number]
        assert (profile.first_source_id, profile.first_session_id) == (first.source_id, first.session_id)
        assert profile.calls_count == session.scalar(select(func.count(Call.id)).where(
            Call.caller_number == profile.number))


def test_pool_health_counts_the_visits_the_sessions_hold(session):
    days = 5
    load_demo(session, days=days, calls_per_day=60)
    site = session.scalar(select(Site))
    pool = session.scalar(select(NumberPool))
    local = ZoneInfo(site.timezone)
    today = utcnow().astimezone(local).date()
    since = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), local).astimezone(dt.UTC)
    until = dt.datetime.combine(today, dt.time(), local).astimezone(dt.UTC)
    pool_source_ids = select(Source.id).where(Source.pool_id == pool.id)
    visits = session.scalar(select(func.count(VisitorSession.id)).where(
        VisitorSession.source_id.in_(pool_source_ids), VisitorSession.first_seen >= since,
        VisitorSession.first_seen < until))
    assert visits > days * 300
    health = pool_health(session, pool, since, until, utcnow())
    assert health.visits_per_day == round(visits / days, 1)
    # Every visit of a pool source either held a number or was turned away, never both.
    held = set(session.scalars(select(NumberAssignment.session_id)))
    turned_away = set(session.scalars(select(OverflowEvent.session_id)))
    pool_visits = set(session.scalars(select(VisitorSession.id).where(VisitorSession.source_id.in_(pool_source_ids))))
    assert held | turned_away == pool_visits and not held & turned_away
    assert health.assignments == len(held) - session.scalar(select(func.count(NumberAssignment.id)).where(
        NumberAssignment.assigned_at < since))
    assert health.peak <= health.size


def test_answered_calls_have_short_recordings_that_exist(session, tmp_path):
    recordings = tmp_path / "monitor"
    recordings.mkdir()
    counts = load_demo(session, days=2, calls_per_day=30, recordings_dir=recordings)
    calls = session.scalars(select(Call)).all()
    answered = [call for call in calls if call.outcome == "answered"]
    assert answered and counts["recordings"] == len(answered)
    for call in calls:
        if call.outcome != "answered":
            assert call.recording_path is None
            continue
        assert call.recording_state == "kept"
        assert re.fullmatch(rf"\d{{4}}/\d\d/\d\d/{call.call_uid}\.wav", call.recording_path)
        path = resolve_recording(recordings, call.recording_path)
        assert path is not None and path.is_file(), call.recording_path
        with wave.open(str(path)) as audio:
            assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 8000)
            seconds = audio.getnframes() / audio.getframerate()
            frames = audio.readframes(audio.getnframes())
        assert 3 <= seconds <= 6
        loudest = max(abs(int.from_bytes(frames[i:i + 2], "little", signed=True)) for i in range(0, len(frames), 2))
        assert loudest > 3000  # a conversation, not silence
    # A month of calls must not fill the disk: the clips are shared through hard links.
    size = sum(p.stat().st_size for p in {f.stat().st_ino: f for f in recordings.rglob("*.wav")}.values())
    assert size < 1_000_000


def test_without_a_recordings_folder_calls_say_so_and_the_crm_link_opens_the_caller(session):
    """No folder: answered calls say they were not recorded.  Every placeholder of the demo's
    CRM link is one the pop-up fills in."""
    from webadmin.live.state import crm_link

    counts = load_demo(session, days=1, calls_per_day=20)
    assert counts["recordings"] == 0
    answered = session.scalars(select(Call).where(Call.outcome == "answered")).all()
    assert answered
    assert all(call.recording_path is None and call.recording_state is None for call in answered)

    site = session.scalar(select(Site))
    assert set(re.findall(r"\{(\w+)\}", site.crm_url_template)) == {"phone"}
    for call in session.scalars(select(Call)):
        link = crm_link(site.crm_url_template, call)
        assert link == "https://crm.example/contacts?phone=" + call.caller_number.replace("+", "%2B")


def _config_for(tmp_path, db_url):
    path = tmp_path / "astertrack.conf"
    path.write_text(f"[database]\nurl = {db_url}\n[recordings]\ndir = {tmp_path / 'no-such-monitor'}\n",
                    encoding="utf-8")
    return str(path)


def test_commands_on_a_database_without_the_schema_say_run_db_upgrade(tmp_path, empty_url):
    """One line that says what to do, exit code 1, nothing written; then the same command works."""
    from click.testing import CliRunner

    from astertrack.cli.main import main

    runner = CliRunner()
    config = _config_for(tmp_path, empty_url)
    for args in (["demo", "--days", "1", "--calls-per-day", "5"], ["pool-health"],
                 ["user", "add", "olga", "--password", "long-enough-pw"]):
        result = runner.invoke(main, ["-c", config, *args])
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "run `astertrack db upgrade` first" in lines[0], result.output
        assert "Traceback" not in result.output and result.exception.__class__ is SystemExit

    assert runner.invoke(main, ["-c", config, "db", "upgrade", "--revision", "0006"]).exit_code == 0
    behind = runner.invoke(main, ["-c", config, "demo"])
    assert behind.exit_code == 1 and "at revision 0006" in behind.output
    assert "run `astertrack db upgrade` first" in behind.output
    assert runner.invoke(main, ["-c", config, "db", "upgrade"]).exit_code == 0
    done = runner.invoke(main, ["-c", config, "demo", "--days", "1", "--calls-per-day", "5"])
    assert done.exit_code == 0, done.output
    assert "without recordings" in done.output  # the folder does not exist: not created, said so


def test_the_installed_command_prints_no_traceback_on_an_empty_database(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    config = _config_for(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    Path(config).chmod(0o640)  # it names the database: a world-readable one would add a warning
    result = subprocess.run([str(Path(sys.executable).parent / "astertrack"), "-c", config, "demo"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Error: the database sqlite:///{tmp_path / 'empty.db'} has no astertrack "
                                     "schema: run `astertrack db upgrade` first"), result.stderr
    assert result.stdout == ""


def test_demo_writes_recordings_into_an_existing_recordings_folder(tmp_path, db_url):
    from click.testing import CliRunner

    from astertrack.cli.main import main

    (tmp_path / "no-such-monitor").mkdir()  # now it exists
    result = CliRunner().invoke(main, ["-c", _config_for(tmp_path, db_url), "demo", "--days", "1",
                                       "--calls-per-day", "12"])
    assert result.exit_code == 0, result.output
    files = list((tmp_path / "no-such-monitor").rglob("*.wav"))
    assert files and f"{len(files)} short generated recordings in" in result.output


def test_the_supervisor_has_reviewed_calls_and_handled_older_missed_ones(session):
    from astertrack.db.models import CallHandled, CallScore, ChecklistItem, User
    from astertrack.review.actions import MISSED_OUTCOMES, checklist, current_mark

    load_demo(session, days=4, calls_per_day=60)
    site = session.scalar(select(Site))
    supervisor = session.scalar(select(User).where(User.role == "supervisor"))
    items = checklist(session, site.id)
    assert len(items) >= 3 and session.scalar(select(func.count(ChecklistItem.id))) == len(items)
    scores = session.scalars(select(CallScore)).all()
    assert scores and all(s.user_id == supervisor.id and 0 <= s.total <= 1 for s in scores)
    for score in scores:  # a call is scored after it happened, never before
        call = session.get(Call, score.call_id)
        assert call.outcome == "answered" and call.started_at < score.at <= utcnow()
    marks = session.scalars(select(CallHandled)).all()
    assert marks
    for mark in marks:
        call = session.get(Call, mark.call_id)
        assert call.outcome in MISSED_OUTCOMES and call.started_at < mark.handled_at
    # the newest missed calls (of the last day with calls: a weekend has none) are still to do,
    # so the missed report's "unhandled" filter has work whenever the demo is loaded
    day_ago = session.scalar(select(func.max(Call.started_at))) - dt.timedelta(days=1)
    recent = session.scalars(select(Call).where(Call.outcome.in_(MISSED_OUTCOMES), Call.started_at > day_ago)).all()
    assert recent and all(current_mark(session, call.id) is None for call in recent)
