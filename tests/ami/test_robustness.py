"""Bad bytes, odd chunking, unknown events, channelvars mode and bursts: nothing lost, order kept."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from ami_listener.connection import _Protocol
from ami_listener.replay import multiply
from astertrack.db.models import Call
from tests.ami.fake_ami import Session as Script
from tests.ami.fake_ami import capture_body, split_blocks
from tests.ami.harness import finished_calls, run_listener
from tests.conftest import RECORDED_ASTERISK

AMI_DIR = RECORDED_ASTERISK / "ami"


def test_garbage_unknown_events_and_seven_byte_reads_still_give_the_right_call(session_factory, db_url):
    blocks = split_blocks(capture_body(AMI_DIR / "pjsip_f_ringgroup_102_answers.ami.txt"))
    noisy = []
    for n, block in enumerate(blocks):
        noisy.append(block)
        if n % 10 == 3:
            noisy.append(b"\x00\xff\xfe\x80 not an AMI message at all\r\n\r\n")
        if n % 10 == 7:
            noisy.append(b"Event: FutureAsteriskEvent\r\nUniqueid: 1795439798.11\r\nWhatever: 1\r\n\r\n")
    run = run_listener(db_url, [Script(stream=b"".join(noisy), chunk_size=7)], lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert session.scalar(select(func.count()).select_from(Call)) == 1
        assert (call.outcome, call.answered_by, call.call_uid) == ("answered", "PJSIP/102", "ct-20261123-39736")
        assert call.wait_seconds == pytest.approx(3.0, abs=1) and call.talk_seconds == pytest.approx(4.0, abs=1)
    assert run.listener.machine.calls_in_progress == 0


def channelvars_stream(capture: str, variables: dict[str, str]) -> bytes:
    """The capture as a production AMI user (no ``dialplan`` class) would see it: no VarSet, our
    variables as ``ChanVariable`` headers on the caller channel's events (manager.conf channelvars)."""
    blocks = split_blocks(capture_body(AMI_DIR / f"{capture}.ami.txt"))
    trunk = re.search(rb"Uniqueid: (\S+)\r\n", next(b for b in blocks if b.startswith(b"Event: Newchannel")))[1]
    extra = b"".join(b"ChanVariable: %s=%s\r\n" % (k.encode(), v.encode()) for k, v in variables.items())
    out = []
    for block in blocks:
        if block.startswith(b"Event: VarSet"):
            continue
        if b"\r\nUniqueid: " + trunk + b"\r\n" in block:
            block = block[:-2] + extra + b"\r\n"
        out.append(block)
    return b"".join(out)


@pytest.mark.parametrize("variables", [
    {"CT_CALL_ID": "ct-20261123-39731"},
    {"CT_CALL_ID": "ct-20261123-39731", "CT_RECORDING": "ct-20261123-39731", "CT_SOURCE": "google-ads"},
], ids=["one-chanvariable", "several-chanvariables"])
def test_facts_arrive_as_chanvariable_headers_one_or_several(session_factory, db_url, variables):
    stream = channelvars_stream("pjsip_a_answered_101", variables)
    assert b"Event: VarSet" not in stream
    run_listener(db_url, [Script(stream=stream)], lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.call_uid, call.outcome, call.answered_by) == ("ct-20261123-39731", "answered", "PJSIP/101")
        expected = "/var/spool/asterisk/monitor/ct-20261123-39731.wav" if "CT_RECORDING" in variables else None
        assert call.recording_path == expected


def test_a_burst_of_ten_thousand_events_in_one_write_loses_nothing(session_factory, db_url):
    capture = (AMI_DIR / "sip_a_answered_101.ami.txt").read_bytes()
    copies = 66  # 66 x 153 events > 10,000
    stream = multiply([capture], copies, spacing=0.001)
    assert stream.count(b"\r\n\r\n") >= 10_000
    run = run_listener(db_url, [Script(stream=stream)], lambda s: finished_calls(s) >= copies, timeout=60)
    with session_factory() as session:
        rows = session.execute(select(Call.call_uid, Call.outcome, Call.answered_by, Call.talk_seconds)).all()
    assert len(rows) == copies and len({r.call_uid for r in rows}) == copies
    assert all(r.outcome == "answered" and r.answered_by == "SIP/101" for r in rows)
    assert all(r.talk_seconds == pytest.approx(5.0, abs=1) for r in rows)
    assert run.listener.machine.calls_in_progress == 0


def test_ten_thousand_events_in_one_read_reach_the_queue_as_one_ordered_batch():
    batches: list[list[dict]] = []
    protocol = _Protocol(batches.append, keep_events=None)

    class _Transport:
        def close(self):
            pass

    protocol.connection_made(_Transport())
    data = b"".join(b"Event: UserEvent\r\nUserEvent: Seq\r\nSeq: %d\r\n\r\n" % n for n in range(10_000))
    protocol.data_received(b"Asterisk Call Manager/9.0.0\r\n" + data)
    assert len(batches) == 1
    assert [int(m["Seq"]) for m in batches[0]] == list(range(10_000))


def test_recording_name_stored_by_the_agi_is_kept_when_events_name_none(session_factory, db_url):
    import datetime as dt

    with session_factory() as session:
        session.add(Call(call_uid="ct-20261123-39731", node="pbx-test", state="ringing",
                         started_at=dt.datetime.now(dt.UTC), recording_path="2026/11/23/ct-20261123-39731.wav"))
        session.commit()
    stream = channelvars_stream("pjsip_a_answered_101", {"CT_CALL_ID": "ct-20261123-39731"})
    run_listener(db_url, [Script(stream=stream)], lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.recording_path, call.recording_state) == ("2026/11/23/ct-20261123-39731.wav", "kept")


def test_periodic_sweep_closes_a_call_silent_past_the_orphan_timeout(session_factory, db_url):
    head = b"".join(split_blocks(capture_body(AMI_DIR / "sip_g_queue_answered.ami.txt"))[:60])
    swept = []

    def sweep_once(listener, server):
        if not swept and listener.machine.calls_in_progress == 1:
            swept.append(True)
            listener.sweep(now=time.time() + 10 * 24 * 3600)

    run_listener(db_url, [Script(stream=head)], lambda s: finished_calls(s) >= 1, during=sweep_once)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.state, call.closed_by) == ("finished", "sweeper")


def _ami(name: str, **headers: str) -> bytes:
    return ("\r\n".join([f"Event: {name}"] + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n\r\n").encode()


def outbound_call_by_manager_101() -> bytes:
    """A manager dials out through the trunk: the phone's channel comes in (Ring), no AGI."""
    phone = {"Channel": "PJSIP/101-00000031", "Uniqueid": "1795440000.50", "Linkedid": "1795440000.50"}
    trunk = {"Channel": "PJSIP/trunk-00000032", "Uniqueid": "1795440000.51", "Linkedid": "1795440000.50"}
    return b"".join([
        _ami("Newchannel", **phone, ChannelStateDesc="Ring", Context="internal", Exten="84951234567",
             CallerIDNum="101", Timestamp="1795440000.100000"),
        _ami("Newchannel", **trunk, ChannelStateDesc="Down", Context="internal", Exten="s",
             Timestamp="1795440000.101000"),
        _ami("DialBegin", **phone, DestChannel=trunk["Channel"], DestUniqueid=trunk["Uniqueid"],
             Timestamp="1795440000.102000"),
        _ami("Newstate", **trunk, ChannelStateDesc="Up", Timestamp="1795440004.000000"),
        _ami("DialEnd", **phone, DestChannel=trunk["Channel"], DestUniqueid=trunk["Uniqueid"], DialStatus="ANSWER",
             Timestamp="1795440004.001000"),
        _ami("BridgeEnter", **trunk, BridgeUniqueid="b-out", BridgeTechnology="simple_bridge",
             Timestamp="1795440004.002000"),
        _ami("BridgeEnter", **phone, BridgeUniqueid="b-out", BridgeTechnology="simple_bridge",
             Timestamp="1795440004.003000"),
        _ami("HangupRequest", **phone, Cause="16", Timestamp="1795440009.000000"),
        _ami("BridgeLeave", **phone, BridgeUniqueid="b-out", Timestamp="1795440009.001000"),
        _ami("Hangup", **phone, Cause="16", Timestamp="1795440009.002000"),
        _ami("BridgeLeave", **trunk, BridgeUniqueid="b-out", Timestamp="1795440009.003000"),
        _ami("Hangup", **trunk, Cause="16", Timestamp="1795440009.004000"),
    ])


@pytest.mark.parametrize("known_manager", [True, False], ids=["phone-is-a-manager", "unknown-phone"])
def test_calls_placed_by_a_managers_phone_are_not_tracked(session_factory, db_url, known_manager):
    from astertrack.db.models import Manager

    if known_manager:
        with session_factory() as session:
            session.add(Manager(name="Anna", endpoint="PJSIP/101", extension="101"))
            session.commit()
    inbound = capture_body(AMI_DIR / "pjsip_e_manager_hangs_up.ami.txt")
    run_listener(db_url, [Script(stream=outbound_call_by_manager_101() + inbound)],
                 lambda s: finished_calls(s) >= 1 and s.scalar(select(Call).where(Call.answered_by == "PJSIP/104")))
    with session_factory() as session:
        uids = sorted(c.call_uid for c in session.scalars(select(Call)))
    assert ("ct-20261123-39735" in uids) and len(uids) == (1 if known_manager else 2)


def test_a_malformed_event_is_logged_and_the_rest_of_its_read_still_applies(session_factory, db_url, caplog):
    blocks = split_blocks(capture_body(AMI_DIR / "sip_e_manager_hangs_up.ami.txt"))
    weird = (b"Event: DialBegin\r\nUniqueid: 1795438355.9\r\nLinkedid: 1795438355.9\r\n"
             b"DestUniqueid: a\r\nDestUniqueid: b\r\nTimestamp: 1795438355.5\r\n\r\n")  # a header twice
    stream = b"".join(blocks[:10]) + weird + b"".join(blocks[10:])
    run = run_listener(db_url, [Script(stream=stream)], lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.outcome, call.answered_by, call.hangup_side) == ("answered", "SIP/104", "manager")
    assert run.listener.bad_events == 1 and "could not apply AMI event" in caplog.text
