"""The pure call state machine on flows the recordings do not cover (event shapes as Asterisk 20 sends them)."""

from __future__ import annotations

import pytest

from astertrack.callflow.state_machine import (
    GONE_EVENT,
    OP_DEVICE,
    OP_EVENT,
    OP_FINISH,
    OP_LIVE,
    OP_MERGE,
    CallStateMachine,
    endpoint_of,
)


class Flow:
    """A tiny event builder: channels by name, a clock, every event with Uniqueid/Linkedid."""

    def __init__(self, machine: CallStateMachine | None = None):
        self.machine = machine or CallStateMachine()
        self.t = 1000.0
        self.ids: dict[str, tuple[str, str]] = {}
        self.ops: list[tuple] = []

    def at(self, seconds: float) -> Flow:
        self.t = 1000.0 + seconds
        return self

    def send(self, name: str, channel: str | None = None, **headers) -> Flow:
        msg = {"Event": name, "Timestamp": self.t}
        if channel is not None:
            uid, linkedid = self.ids[channel]
            msg.update(Channel=channel, Uniqueid=uid, Linkedid=headers.pop("Linkedid", linkedid))
        msg.update(headers)
        self.machine.feed(msg)
        self.ops.extend(self.machine.drain())
        return self

    def new(self, channel: str, uid: str, linkedid: str, state: str = "Down", **headers) -> Flow:
        self.ids[channel] = (uid, linkedid)
        return self.send("Newchannel", channel, ChannelStateDesc=state, **headers)

    def dial(self, src: str, dest: str, status: str | None = None) -> Flow:
        name = "DialEnd" if status else "DialBegin"
        extra = {"DialStatus": status} if status else {}
        return self.send(name, src, DestChannel=dest, DestUniqueid=self.ids[dest][0], **extra)

    def bridge(self, channel: str, bridge: str, tech: str = "simple_bridge", leave: bool = False, **headers) -> Flow:
        return self.send("BridgeLeave" if leave else "BridgeEnter", channel, BridgeUniqueid=bridge,
                         BridgeTechnology=tech, **headers)

    def hangup(self, channel: str, cause: str = "16", request: bool = False) -> Flow:
        if request:
            self.send("HangupRequest", channel, Cause=cause)
        return self.send("Hangup", channel, Cause=cause)

    def finished(self) -> list[dict]:
        return [op[2] for op in self.ops if op[0] == OP_FINISH]


TRUNK = "PJSIP/trunk-00000001"


def inbound(flow: Flow, uid: str = "1.1") -> Flow:
    return flow.new(TRUNK, uid, uid, state="Ring", Context="from-trunk", Exten="74950000101",
                    CallerIDNum="79161234567")


def test_holding_bridge_is_not_an_answer():
    flow = inbound(Flow())
    flow.send("Newstate", TRUNK, ChannelStateDesc="Up")  # Answer() for an IVR or parking
    flow.new("PJSIP/101-00000002", "1.2", "1.1").dial(TRUNK, "PJSIP/101-00000002")
    flow.send("Newstate", "PJSIP/101-00000002", ChannelStateDesc="Up")
    flow.at(2).bridge(TRUNK, "hold-1", tech="holding_bridge").bridge("PJSIP/101-00000002", "hold-1",
                                                                      tech="holding_bridge")
    flow.at(5).hangup(TRUNK, request=True).hangup("PJSIP/101-00000002")
    (record,) = flow.finished()
    assert record["outcome"] == "missed" and record["answered_by"] is None


def test_local_channel_optimisation_reveals_the_real_phone_without_a_transfer():
    flow = inbound(Flow())
    flow.new("Local/101@agents-00000001;1", "1.2", "1.1").new("Local/101@agents-00000001;2", "1.3", "1.1",
                                                              state="Ring")
    flow.dial(TRUNK, "Local/101@agents-00000001;1")
    flow.new("PJSIP/101-00000004", "1.4", "1.1").dial("Local/101@agents-00000001;2", "PJSIP/101-00000004")
    flow.at(3).send("Newstate", "PJSIP/101-00000004", ChannelStateDesc="Up")
    flow.bridge("Local/101@agents-00000001;2", "b-local").bridge("PJSIP/101-00000004", "b-local")
    flow.send("Newstate", "Local/101@agents-00000001;1", ChannelStateDesc="Up")
    flow.send("Newstate", "Local/101@agents-00000001;2", ChannelStateDesc="Up")
    flow.dial(TRUNK, "Local/101@agents-00000001;1", "ANSWER")
    flow.bridge("Local/101@agents-00000001;1", "b-main").bridge(TRUNK, "b-main")
    live = [op[2] for op in flow.ops if op[0] == OP_LIVE]
    assert live[-1]["answered_by"] == "PJSIP/101" and live[-1]["state"] == "up"
    # optimisation: the phone is swapped into the caller's bridge, the Local pair leaves
    flow.at(3.1).send("LocalOptimizationBegin", None, LocalOneUniqueid="1.2", LocalTwoUniqueid="1.3")
    flow.bridge("PJSIP/101-00000004", "b-local", leave=True)
    flow.bridge("PJSIP/101-00000004", "b-main", SwapUniqueid="1.2")
    flow.bridge("Local/101@agents-00000001;1", "b-main", leave=True)
    flow.hangup("Local/101@agents-00000001;1").hangup("Local/101@agents-00000001;2")
    flow.at(8).hangup(TRUNK, request=True)
    flow.bridge("PJSIP/101-00000004", "b-main", leave=True).hangup("PJSIP/101-00000004")
    (record,) = flow.finished()
    assert record["answered_by"] == "PJSIP/101" and not record["transferred"]
    assert record["wait_seconds"] == pytest.approx(3.0) and record["talk_seconds"] == pytest.approx(5.0)
    assert record["hangup_side"] == "caller" and record["dial_attempts"] == 1


def test_attended_transfer_merges_the_consultation_call_into_one_call():
    flow = inbound(Flow(), uid="5.1")
    flow.new("PJSIP/101-00000002", "5.2", "5.1").dial(TRUNK, "PJSIP/101-00000002")
    flow.at(2).send("Newstate", "PJSIP/101-00000002", ChannelStateDesc="Up")
    flow.bridge("PJSIP/101-00000002", "b1").bridge(TRUNK, "b1")
    # 101 puts the caller on hold and calls 102 from its phone: a call of its own (Ring: it comes in)
    flow.at(4).new("PJSIP/101-00000003", "6.1", "6.1", state="Ring", Context="internal", Exten="102")
    flow.new("PJSIP/102-00000004", "6.2", "6.1").dial("PJSIP/101-00000003", "PJSIP/102-00000004")
    flow.at(6).send("Newstate", "PJSIP/102-00000004", ChannelStateDesc="Up")
    flow.bridge("PJSIP/102-00000004", "b2").bridge("PJSIP/101-00000003", "b2")
    # transfer: 102 is moved into the caller's bridge and re-stamped with the older linkedid
    flow.at(8).bridge("PJSIP/102-00000004", "b2", leave=True)
    flow.send("AttendedTransfer", None, OrigTransfererUniqueid="5.2", SecondTransfererUniqueid="6.1",
              Result="Success")
    flow.bridge("PJSIP/101-00000002", "b1", leave=True).hangup("PJSIP/101-00000002")
    flow.bridge("PJSIP/101-00000003", "b2", leave=True).hangup("PJSIP/101-00000003")
    flow.bridge("PJSIP/102-00000004", "b1", Linkedid="5.1")
    flow.at(12).hangup(TRUNK, request=True)
    flow.bridge("PJSIP/102-00000004", "b1", leave=True).hangup("PJSIP/102-00000004")
    records = flow.finished()
    assert len(records) == 1
    (record,) = records
    assert record["key"] == "5.1" and set(record["linkedids"]) == {"5.1", "6.1"}
    assert record["answered_by"] == "PJSIP/101" and record["transferred"]
    assert record["transferred_to"] == "PJSIP/102"
    assert record["talk_seconds"] == pytest.approx(10.0)
    assert (OP_MERGE, "6.1", "5.1") in flow.ops
    assert not flow.machine.channels and not flow.machine.groups and not flow.machine.bridges


def test_facts_from_chanvariable_and_a_relative_recording_name():
    flow = Flow(CallStateMachine(recordings_dir="/srv/rec", recording_format="WAV"))
    inbound(flow)
    flow.send("Newstate", TRUNK, ChannelStateDesc="Ring",
              ChanVariable={"CT_CALL_ID": "9f0c", "CT_RECORDING": "2026/11/23/9f0c", "CT_SOURCE": "yandex"})
    flow.send("MixMonitorStart", TRUNK)
    flow.at(1).hangup(TRUNK, request=True)
    (record,) = flow.finished()
    assert record["call_uid"] == "9f0c" and record["source"] == "yandex"
    assert record["recording_path"] == "/srv/rec/2026/11/23/9f0c.WAV" and record["recording_state"] == "empty"
    assert record["outcome"] == "missed" and record["missed_reason"] == "caller_hangup"


def test_fallback_without_mixmonitor_records_nothing_whatever_the_agi_announced():
    """The dialplan's fallback dials without MixMonitor: CT_RECORDING names a file never made."""
    flow = Flow(CallStateMachine(recordings_dir="/srv/rec"))
    inbound(flow)
    flow.send("Newstate", TRUNK, ChannelStateDesc="Ring",
              ChanVariable={"CT_CALL_ID": "9f0d", "CT_RECORDING": "2026/11/23/9f0d"})
    flow.at(1).hangup(TRUNK, request=True)
    (record,) = flow.finished()
    assert record["recording_path"] is None and record["recording_state"] is None
    assert record["recording_started"] is False


def test_queue_timeout_without_agent():
    flow = inbound(Flow())
    flow.send("QueueCallerJoin", TRUNK, Queue="support", Position="1")
    flow.new("PJSIP/104-00000002", "1.2", "1.1").dial(TRUNK, "PJSIP/104-00000002")
    flow.at(5).dial(TRUNK, "PJSIP/104-00000002", "NOANSWER").dial(TRUNK, "PJSIP/104-00000002", "CANCEL")
    flow.hangup("PJSIP/104-00000002", cause="0")
    flow.send("QueueCallerLeave", TRUNK, Queue="support")
    flow.at(5.1).hangup(TRUNK)
    (record,) = flow.finished()
    assert (record["outcome"], record["missed_reason"], record["queue"]) == ("missed", "queue_timeout", "support")
    assert record["hangup_side"] == "pbx"


@pytest.mark.parametrize("statuses, outcome, reason", [
    (["CHANUNAVAIL"], "missed", "failed"),
    (["BUSY", "CHANUNAVAIL"], "busy", "all_busy"),
    (["BUSY", "NOANSWER"], "missed", "no_answer"),
    (["CONGESTION"], "missed", "failed"),
])
def test_unanswered_outcome_follows_every_leg(statuses, outcome, reason):
    flow = inbound(Flow())
    for n, status in enumerate(statuses):
        phone = f"PJSIP/10{n}-0000000{n}"
        flow.new(phone, f"1.{n + 2}", "1.1").dial(TRUNK, phone).dial(TRUNK, phone, status).hangup(phone)
    flow.at(1).hangup(TRUNK)
    (record,) = flow.finished()
    assert (record["outcome"], record["missed_reason"]) == (outcome, reason)


def test_opaque_uniqueids_are_never_ordered_or_parsed():
    flow = Flow()
    flow.new(TRUNK, "pbx2-1795438306.100", "pbx2-1795438306.100", state="Ring")
    flow.new("PJSIP/101-00000002", "pbx2-1795438306.99", "pbx2-1795438306.100").dial(TRUNK, "PJSIP/101-00000002")
    flow.at(1).send("Newstate", "PJSIP/101-00000002", ChannelStateDesc="Up")
    flow.bridge("PJSIP/101-00000002", "b").bridge(TRUNK, "b")
    flow.at(2).hangup(TRUNK, request=True).hangup("PJSIP/101-00000002")
    (record,) = flow.finished()
    assert record["key"] == "pbx2-1795438306.100" and record["uniqueid"] == "pbx2-1795438306.100"
    assert record["answered_by"] == "PJSIP/101"


def test_unknown_events_and_ends_of_unknown_channels_are_ignored():
    machine = CallStateMachine()
    machine.feed({"Event": "BrandNewEvent2030", "Uniqueid": "x"})
    machine.feed({"Event": "Hangup", "Uniqueid": "never-seen", "Linkedid": "never-seen", "Cause": "16"})
    machine.feed({"Event": "DialEnd", "DestUniqueid": "nobody", "DialStatus": "ANSWER"})
    assert machine.drain() == [] and not machine.groups


def test_resync_adopts_unknown_channels_and_closes_gone_ones():
    flow = inbound(Flow())
    flow.new("PJSIP/102-00000002", "1.2", "1.1").dial(TRUNK, "PJSIP/102-00000002")
    machine = flow.machine
    adopted = {"Event": "CoreShowChannel", "ActionID": "r", "Channel": "PJSIP/trunk-00000009", "Uniqueid": "7.1",
               "Linkedid": "7.1", "ChannelStateDesc": "Up", "Context": "from-trunk", "Exten": "74950000200",
               "CallerIDNum": "79031112233", "BridgeId": "", "Duration": "00:01:05"}
    synthetic = machine.resync([adopted], now=5000.0)
    assert [m["Event"] for m in synthetic] == [GONE_EVENT, GONE_EVENT]
    records = [op[2] for op in machine.drain() if op[0] == OP_FINISH]
    assert len(records) == 1 and records[0]["closed_by"] == "sweeper" and records[0]["key"] == "1.1"
    assert "7.1" in machine.channels and machine.channels["7.1"].created == pytest.approx(5000.0 - 65)


def test_listener_back_while_a_phone_rings_shows_it_ringing_again():
    """After a restart the pop-up and the live board need the phone that rings for the call."""
    machine = CallStateMachine()
    trunk = {"Event": "CoreShowChannel", "Channel": "PJSIP/trunk-00000009", "Uniqueid": "7.1", "Linkedid": "7.1",
             "ChannelStateDesc": "Ring", "Context": "astertrack-route", "Exten": "s", "CallerIDNum": "79031112233",
             "BridgeId": "", "Duration": "00:00:04"}
    phone = {"Event": "CoreShowChannel", "Channel": "PJSIP/101-0000000a", "Uniqueid": "7.2", "Linkedid": "7.1",
             "ChannelStateDesc": "Ringing", "Context": "agents", "Exten": "s", "CallerIDNum": "101",
             "BridgeId": "", "Duration": "00:00:02"}
    machine.resync([trunk, phone], now=5000.0)
    live = [op[2] for op in machine.drain() if op[0] == OP_LIVE]
    assert live and live[-1]["state"] == "ringing" and live[-1]["ringing_endpoint"] == "PJSIP/101"
    assert live[-1]["adopted"] and live[-1]["started_at"] == pytest.approx(5000.0 - 4)


def test_resync_spares_a_channel_born_while_the_list_was_built():
    machine = CallStateMachine()
    machine.feed({"Event": "Newchannel", "Uniqueid": "9.1", "Linkedid": "9.1", "Channel": TRUNK,
                  "ChannelStateDesc": "Ring", "Timestamp": 4999.5})
    assert machine.resync([], now=5000.0) == []
    assert "9.1" in machine.channels


def test_resync_spares_channels_with_events_since_the_list_was_asked_whatever_the_clocks():
    """Asterisk's clock (event timestamps) can be hours off ours, or the events a replay: a
    channel we heard from after sending CoreShowChannels is live, listed or not."""
    machine = CallStateMachine()
    machine.feed({"Event": "Newchannel", "Uniqueid": "9.1", "Linkedid": "9.1", "Channel": TRUNK,
                  "ChannelStateDesc": "Ring", "Timestamp": 1000.0})  # 4000 s "before" our clock
    assert machine.resync([], now=5000.0, seen_since_asked={"9.1"}) == []
    assert "9.1" in machine.channels and not machine.channels["9.1"].gone
    # without that knowledge it would have been closed as gone
    assert [m["Event"] for m in machine.resync([], now=5000.0)] == [GONE_EVENT]


def test_sweep_closes_calls_silent_for_too_long_at_their_last_known_time():
    flow = inbound(Flow())
    flow.machine.sweep(now=1000.0 + 10, orphan_timeout=3600)
    assert not [op for op in flow.machine.drain() if op[0] == OP_FINISH]
    flow.machine.sweep(now=1000.0 + 4000, orphan_timeout=3600)
    (record,) = [op[2] for op in flow.machine.drain() if op[0] == OP_FINISH]
    assert record["closed_by"] == "sweeper" and record["total_seconds"] == pytest.approx(0.0)


def test_device_states_from_device_and_extension_events():
    machine = CallStateMachine()
    machine.feed({"Event": "DeviceStateChange", "Device": "PJSIP/101", "State": "RINGING", "Timestamp": 1.0})
    machine.feed({"Event": "ExtensionStatus", "Exten": "102", "Hint": "PJSIP/102", "StatusText": "InUse",
                  "Timestamp": 2.0})
    machine.feed({"Event": "ExtensionStatus", "Exten": "103", "Hint": "PJSIP/103&Custom:dnd",
                  "StatusText": "Idle"})
    assert machine.drain() == [(OP_DEVICE, "PJSIP/101", "RINGING", 1.0), (OP_DEVICE, "PJSIP/102", "INUSE", 2.0)]


def test_internal_originated_calls_are_not_tracked_and_leave_nothing_behind():
    flow = Flow()
    flow.new("PJSIP/102-00000021", "z-1", "z-1", Context="internal", Exten="s")
    flow.send("DialBegin", None, DestChannel="PJSIP/102-00000021", DestUniqueid="z-1")
    flow.send("Newstate", "PJSIP/102-00000021", ChannelStateDesc="Ringing")
    flow.at(3).hangup("PJSIP/102-00000021", cause="19")
    assert [op for op in flow.ops if op[0] in (OP_FINISH, OP_LIVE, OP_EVENT)] == []
    assert not flow.machine.groups and not flow.machine.channels


def test_inbound_contexts_limit_what_is_tracked_without_the_agi():
    flow = Flow(CallStateMachine(inbound_contexts=["from-trunk"]))
    flow.new("PJSIP/101-00000001", "3.1", "3.1", state="Ring", Context="internal", Exten="900")
    flow.at(1).hangup("PJSIP/101-00000001", request=True)
    assert flow.finished() == []
    inbound(flow, uid="4.1").at(2).hangup(TRUNK, request=True)
    assert len(flow.finished()) == 1


def test_live_updates_expose_ringing_endpoints_then_the_answerer():
    flow = inbound(Flow())
    for n, phone in enumerate(["PJSIP/101-00000002", "PJSIP/102-00000003"]):
        flow.new(phone, f"1.{n + 2}", "1.1").dial(TRUNK, phone)
    live = [op[2] for op in flow.ops if op[0] == OP_LIVE]
    assert live[-1]["state"] == "ringing" and live[-1]["ringing_endpoint"] == "PJSIP/101,PJSIP/102"
    flow.at(3).send("Newstate", "PJSIP/102-00000003", ChannelStateDesc="Up")
    flow.dial(TRUNK, "PJSIP/102-00000003", "ANSWER").dial(TRUNK, "PJSIP/101-00000002", "CANCEL")
    flow.bridge("PJSIP/102-00000003", "b").bridge(TRUNK, "b")
    live = [op[2] for op in flow.ops if op[0] == OP_LIVE]
    assert (live[-1]["state"], live[-1]["ringing_endpoint"], live[-1]["answered_by"]) == ("up", None, "PJSIP/102")


@pytest.mark.parametrize("name, endpoint", [
    ("PJSIP/101-0000001a", "PJSIP/101"), ("SIP/trunk-00000000", "SIP/trunk"),
    ("Local/101@agents-00000003;1", "Local/101@agents"), ("DAHDI/i1/74951234567-1f", "DAHDI/i1/74951234567"),
    ("IAX2/peer", "IAX2/peer"), ("PJSIP/my-phone-00000002", "PJSIP/my-phone"),
])
def test_endpoint_of_channel_names(name, endpoint):
    assert endpoint_of(name) == endpoint


def test_hundreds_of_interleaved_recorded_calls_do_not_cross_talk():
    """Every recorded flow 8 times under fresh ids, all running at once: each copy still gets the
    documented outcome, manager and timings (grouping never mixes two calls up)."""
    from collections import Counter

    from ami_listener.replay import multiply
    from astertrack.callflow.ami_parse import AmiStreamParser
    from tests.ami.ground_truth import ALL, endpoint
    from tests.conftest import RECORDED_ASTERISK

    names = sorted(ALL)
    captures = [(RECORDED_ASTERISK / "ami" / f"{name}.ami.txt").read_bytes() for name in names]
    copies = len(names) * 8
    stream = multiply(captures, copies, spacing=0.002)
    machine = CallStateMachine()
    parser = AmiStreamParser()
    peak = 0
    records = []
    for pos in range(0, len(stream), 8192):
        for msg in parser.feed(stream[pos:pos + 8192]):
            machine.feed(msg)
        records += [op[2] for op in machine.drain() if op[0] == OP_FINISH]
        peak = max(peak, machine.calls_in_progress)
    assert peak > copies // 2  # they really overlapped
    assert len(records) == copies and not machine.groups and not machine.channels and not machine.bridges
    got = Counter()
    for record in records:
        got[(record["outcome"], record["missed_reason"], record["answered_by"], round(record["wait_seconds"]),
             round(record["talk_seconds"]))] += 1
    expected = Counter()
    for name in names:
        e = ALL[name]
        expected[(e.outcome, e.reason, endpoint(name, e.answered_ext) if e.answered_ext else None, round(e.wait),
                  round(e.talk))] += 8
    assert got == expected
