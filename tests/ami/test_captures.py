"""Every recorded call flow, replayed over TCP into the real listener and the real database.

One test per flow (``test_<capture name>``), each on SQLite and PostgreSQL.  Expected values come
from the ground-truth documents (see ground_truth.py), never from the listener's own output.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from astertrack.db.models import AmiGap, Call, CallEvent, Manager
from tests.ami.fake_ami import Session as Script
from tests.ami.fake_ami import capture_body
from tests.ami.ground_truth import ALL, MONITOR, Expected, endpoint, technology
from tests.ami.harness import NODE, finished_calls, run_listener
from tests.conftest import RECORDED_ASTERISK

AMI_DIR = RECORDED_ASTERISK / "ami"
TOLERANCE = 1.0  # seconds, as the issue asks


def seed_managers(session, capture: str) -> dict[str, int]:
    """Managers 101..105 as configured in the lab; the Local set's managers are matched by extension."""
    tech = technology(capture)
    ids = {}
    for ext in ("101", "102", "103", "104", "105"):
        ep = f"PJSIP/{ext}" if tech == "Local" else f"{tech}/{ext}"
        manager = Manager(name=f"Manager {ext}", endpoint=ep, extension=ext)
        session.add(manager)
        session.flush()
        ids[ext] = manager.id
    session.commit()
    return ids


def check_capture(session_factory, db_url: str, expected: Expected) -> None:
    with session_factory() as session:
        managers = seed_managers(session, expected.capture)
        if expected.call_uid:
            # The AGI wrote the row first (attribution included); the listener must complete it.
            session.add(Call(call_uid=expected.call_uid, node=NODE, state="ringing", utm_source="agi-wrote-this",
                             started_at=dt.datetime.now(dt.UTC)))
            session.commit()

    body = capture_body(AMI_DIR / f"{expected.capture}.ami.txt")
    run = run_listener(db_url, [Script(stream=body)], lambda s: finished_calls(s) >= 1)

    with session_factory() as session:
        calls = session.scalars(select(Call)).all()
        assert len(calls) == 1, [c.call_uid for c in calls]  # no duplicates from Local channels or queue legs
        call = calls[0]
        assert call.state == "finished"
        assert call.closed_by == "events"
        assert call.outcome == expected.outcome
        assert call.missed_reason == expected.reason
        if expected.answered_ext:
            assert call.answered_by == endpoint(expected.capture, expected.answered_ext)
            assert call.manager_id == managers[expected.answered_ext]
            assert call.answered_at is not None
        else:
            assert call.answered_by is None and call.manager_id is None and call.answered_at is None
        assert call.wait_seconds == pytest.approx(expected.wait, abs=TOLERANCE)
        assert call.talk_seconds == pytest.approx(expected.talk, abs=TOLERANCE)
        assert call.total_seconds >= call.wait_seconds + call.talk_seconds - TOLERANCE
        if expected.recording:
            assert call.recording_path == f"{MONITOR}/{expected.recording}"
            assert call.recording_state == ("kept" if expected.outcome == "answered" else "empty")
        else:
            assert call.recording_path is None and call.recording_state is None
        if expected.hangup_side:
            assert call.hangup_side == expected.hangup_side
        if expected.cause is not None:
            assert call.hangup_cause == expected.cause
        assert call.did == "+" + expected.did
        assert call.caller_number == "+" + expected.caller
        if expected.call_uid:
            assert call.call_uid == expected.call_uid
            assert call.utm_source == "agi-wrote-this"  # the AGI's attribution survives
        assert call.transferred == bool(expected.transferred_to_ext)
        if expected.transferred_to_ext:
            assert call.transferred_to == endpoint(expected.capture, expected.transferred_to_ext)
        assert call.ringing_endpoint is None
        assert call.linkedid
        events = session.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.call_id == call.id))
        assert events > 10
        assert session.scalar(select(func.count()).select_from(AmiGap)) == 1
    assert run.server.failed_logins == 0


def _make_test(expected: Expected):
    def test(session_factory, db_url):
        check_capture(session_factory, db_url, expected)

    test.__name__ = f"test_{expected.capture}"
    test.__doc__ = f"{expected.capture}: {expected.outcome} {expected.reason or ''}".strip()
    return test


for _expected in ALL.values():
    globals()[f"test_{_expected.capture}"] = _make_test(_expected)


def test_every_capture_has_a_flow_test():
    captures = {p.name.removesuffix(".ami.txt") for p in AMI_DIR.glob("*.ami.txt")}
    assert captures - set(ALL) == {"sip_z_device_states", "pjsip_z_device_states"}


@pytest.mark.parametrize("capture", ["pjsip_z_device_states", "sip_z_device_states"])
def test_device_states_idle_stream_tracks_phones_and_records_no_call(session_factory, db_url, capture):
    """Originated test calls to phones are not inbound calls; the phones' states land on managers."""
    tech = technology(capture)
    with session_factory() as session:
        seed_managers(session, capture)
    body = capture_body(AMI_DIR / f"{capture}.ami.txt")

    def done(session):
        manager = session.scalar(select(Manager).where(Manager.endpoint == f"{tech}/105"))
        return manager.device_state_at is not None and manager.device_state == "NOT_INUSE"

    run = run_listener(db_url, [Script(stream=body)], done)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 0
        states = {m.endpoint: m.device_state for m in session.scalars(select(Manager))}
        assert states[f"{tech}/102"] == "NOT_INUSE" and states[f"{tech}/104"] == "NOT_INUSE"
        assert states[f"{tech}/101"] == "UNKNOWN"  # no event about 101 in this stream
    assert run.listener.machine.calls_in_progress == 0
