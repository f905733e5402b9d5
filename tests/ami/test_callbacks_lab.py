"""Callbacks recorded on the lab's real Asterisk (both drivers), replayed over TCP into the real listener.

Recordings and ground truth: tests/fixtures/asterisk/lab-2026-12-06 (README.md, "Callbacks").  The
rows the callback worker had written before its Originate (call id, ``ChannelId`` = linkedid,
channel, attribution) are put back first, as the worker writes them; no request exists in the replay
(nothing is dialled): the recorded events alone must finish the calls as the live run did.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from astertrack.db.models import Call
from tests.ami.fake_ami import capture_body
from tests.ami.harness import NODE, Script, run_listener
from tests.conftest import RECORDED_ASTERISK

LAB = RECORDED_ASTERISK / "lab-2026-12-06"


def _placed(session, recorded: dict) -> None:
    session.add(Call(call_uid=recorded["call_uid"], node=NODE, linkedid=recorded["linkedid"],
                     uniqueid=recorded["uniqueid"], state="ringing", started_at=dt.datetime.now(dt.UTC),
                     caller_number=recorded["caller_number"], lead_channel=recorded["lead_channel"],
                     utm_campaign=recorded["utm_campaign"], routed_by="callback",
                     recording_path=recorded["recording_path"].rsplit("/monitor/", 1)[1]))


def replay(session_factory, db_url: str, flow: str) -> dict:
    truth = json.loads((LAB / f"{flow}.call.json").read_text())
    with session_factory() as session:
        if truth["missed_call"]:
            missed = truth["missed_call"]
            session.add(Call(call_uid=missed["call_uid"], node=NODE, linkedid=missed["linkedid"],
                             uniqueid=missed["uniqueid"], state="ringing", started_at=dt.datetime.now(dt.UTC)))
        _placed(session, truth["call"])
        session.commit()
    wanted = 2 if truth["missed_call"] else 1

    def finished(session) -> bool:
        return len(session.scalars(select(Call).where(Call.state == "finished")).all()) >= wanted

    run_listener(db_url, [Script(stream=capture_body(LAB / f"{flow}.ami.txt"))], finished, cdr_file="")
    return truth


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_callback_request_manager_then_visitor_bridged(session_factory, db_url, driver):
    """101 rang 3 s and answered, the visitor (world's 105) rang 2 s, answered, hung up after 5 s."""
    truth = replay(session_factory, db_url, f"{driver}_callback_request")
    tech = "PJSIP" if driver == "pjsip" else "SIP"
    with session_factory() as session:
        (call,) = session.scalars(select(Call)).all()
        assert call.call_uid == truth["call"]["call_uid"]
        assert (call.outcome, call.missed_reason, call.answered_by) == ("answered", None, f"{tech}/101")
        assert (call.lead_channel, call.utm_campaign, call.hangup_side) == ("callback", "lab-callback", "caller")
        assert call.wait_seconds == pytest.approx(5, abs=0.5)
        assert call.talk_seconds == pytest.approx(5, abs=0.5)
        # the file MixMonitor wrote (MIXMONITOR_FILENAME), named by our template from the call id
        assert call.recording_path == truth["call"]["recording_path"] and call.recording_state == "kept"
        assert (call.wait_seconds, call.talk_seconds) == pytest.approx(
            (truth["call"]["wait_seconds"], truth["call"]["talk_seconds"]), abs=0.01)  # what the live run stored


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_missed_call_then_its_callback_by_the_same_manager(session_factory, db_url, driver):
    truth = replay(session_factory, db_url, f"{driver}_missed_call_callback")
    tech = "PJSIP" if driver == "pjsip" else "SIP"
    with session_factory() as session:
        missed = session.scalar(select(Call).where(Call.call_uid == truth["missed_call"]["call_uid"]))
        callback = session.scalar(select(Call).where(Call.call_uid == truth["call"]["call_uid"]))
        assert (missed.outcome, missed.missed_reason) == ("missed", "caller_hangup")
        assert (callback.outcome, callback.answered_by, callback.lead_channel) == \
            ("answered", f"{tech}/102", "missed_call_callback")
        assert callback.wait_seconds == pytest.approx(5, abs=0.5)
        assert callback.talk_seconds == pytest.approx(5, abs=0.5)
        assert callback.hangup_side == "caller"
        assert callback.recording_state == "kept"
