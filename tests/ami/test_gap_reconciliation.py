"""Calls a gap in the AMI stream touched get Asterisk's own account (its CDR), not the listener's guess.

Recorded on a real Asterisk 20 (tests/fixtures/asterisk/lab-2026-12-06, both drivers): a call rings
3 s, 101 answers and they talk 10 s.  The recorded stream is played to the real listener over TCP
with a gap cut into it - a lost connection, a restart, an outage - and the call's CDR lines are
written to the CDR file when the call ends, as Asterisk's cdr_custom does.
"""

from __future__ import annotations

import csv
import datetime as dt

import pytest
from sqlalchemy import func, select

from ami_listener.rebuild import rebuild
from astertrack.callflow.state_machine import CallStateMachine
from astertrack.db.models import Call
from astertrack.ops import metrics
from tests.ami.fake_ami import alive_channels, capture_body, split_blocks
from tests.ami.harness import Script, run_listener
from tests.conftest import RECORDED_ASTERISK

LAB = RECORDED_ASTERISK / "lab-2026-12-06"


def timestamp(block: bytes) -> float | None:
    for line in block.split(b"\r\n"):
        if line.startswith(b"Timestamp: "):
            return float(line[11:])
    return None


def cut(flow: str, gap_starts: str, gap_seconds: float) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The recording's events before the gap, in it (never seen), and after it.  The gap opens
    right after the first event named ``gap_starts`` and lasts ``gap_seconds`` of recorded time."""
    blocks = split_blocks(capture_body(LAB / f"{flow}.ami.txt"))
    start = next(i for i, b in enumerate(blocks) if b.startswith(f"Event: {gap_starts}\r\n".encode())) + 1
    opened = timestamp(blocks[start - 1])
    end = next(i for i, b in enumerate(blocks) if i >= start and (timestamp(b) or 0) >= opened + gap_seconds)
    return blocks[:start], blocks[start:end], blocks[end:]


def cdr_truth(flow: str) -> dict:
    """Wait and talk straight from the recorded CDR line (one answered leg in these flows)."""
    with (LAB / f"{flow}.cdr.csv").open(newline="") as f:
        (row,) = [r for r in csv.reader(f) if r[7] == "ANSWERED"]
    start, answer, end = float(row[8]), float(row[9]), float(row[10])
    return {"wait": answer - start, "talk": end - answer, "linkedid": row[1]}


def write_cdr_when_sent(flow: str, path):
    """Asterisk writes the CDR line at the hangup: after the last event has gone out."""
    def during(listener, server):
        if server.all_sent.is_set() and not path.exists():
            path.write_bytes((LAB / f"{flow}.cdr.csv").read_bytes())
    return during


def reconciled_count(result: str) -> float:
    return metrics.REGISTRY.get_sample_value("astertrack_calls_reconciled_total", {"result": result}) or 0.0


def reconciled(session) -> bool:
    return session.scalar(select(func.count()).select_from(Call).where(Call.closed_by == "cdr")) == 1


def assert_matches_the_cdr(session_factory, flow: str, extension: str) -> Call:
    truth = cdr_truth(flow)
    with session_factory() as session:
        (call,) = session.scalars(select(Call)).all()  # one row: nothing missing, nothing doubled
        assert (call.state, call.outcome, call.closed_by, call.reconcile_state) == ("finished", "answered", "cdr", "done")
        assert call.answered_by == extension
        assert call.wait_seconds == pytest.approx(truth["wait"], abs=0.01)
        assert call.talk_seconds == pytest.approx(truth["talk"], abs=0.01)
        assert (call.wait_seconds, call.talk_seconds) == (pytest.approx(3, abs=1), pytest.approx(10, abs=1))
        return call


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_connection_lost_from_ringing_into_the_talk_is_reconciled_from_the_cdr(session_factory, db_url, tmp_path,
                                                                                 driver):
    flow = f"{driver}_listener_sigterm_during_talk"
    before, _, after = cut(flow, "DialBegin", 6.0)  # the answer and 3 s of talk happen unseen
    cdr_file = tmp_path / "astertrack.csv"
    scripts = [Script(stream=b"".join(before), close_after=True),
               Script(stream=b"".join(after), live_channels=alive_channels(b"".join(before + _)))]
    run_listener(db_url, scripts, reconciled, timeout=30, during=write_cdr_when_sent(flow, cdr_file),
                 cdr_file=str(cdr_file))
    assert_matches_the_cdr(session_factory, flow, f"{'SIP' if driver == 'sip' else 'PJSIP'}/101")


def test_without_the_cdr_the_same_gap_gives_a_wrong_record(session_factory, db_url, tmp_path):
    """Why the CDR is read at all: the live stream alone cannot know what happened in the gap."""
    flow = "sip_listener_sigterm_during_talk"
    before, gap, after = cut(flow, "DialBegin", 6.0)
    scripts = [Script(stream=b"".join(before), close_after=True),
               Script(stream=b"".join(after), live_channels=alive_channels(b"".join(before + gap)))]
    run_listener(db_url, scripts, lambda s: s.scalar(select(func.count()).select_from(Call)
                                                      .where(Call.state == "finished")) == 1, cdr_file="")
    truth = cdr_truth(flow)
    with session_factory() as session:
        (call,) = session.scalars(select(Call)).all()
        assert call.closed_by == "events" and call.reconcile_state is None
        assert abs(call.talk_seconds - truth["talk"]) > 1 or abs(call.wait_seconds - truth["wait"]) > 1


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_listener_restarted_during_the_talk_is_reconciled_from_the_cdr(session_factory, db_url, tmp_path, driver):
    """A new listener process (SIGKILL or upgrade): its state machine starts empty."""
    flow = f"{driver}_listener_sigkill_during_talk"
    before, gap, after = cut(flow, "BridgeEnter", 3.0)
    cdr_file = tmp_path / "astertrack.csv"
    run_listener(db_url, [Script(stream=b"".join(before))],
                 lambda s: s.scalar(select(func.count()).select_from(Call)) == 1, cdr_file=str(cdr_file))
    with session_factory() as session:
        assert session.scalar(select(Call.state)) in ("ringing", "up")
    run_listener(db_url, [Script(stream=b"".join(after), live_channels=alive_channels(b"".join(before + gap)))],
                 reconciled, timeout=30, during=write_cdr_when_sent(flow, cdr_file), cdr_file=str(cdr_file))
    assert_matches_the_cdr(session_factory, flow, f"{'SIP' if driver == 'sip' else 'PJSIP'}/101")


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_call_that_began_and_ended_while_the_listener_was_down_is_recorded_from_the_cdr(
        session_factory, db_url, tmp_path, driver):
    """The AGI routed it and wrote its row; the listener saw none of its events."""
    flow = f"{driver}_listener_down_whole_call"
    truth = cdr_truth(flow)
    with session_factory() as session:
        session.add(Call(call_uid="gap-1", node="pbx-test", linkedid=truth["linkedid"], uniqueid=truth["linkedid"],
                         state="ringing", started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
                         recording_path="2026/12/06/gap-1.wav"))
        session.commit()
    cdr_file = tmp_path / "astertrack.csv"
    cdr_file.write_bytes((LAB / f"{flow}.cdr.csv").read_bytes())
    before = reconciled_count("cdr")
    run_listener(db_url, [Script(stream=b"")], reconciled, timeout=30, cdr_file=str(cdr_file))
    assert reconciled_count("cdr") == before + 1
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.outcome, call.answered_by, call.closed_by) == ("answered", f"{'SIP' if driver == 'sip' else 'PJSIP'}/104", "cdr")
        assert call.wait_seconds == pytest.approx(truth["wait"], abs=0.01)
        assert call.talk_seconds == pytest.approx(truth["talk"], abs=0.01)
        assert call.recording_state == "kept"


def test_a_call_whose_cdr_never_comes_keeps_the_guess_after_the_wait(session_factory, db_url, tmp_path):
    with session_factory() as session:
        session.add(Call(call_uid="gap-2", node="pbx-test", linkedid="1796000000.1", uniqueid="1796000000.1",
                         state="ringing", started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)))
        session.commit()
    cdr_file = tmp_path / "astertrack.csv"
    cdr_file.write_text("")
    before = reconciled_count("no_cdr")
    run_listener(db_url, [Script(stream=b"")],
                 lambda s: s.scalar(select(Call.reconcile_state)) == "no_cdr", timeout=30,
                 cdr_file=str(cdr_file), cdr_wait=0.1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.state, call.closed_by) == ("finished", "sweeper")
    assert reconciled_count("no_cdr") == before + 1  # what the AstertrackCdrMissing alert watches


def test_rebuild_applies_the_stored_cdr_again_to_a_reconciled_call(session_factory, db_url, tmp_path):
    """``astertrack-ami rebuild`` must not turn a reconciled call back into the gap's guess."""
    flow = "sip_listener_sigterm_during_talk"
    before, gap, after = cut(flow, "DialBegin", 6.0)
    cdr_file = tmp_path / "astertrack.csv"
    scripts = [Script(stream=b"".join(before), close_after=True),
               Script(stream=b"".join(after), live_channels=alive_channels(b"".join(before + gap)))]
    run_listener(db_url, scripts, reconciled, timeout=30, during=write_cdr_when_sent(flow, cdr_file),
                 cdr_file=str(cdr_file))
    with session_factory() as session:
        call = session.scalar(select(Call))
        call.talk_seconds, call.outcome = 0.0, "missed"  # what replaying the gapped events alone would say
        session.commit()
    report = rebuild(session_factory, "pbx-test", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), CallStateMachine)
    assert (report.rebuilt, report.changed) == (1, 1)
    assert_matches_the_cdr(session_factory, flow, "SIP/101")
