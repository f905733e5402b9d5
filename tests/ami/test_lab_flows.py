"""The flows recorded on the lab on 2026-12-06, replayed whole over TCP into the real listener.

Recordings and ground truth: tests/fixtures/asterisk/lab-2026-12-06 (README.md there).  Expected
values come from what each flow's script did, on both channel drivers.
"""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest
from sqlalchemy import select

from astertrack.db.models import Call
from tests.ami.fake_ami import capture_body
from tests.ami.harness import NODE, Script, finished_calls, run_listener
from tests.conftest import RECORDED_ASTERISK

LAB = RECORDED_ASTERISK / "lab-2026-12-06"


def replay(db_url: str, flow: str) -> None:
    run_listener(db_url, [Script(stream=capture_body(LAB / f"{flow}.ami.txt"))], lambda s: finished_calls(s) >= 1,
                 cdr_file="")


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_queue_timeout_is_the_company_not_answering_not_the_caller_leaving(session_factory, db_url, driver):
    """Queue(sales,,,,8) with every member ringing out: app_queue sends QueueCallerAbandon on its
    own timeout too, but nobody asked to hang up before it and QUEUESTATUS=TIMEOUT follows."""
    replay(db_url, f"{driver}_queue_timeout")
    with session_factory() as session:
        (call,) = session.scalars(select(Call)).all()
        assert (call.outcome, call.missed_reason, call.answered_by) == ("missed", "queue_timeout", None)
        assert call.wait_seconds == pytest.approx(8, abs=1)  # the time in the queue
        assert call.hangup_side == "pbx"


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_agi_wrote_its_row_then_the_fallback_recorded_nothing(session_factory, db_url, driver):
    """The AGI stored a recording name, then the call went to the dialplan fallback, which dials
    without MixMonitor: the record has no recording, whatever name the AGI had stored."""
    flow = f"{driver}_agi_down_fallback_not_recorded"
    linkedid = json.loads((LAB / f"{flow}.call.json").read_text())["linkedid"]
    with session_factory() as session:
        session.add(Call(call_uid="agi-then-fallback", node=NODE, linkedid=linkedid, uniqueid=linkedid,
                         state="ringing", started_at=dt.datetime.now(dt.UTC),
                         recording_path="2026/12/06/agi-then-fallback.wav"))
        session.commit()
    replay(db_url, flow)
    with session_factory() as session:
        (call,) = session.scalars(select(Call)).all()
        assert (call.call_uid, call.outcome) == ("agi-then-fallback", "answered")
        assert (call.recording_path, call.recording_state) == (None, None)


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
@pytest.mark.parametrize("flow", ["listener_sigterm_during_talk", "listener_down_whole_call"])
def test_the_same_calls_followed_without_a_gap_match_their_cdr(session_factory, db_url, driver, flow):
    """Control: the live path alone gives the CDR's figures when it sees every event."""
    replay(db_url, f"{driver}_{flow}")
    with (LAB / f"{driver}_{flow}.cdr.csv").open(newline="") as f:
        (row,) = list(csv.reader(f))
    start, answer, end = float(row[8]), float(row[9]), float(row[10])
    with session_factory() as session:
        (call,) = session.scalars(select(Call)).all()
        assert (call.outcome, call.closed_by) == ("answered", "events")
        assert call.wait_seconds == pytest.approx(answer - start, abs=0.1)
        assert call.talk_seconds == pytest.approx(end - answer, abs=0.1)
        assert call.recording_path and call.recording_path.endswith(".wav")  # MixMonitor did start here
