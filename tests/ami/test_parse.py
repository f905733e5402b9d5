"""The AMI byte-stream parser: order, truncation, garbage, folding, units."""

from __future__ import annotations

import random

import pytest

from astertrack.callflow.ami_parse import AmiStreamParser, parse_block, parse_chanvariables, parse_stream
from tests.ami.fake_ami import capture_body
from tests.conftest import RECORDED_ASTERISK

CAPTURE = RECORDED_ASTERISK / "ami" / "pjsip_g_queue_answered.ami.txt"


def event(name: str, **headers: str) -> bytes:
    lines = [f"Event: {name}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_banner_is_consumed_and_remembered():
    parser = AmiStreamParser()
    out = parser.feed(b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\n")
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    assert out == [{"Response": "Success", "ActionID": "1"}]


def test_any_split_of_a_recorded_stream_gives_the_same_messages_in_the_same_order():
    data = CAPTURE.read_bytes()
    whole = AmiStreamParser(keep_events=None).feed(data)
    rng = random.Random(7)
    for _ in range(5):
        parser = AmiStreamParser(keep_events=None)
        pieces, pos = [], 0
        while pos < len(data):
            step = rng.choice([1, 2, 3, 7, 64, 1000, 5000])
            pieces.extend(parser.feed(data[pos:pos + step]))
            pos += step
        assert pieces == whole
    assert sum(1 for m in whole if "Event" in m) == 162  # the documented event count for this capture
    assert len(whole) == 164  # plus the login response and the Goodbye


def test_truncated_message_waits_for_its_end_and_is_dropped_on_reset():
    parser = AmiStreamParser()
    assert parser.feed(b"Event: Hangup\r\nUniqueid: 1.1\r\nCau") == []
    assert parser.feed(b"se: 16\r\n\r\n") == [{"Event": "Hangup", "Uniqueid": "1.1", "Cause": "16"}]
    parser.feed(b"Event: Hangup\r\nUniqueid: 1.2\r\n")
    assert parser.reset() > 0
    assert parser.feed(event("Hangup", Uniqueid="1.3")) == [{"Event": "Hangup", "Uniqueid": "1.3"}]


def test_garbage_bytes_are_skipped_and_the_stream_goes_on():
    parser = AmiStreamParser()
    data = (event("Newchannel", Uniqueid="1") + b"\x00\xff\xfe garbage without colon\r\n\r\n" + b"\r\n\r\n"
            + b"no header here either\r\n\r\n" + event("Hangup", Uniqueid="1", Cause="16"))
    out = parser.feed(data)
    assert [m["Event"] for m in out] == ["Newchannel", "Hangup"]
    assert parser.garbage == 2


def test_invalid_utf8_and_nul_do_not_break_parsing():
    out = AmiStreamParser().feed(b"Event: Newchannel\r\nUniqueid: 1\r\nCallerIDName: \xff\xfeIvan\x00\r\n\r\n")
    assert out[0]["CallerIDName"] == "\ufffd\ufffdIvan"


def test_bare_newlines_are_tolerated():
    out = AmiStreamParser().feed(b"Event: Hangup\nUniqueid: 1\nCause: 16\n\nEvent: Hangup\nUniqueid: 2\n\n")
    assert [m["Uniqueid"] for m in out] == ["1", "2"]


def test_oversized_message_without_end_is_dropped_not_buffered_forever():
    parser = AmiStreamParser(max_message_bytes=1000)
    parser.feed(b"Event: Newchannel\r\nX: " + b"a" * 5000)
    assert parser.garbage == 1
    assert parser.feed(event("Hangup", Uniqueid="9")) == [{"Event": "Hangup", "Uniqueid": "9"}]


@pytest.mark.parametrize("headers, expected", [
    (["CT_CALL_ID=ct-1"], {"CT_CALL_ID": "ct-1"}),
    (["CT_CALL_ID=ct-1", "CT_SOURCE=google=ads", "CT_MANAGER="], {"CT_CALL_ID": "ct-1", "CT_SOURCE": "google=ads",
                                                                   "CT_MANAGER": ""}),
])
def test_one_or_several_chanvariable_headers_fold_into_a_dict(headers, expected):
    block = "Event: Newstate\r\nUniqueid: 1\r\n" + "".join(f"ChanVariable: {h}\r\n" for h in headers)
    assert parse_block(block)["ChanVariable"] == expected
    assert parse_chanvariables(headers[0] if len(headers) == 1 else headers) == expected


def test_dest_chanvariable_is_kept_apart_from_the_callers():
    msg = parse_block("Event: DialBegin\r\nChanVariable: CT_CALL_ID=a\r\nDestChanVariable: CT_CALL_ID=b\r\n")
    assert msg["ChanVariable"] == {"CT_CALL_ID": "a"} and msg["DestChanVariable"] == {"CT_CALL_ID": "b"}


def test_other_repeated_headers_become_a_list():
    assert parse_block("Event: X\r\nOutput: a\r\nOutput: b\r\n")["Output"] == ["a", "b"]


def test_units_are_normalised_at_the_boundary():
    ring = parse_block("Event: AgentRingNoAnswer\r\nRingTime: 15000\r\nTimestamp: 1795439737.602426\r\n")
    assert ring["RingTime"] == 15.0 and ring["Timestamp"] == pytest.approx(1795439737.602426)
    connect = parse_block("Event: AgentConnect\r\nRingTime: 3\r\nHoldTime: 3\r\n")
    assert (connect["RingTime"], connect["HoldTime"]) == (3.0, 3.0)
    complete = parse_block("Event: AgentComplete\r\nHoldTime: 3\r\nTalkTime: 5\r\n")
    assert complete["TalkTime"] == 5.0
    assert "Timestamp" not in parse_block("Event: X\r\nTimestamp: soon\r\n")


def test_unwanted_events_are_dropped_before_parsing_and_wanted_varsets_kept():
    data = (event("VarSet", Uniqueid="1", Variable="SIPDOMAIN", Value="x")
            + event("VarSet", Uniqueid="1", Variable="CT_CALL_ID", Value="ct-1")
            + event("VarSet", Uniqueid="1", Variable="MIXMONITOR_FILENAME", Value="/r.wav")
            + event("Newexten", Uniqueid="1") + event("RTCPSent", Uniqueid="1")
            + event("SomethingNew", Uniqueid="1") + event("CoreShowChannel", ActionID="r1", Uniqueid="2"))
    parser = AmiStreamParser()
    out = parser.feed(data)
    assert [(m["Event"], m.get("Variable")) for m in out] == [
        ("VarSet", "CT_CALL_ID"), ("VarSet", "MIXMONITOR_FILENAME"), ("CoreShowChannel", None)]
    assert parser.dropped == 4


def test_ten_thousand_events_in_one_read_come_out_complete_and_in_order():
    data = b"".join(event("UserEvent", UserEvent="Seq", Seq=str(n), Uniqueid=f"u{n % 7}") for n in range(10_000))
    out = AmiStreamParser().feed(data)
    assert [int(m["Seq"]) for m in out] == list(range(10_000))


def test_whole_recorded_stream_helper_keeps_the_tail():
    body = capture_body(CAPTURE)
    messages = parse_stream(body.rstrip(b"\r\n"))
    assert messages[-1]["Response"] == "Goodbye"
