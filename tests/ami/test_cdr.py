"""Asterisk's CDR lines, recorded on a real Asterisk 20 for every lab flow, give each call's facts."""

from __future__ import annotations

import pytest

from astertrack.callflow.cdr import CdrFormatError, parse_line, reconcile
from tests.conftest import RECORDED_ASTERISK

LAB = RECORDED_ASTERISK / "lab-2026-12-06"

# What each flow's script did (tests/ops/lab_check.py FLOWS; phones answer on timers):
# outcome, missed reason, extension that answered, wait and talk in seconds
FLOWS = {
    "answered": ("answered", None, "101", 3, 5),
    "no_answer_then_next": ("answered", None, "101", 13, 4),
    "busy": ("busy", "all_busy", None, 0, 0),
    "caller_hangs_up_while_ringing": ("missed", "caller_hangup", None, 5, 0),
    "manager_hangs_up": ("answered", None, "104", 2, 4),
    "ring_group_102_answers": ("answered", None, "102", 3, 4),
    "queue_answered": ("answered", None, "101", 3, 5),
    "queue_abandoned": ("missed", "queue_abandon", None, 6, 0),
    "queue_timeout": ("missed", "queue_timeout", None, 8, 0),
    # 3 s with 101, transfer, 102 rings 2 s and talks 5 s; Asterisk bills 102 from the transfer on
    "blind_transfer": ("answered", None, "101", 3, 10),
    "listener_sigterm_during_talk": ("answered", None, "101", 3, 10),
    "listener_sigkill_during_talk": ("answered", None, "101", 3, 10),
    "listener_down_whole_call": ("answered", None, "104", 2, 6),
    "agi_down_fallback_not_recorded": ("answered", None, "101", 3, 3),
}


def read_lines(name: str):
    path = LAB / f"{name}.cdr.csv"
    return [parse_line(text) for text in path.read_text().splitlines() if text.strip()]


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_recorded_flow_gives_its_outcome_manager_wait_and_talk(driver, flow):
    outcome, reason, extension, wait, talk = FLOWS[flow]
    facts = reconcile(read_lines(f"{driver}_{flow}"))
    tech = "SIP" if driver == "sip" else "PJSIP"
    assert (facts.outcome, facts.missed_reason) == (outcome, reason)
    assert facts.answered_by == (f"{tech}/{extension}" if extension else None)
    assert facts.wait_seconds == pytest.approx(wait, abs=0.5)
    assert facts.talk_seconds == pytest.approx(talk, abs=0.5)


@pytest.mark.parametrize("driver", ["sip", "pjsip"])
def test_blind_transfer_names_the_new_party(driver):
    facts = reconcile(read_lines(f"{driver}_blind_transfer"))
    assert facts.transferred_to == ("SIP/102" if driver == "sip" else "PJSIP/102")


def test_line_order_does_not_matter():
    lines = read_lines("sip_no_answer_then_next")
    assert reconcile(lines) == reconcile(list(reversed(lines)))


def test_no_lines_no_facts():
    assert reconcile([]) is None


def test_times_keep_microseconds():
    (line,) = read_lines("sip_answered")
    assert line.start != int(line.start) and line.answer is not None and line.end > line.answer


@pytest.mark.parametrize("text, why", [
    ("", "empty line"),
    ('"Master.csv","79161234567","s"', "unknown layout"),
    ('at1,"1.0","1.0","SIP/trunk-1"', "fields"),
    ('at1,,1.0,SIP/trunk-1,SIP/101-2,Dial,"SIP/101,10",ANSWERED,1.0,2.0,3.0,ctx,1,2,3', "linkedid"),
    ('at1,1.0,1.0,SIP/trunk-1,SIP/101-2,Dial,"SIP/101,10",ANSWERED,2026-12-06 10:00:00,0,3.0,ctx,1,2,3',
     "epoch seconds"),
    ('at1,1.0,1.0,SIP/trunk-1,SIP/101-2,Dial,"SIP/101,10",ANSWERED,5.0,0,3.0,ctx,1,2,3', "not after end"),
    ('at1,1.0,1.0,"SIP/trunk-1,SIP/101-2', "fields"),
])
def test_a_line_that_is_not_ours_is_refused_with_the_reason(text, why):
    with pytest.raises(CdrFormatError, match=why):
        parse_line(text)
