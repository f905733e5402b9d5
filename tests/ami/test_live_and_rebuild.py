"""Live state the web admin and the AGI read while calls run, and ``rebuild`` against the live run."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from ami_listener.daemon import main as ami_main
from ami_listener.rebuild import rebuild
from astertrack.callflow.state_machine import CallStateMachine
from astertrack.db.models import Call, CallEvent, Manager
from tests.ami.fake_ami import Session as Script
from tests.ami.fake_ami import capture_body, split_blocks
from tests.ami.ground_truth import ALL
from tests.ami.harness import NODE, finished_calls, run_listener
from tests.conftest import RECORDED_ASTERISK, REPO

AMI_DIR = RECORDED_ASTERISK / "ami"


def cut(capture: str, *marks: tuple[bytes, ...]) -> list[bytes]:
    """Split a recording after the first message matching each mark (in order)."""
    blocks = split_blocks(capture_body(AMI_DIR / f"{capture}.ami.txt"))
    parts, start = [], 0
    for needles in marks:
        index = next(i for i in range(start, len(blocks)) if all(n in blocks[i] for n in needles))
        parts.append(b"".join(blocks[start:index + 1]))
        start = index + 1
    parts.append(b"".join(blocks[start:]))
    return parts


def test_live_board_sees_ringing_endpoints_then_the_answerer_then_the_end(session_factory, db_url):
    with session_factory() as session:
        session.add_all([Manager(name="Anna", endpoint="PJSIP/101", extension="101"),
                         Manager(name="Boris", endpoint="PJSIP/102", extension="102")])
        session.commit()
    parts = cut("pjsip_f_ringgroup_102_answers",
                (b"Event: DeviceStateChange", b"Device: PJSIP/102", b"State: RINGING"),
                (b"Event: BridgeEnter", b"Channel: PJSIP/trunk"))
    seen: dict[int, tuple] = {}

    def watch(listener, server):
        with session_factory() as session:
            call = session.scalar(select(Call))
            device = session.scalar(select(Manager.device_state).where(Manager.endpoint == "PJSIP/102"))
        if call is None:
            return
        part = server.parts_sent
        snapshot = (call.state, call.ringing_endpoint, call.answered_by, device)
        if part == 1 and snapshot == ("ringing", "PJSIP/101,PJSIP/102", None, "RINGING"):
            seen[1] = (*snapshot, time.monotonic() - server.part_sent_at[0])
            server.proceed()
        elif part == 2 and snapshot[:3] == ("up", None, "PJSIP/102"):
            seen[2] = (*snapshot, time.monotonic() - server.part_sent_at[1])
            server.proceed()
        elif part == 3:
            seen[3] = snapshot

    run_listener(db_url, [Script(stream=parts[0], gated=parts[1:])], lambda s: finished_calls(s) >= 1,
                 during=watch)
    assert set(seen) == {1, 2, 3}
    assert seen[1][4] < 1.0 and seen[2][4] < 1.0  # visible to the web admin and the AGI within a second
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.state, call.ringing_endpoint, call.answered_by) == ("finished", None, "PJSIP/102")
        assert session.scalar(select(Manager.device_state).where(Manager.endpoint == "PJSIP/102")) == "NOT_INUSE"


def test_rebuild_gives_the_same_records_as_the_live_run_and_is_idempotent(session_factory, db_url):
    flows = ["pjsip_a_answered_101", "sip_b_noanswer_then_next", "pjsip_c_busy_103", "sip_d_caller_hangup_ringing",
             "pjsip_e_manager_hangs_up", "sip_f_ringgroup_102_answers", "pjsip_h_queue_abandon",
             "sip_i_blind_transfer", "pjsip_k_agi_down_fallback", "a_answered_101", "f_queue_answered"]
    stream = b"".join(capture_body(AMI_DIR / f"{name}.ami.txt") for name in flows)
    run_listener(db_url, [Script(stream=stream)], lambda s: finished_calls(s) >= len(flows), timeout=60)
    columns = ("call_uid", "outcome", "missed_reason", "answered_by", "wait_seconds", "talk_seconds",
               "total_seconds", "hangup_side", "hangup_cause", "recording_path", "recording_state", "transferred",
               "transferred_to", "answered_at", "ended_at", "manager_id", "closed_by")

    def snapshot():
        with session_factory() as session:
            return sorted(tuple(getattr(c, k) for k in columns) for c in session.scalars(select(Call)))

    live = snapshot()
    assert len(live) == len(flows)
    assert sorted(r[1] for r in live) == sorted(ALL[f].outcome for f in flows)
    with session_factory() as session:  # damage every derived column
        session.execute(update(Call).values(outcome=None, missed_reason=None, answered_by=None, wait_seconds=None,
                                            talk_seconds=None, recording_state=None, transferred=False,
                                            hangup_side=None, state="up"))
        session.commit()
    report = rebuild(session_factory, NODE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), CallStateMachine)
    assert (report.calls, report.rebuilt, report.changed, report.incomplete) == (len(flows), len(flows),
                                                                                 len(flows), 0)
    assert snapshot() == live
    again = rebuild(session_factory, NODE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), CallStateMachine)
    assert (again.rebuilt, again.changed) == (len(flows), 0)
    assert snapshot() == live


def test_rebuild_command_line(session_factory, db_url, tmp_path):
    run_listener(db_url, [Script(stream=capture_body(AMI_DIR / "sip_e_manager_hangs_up.ami.txt"))],
                 lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        session.execute(update(Call).values(outcome=None, hangup_side=None))
        session.commit()
        assert session.query(CallEvent).count() > 10
    config = tmp_path / "astertrack.conf"
    config.write_text(f"[general]\nnode = {NODE}\n[database]\nurl = {db_url}\n")
    config.chmod(0o600)
    result = CliRunner().invoke(ami_main, ["-c", str(config), "rebuild", "--since", "2026-11-01"])
    assert result.exit_code == 0, result.output
    assert "rebuilt 1, changed 1" in result.output
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.outcome, call.hangup_side, call.answered_by) == ("answered", "manager", "SIP/104")
    bad = CliRunner().invoke(ami_main, ["-c", str(config), "rebuild", "--since", "last tuesday"])
    assert bad.exit_code != 0 and "not an ISO date" in bad.output


@pytest.mark.parametrize("store", [False])
def test_raw_events_can_be_switched_off(session_factory, db_url, store):
    run_listener(db_url, [Script(stream=capture_body(AMI_DIR / "pjsip_a_answered_101.ami.txt"))],
                 lambda s: finished_calls(s) >= 1, store_raw_events=store)
    with session_factory() as session:
        assert session.query(CallEvent).count() == 0
        assert session.scalar(select(Call)).outcome == "answered"


def test_shipped_manager_config_matches_what_the_listener_needs():
    """The [general] snippet lists exactly the shared channelvars; the user has the classes we read."""
    from astertrack.routing.dialplan_vars import CHANNELVARS

    conf = REPO / "asterisk-conf"
    snippet = [line.split(";")[0].strip() for line in (conf / "manager_general.conf.snippet").read_text().splitlines()]
    settings = dict(line.split("=", 1) for line in snippet if "=" in line)
    settings = {k.strip(): v.strip() for k, v in settings.items()}
    assert settings["timestampevents"] == "yes"
    assert settings["channelvars"].split(",") == list(CHANNELVARS)
    user = (conf / "manager_astertrack.conf").read_text()
    assert "read = system,call,agent,user" in user and "write = reporting" in user
    assert "permit = 127.0.0.1/255.255.255.255" in user
