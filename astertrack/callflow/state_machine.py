"""The call state machine: ordered AMI events in, live updates and finished call records out.

Pure: no sockets, no database, no clock (times come from the events' ``Timestamp`` header or
are passed in).  The listener, the rebuild command and the benchmark all drive this one class.

Model (after wazo-call-logd: raw events kept, outcomes rebuilt from them):

* Channels are keyed by uniqueid (opaque strings, never parsed or ordered).  Channels are
  grouped into calls by linkedid; when a channel shows up with another group's linkedid (Asterisk
  re-stamps linkedids in bridges: transfers, pickups) the two groups merge.  A group's key is
  its first linkedid, which is by definition the uniqueid of its oldest channel: the *origin*.
* The caller side is the origin and, when the origin is a Local ``;1``, its ``;2`` partner.
  Every other channel is a callee.  Only dials made by the caller side are call legs.
* Answered means: a callee that really picked up (not a Local half that is still ringing)
  shares a bridge that is not a holding bridge with the caller side.  ``DialEnd ANSWER`` and
  ``Newstate Up`` alone are not answers (queues and IVRs answer the caller too).
* Facts the AGI announces (``AstertrackRoute`` UserEvent, ``CT_*`` variables as VarSet or
  ChanVariable) are taken as given: call id, source, routed manager, recording name.
* A call is finished only when every channel of its group is gone.  ``resync`` and ``sweep``
  turn channels Asterisk no longer has (or that went silent too long) into synthetic
  ``AstertrackChannelGone`` events, so the same path closes them and a rebuild replays it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from astertrack.callflow.outcomes import (
    HangupSide,
    MissedReason,
    Outcome,
    classify_callback,
    classify_unanswered,
    leg_status,
)
from astertrack.routing import dialplan_vars as dv

GONE_EVENT = "AstertrackChannelGone"  # synthetic: a channel closed by resync or the sweeper

# Op kinds emitted in ``CallStateMachine.out``
OP_EVENT = "event"  # (OP_EVENT, key, msg): a raw event that belongs to a tracked call
OP_LIVE = "live"  # (OP_LIVE, key, snapshot): call in progress changed (state, ringing, answered)
OP_FINISH = "finish"  # (OP_FINISH, key, record): the call is over
OP_MERGE = "merge"  # (OP_MERGE, absorbed_key, survivor_key)
OP_DEVICE = "device"  # (OP_DEVICE, device, state, timestamp)
OP_OUTBOUND = "outbound"  # (OP_OUTBOUND, key, record): a phone's own call out, not an astertrack call

_EXTENSION_STATES = {
    "Idle": "NOT_INUSE", "InUse": "INUSE", "Busy": "BUSY", "Unavailable": "UNAVAILABLE",
    "Ringing": "RINGING", "InUse&Ringing": "RINGINUSE", "Hold": "ONHOLD", "InUse&Hold": "ONHOLD",
}
_PENDING_LIMIT = 500


def endpoint_of(channel_name: str) -> str:
    """``PJSIP/101-0000001a`` -> ``PJSIP/101``; ``Local/101@agents-00000003;1`` -> ``Local/101@agents``."""
    name = channel_name
    if name.startswith("Local/"):
        name = name.rsplit(";", 1)[0]
    base, sep, suffix = name.rpartition("-")
    if sep and base and suffix and all(c in "0123456789abcdefABCDEF" for c in suffix):
        return base
    return name


def _local_half(channel_name: str) -> tuple[str | None, int]:
    if channel_name.startswith("Local/") and channel_name[-2:] in (";1", ";2"):
        return channel_name[:-2], int(channel_name[-1])
    return None, 0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True, eq=False)
class Channel:
    uniqueid: str
    name: str
    group: CallGroup
    created: float
    state: str = ""
    context: str = ""
    exten: str = ""
    caller_num: str = ""
    caller_name: str = ""
    inbound: bool = False  # seen in state Ring: a call coming *to* the PBX on this channel
    is_local: bool = False
    local_base: str | None = None
    local_half: int = 0
    bridge: str | None = None
    gone: bool = False
    gone_by_sweeper: bool = False
    hangup_at: float | None = None
    cause: int | None = None
    cause_txt: str | None = None


@dataclass(slots=True)
class Bridge:
    technology: str = ""
    members: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class CallGroup:
    key: str
    linkedids: set[str]
    started: float
    channels: dict[str, Channel] = field(default_factory=dict)
    alive: int = 0
    partner: str | None = None  # uniqueid of the origin's Local partner
    tracked: bool = False
    progressed: bool = False  # dialled, queued or bridged: the AGI (if any) is done
    last_ts: float = 0.0
    facts: dict[str, str] = field(default_factory=dict)
    call_uid: str | None = None
    legs: dict[str, list[str]] = field(default_factory=dict)  # callee uniqueid -> DialEnd statuses
    ringing: dict[str, str] = field(default_factory=dict)  # callee uniqueid -> endpoint
    attempts: int = 0
    queue: str | None = None
    in_queue: bool = False
    queue_left_without_agent: bool = False
    queue_abandoned: bool = False
    agent_connected: bool = False
    caller_gave_up_while_ringing: bool = False
    caller_hung_up: bool = False
    hangup_side: str | None = None
    answered_at: float | None = None
    answerer: str | None = None  # callee uniqueid that answered first
    answered_by: str | None = None
    last_answered_by: str | None = None
    transferred: bool = False
    connected_since: float | None = None
    talk: float = 0.0
    bridges: set[str] = field(default_factory=set)
    pending: list[dict] = field(default_factory=list)
    live_sent: tuple | None = None
    adopted: bool = False  # first seen in a resync: started while we were not listening
    recording_started: bool = False  # a MixMonitor of this call started (MixMonitorStart)
    # A callback astertrack placed with AMI Originate: the origin is the manager's phone, the
    # visitor is the callee its dialplan dials (OriginateResponse for the origin, or CT_CALLBACK_ID)
    originated: bool = False
    originate_reason: str | None = None
    dial_string: str | None = None  # the caller side's first DialBegin DialString (a phone's own call out)

    def is_caller_side(self, uniqueid: str) -> bool:
        return uniqueid == self.key or uniqueid == self.partner


class CallStateMachine:
    """Feed events in arrival order with ``feed(msg)``; read and clear ``out`` for the results."""

    def __init__(self, *, recordings_dir: str = "/var/spool/asterisk/monitor", recording_format: str = "wav",
                 inbound_contexts: Iterable[str] = ()):
        self.recordings_dir = recordings_dir
        self.recording_format = recording_format
        self.inbound_contexts = frozenset(c for c in inbound_contexts if c)
        self.channels: dict[str, Channel] = {}
        self.groups: dict[str, CallGroup] = {}  # every linkedid of a live group -> group
        self.bridges: dict[str, Bridge] = {}
        self.local_pairs: dict[str, dict[int, str]] = {}
        self.out: list[tuple] = []
        self.events_seen = 0
        self._handlers = {
            "Newchannel": self._on_newchannel, "Newstate": self._on_newstate, "Rename": self._on_rename,
            "HangupRequest": self._on_hangup_request, "Hangup": self._on_hangup, GONE_EVENT: self._on_hangup,
            "DialBegin": self._on_dial_begin, "DialEnd": self._on_dial_end,
            "BridgeEnter": self._on_bridge_enter, "BridgeLeave": self._on_bridge_leave,
            "LocalBridge": self._on_local_bridge,
            "QueueCallerJoin": self._on_queue_join, "QueueCallerLeave": self._on_queue_leave,
            "QueueCallerAbandon": self._on_queue_abandon, "AgentConnect": self._on_agent_connect,
            "AgentComplete": self._on_agent_complete,
            "BlindTransfer": self._on_transfer, "AttendedTransfer": self._on_transfer,
            "UserEvent": self._on_user_event, "VarSet": self._on_varset,
            "DeviceStateChange": self._on_device_state, "ExtensionStatus": self._on_extension_status,
            "CoreShowChannel": self._on_show_channel, "NewCallerid": self._on_new_callerid,
            "MixMonitorStart": self._on_mixmonitor_start, "OriginateResponse": self._on_originate_response, "MixMonitorStop": None, "AgentCalled": None,
            "AgentRingNoAnswer": None, "AgentDump": None, "SoftHangupRequest": None,
            "LocalOptimizationBegin": None, "LocalOptimizationEnd": None,
        }

    # ------------------------------------------------------------------ public API

    @property
    def calls_in_progress(self) -> int:
        return len({id(g) for g in self.groups.values() if g.tracked})

    def feed(self, msg: dict, received_at: float | None = None) -> None:
        name = msg.get("Event")
        handler = self._handlers.get(name, False)
        if handler is False:
            return  # unknown or uninteresting event: ignored, never fatal
        self.events_seen += 1
        ts = msg.get("Timestamp")
        if not isinstance(ts, float):
            ts = received_at if received_at is not None else 0.0
            msg["Timestamp"] = ts
        group = self._group_for(msg, ts)
        if group is not None:
            if ts > group.last_ts:
                group.last_ts = ts
            chanvars = msg.get("ChanVariable")
            if chanvars and isinstance(chanvars, dict):
                uid = msg.get("Uniqueid")
                if isinstance(uid, str) and group.is_caller_side(uid):
                    self._learn_facts(group, chanvars)
            self._record(group, msg)
        if handler is not None:
            handler(msg, ts, group)
        if group is not None and group.key in self.groups and self.groups[group.key] is group:
            self._maybe_live(group)

    def feed_many(self, messages: Iterable[dict], received_at: float | None = None) -> None:
        for msg in messages:
            self.feed(msg, received_at)

    def drain(self) -> list[tuple]:
        out, self.out = self.out, []
        return out

    def resync(self, live_channels: list[dict], now: float, grace: float = 2.0,
               seen_since_asked: frozenset[str] | set[str] = frozenset()) -> list[dict]:
        """Reconcile with ``CoreShowChannel`` answers after a (re)login.

        Channels we track that Asterisk no longer has get a synthetic ``AstertrackChannelGone``
        (their call then closes, marked as closed by the sweeper); channels we never saw are
        adopted.  ``seen_since_asked``: uniqueids with events after the CoreShowChannels action
        was sent - live in this session whatever the list says (it was built before them), so
        never judged by Asterisk's clock against ours.  Returns the synthetic events fed, so
        the caller can log or store them.
        """
        alive = {m.get("Uniqueid") for m in live_channels}
        synthetic: list[dict] = []
        for msg in live_channels:
            if msg.get("Uniqueid") not in self.channels:
                msg.setdefault("Timestamp", now)
                self.feed(msg)
        for uid, ch in list(self.channels.items()):
            if uid in alive or ch.gone or uid in seen_since_asked or ch.created >= now - grace:
                continue  # a channel born while Asterisk built the list may be missing from it
            # The end happened unseen, some time after the last event we have: take that time
            # rather than now, so an unseen end never inflates talk time.
            gone = {"Event": GONE_EVENT, "Uniqueid": uid, "Channel": ch.name, "Linkedid": ch.group.key,
                    "Timestamp": ch.group.last_ts, "Reason": "not in CoreShowChannels"}
            synthetic.append(gone)
            self.feed(gone)
        return synthetic

    def sweep(self, now: float, orphan_timeout: float) -> list[dict]:
        """Close calls that have been silent longer than ``orphan_timeout`` seconds."""
        synthetic: list[dict] = []
        seen: set[int] = set()
        for group in list(self.groups.values()):
            if id(group) in seen or now - group.last_ts < orphan_timeout:
                continue
            seen.add(id(group))
            for uid, ch in list(group.channels.items()):
                if not ch.gone:
                    gone = {"Event": GONE_EVENT, "Uniqueid": uid, "Channel": ch.name, "Linkedid": group.key,
                            "Timestamp": group.last_ts, "Reason": f"silent for {orphan_timeout:.0f} s"}
                    synthetic.append(gone)
                    self.feed(gone)
        return synthetic

    # ------------------------------------------------------------------ grouping

    def _group_for(self, msg: dict, ts: float) -> CallGroup | None:
        uid = msg.get("Uniqueid")
        if not isinstance(uid, str) or not uid:
            return self._group_without_channel(msg, ts)
        if msg.get("Event") == "OriginateResponse":  # never opens a call: "<null>" when no channel was made
            ch = self.channels.get(uid)
            return ch.group if ch is not None else None
        linkedid = msg.get("Linkedid")
        if not isinstance(linkedid, str) or not linkedid:
            linkedid = None
        ch = self.channels.get(uid)
        if ch is None:
            if msg["Event"] in ("Hangup", "HangupRequest", GONE_EVENT, "SoftHangupRequest"):
                return None  # an end we never saw the start of (or already closed): nothing to do
            group = self.groups.get(linkedid or uid)
            if group is None:
                group = CallGroup(key=linkedid or uid, linkedids={linkedid or uid}, started=ts, last_ts=ts,
                                  adopted=msg["Event"] == "CoreShowChannel")
                self.groups[group.key] = group
            ch = self._add_channel(group, uid, msg.get("Channel") or "", ts)
        group = ch.group
        if linkedid and linkedid not in group.linkedids:
            other = self.groups.get(linkedid)
            if other is None:
                group.linkedids.add(linkedid)
                self.groups[linkedid] = group
            elif other is not group:
                group = self._merge(group, other)
        return group

    def _group_without_channel(self, msg: dict, ts: float) -> CallGroup | None:
        name = msg["Event"]
        if name == "DialBegin" or name == "DialEnd":
            ch = self.channels.get(msg.get("DestUniqueid", ""))
            return ch.group if ch else None
        if name == "LocalBridge":
            ch = self.channels.get(msg.get("LocalOneUniqueid", "")) or self.channels.get(msg.get("LocalTwoUniqueid", ""))
            return ch.group if ch else None
        if name in ("BlindTransfer", "AttendedTransfer"):
            for key in ("TransfereeUniqueid", "TransfererUniqueid", "OrigTransfererUniqueid",
                        "SecondTransfererUniqueid"):
                ch = self.channels.get(msg.get(key, ""))
                if ch:
                    return ch.group
        return None

    def _add_channel(self, group: CallGroup, uid: str, name: str, ts: float) -> Channel:
        ch = Channel(uniqueid=uid, name=name, group=group, created=ts)
        base, half = _local_half(name)
        if base:
            ch.is_local, ch.local_base, ch.local_half = True, base, half
            pair = self.local_pairs.setdefault(base, {})
            pair[half] = uid
            other = pair.get(3 - half)
            if other is not None and group.key in (uid, other):
                group.partner = other if other != group.key else uid
        self.channels[uid] = ch
        group.channels[uid] = ch
        group.alive += 1
        if ts < group.started:
            group.started = ts
        return ch

    def _merge(self, a: CallGroup, b: CallGroup) -> CallGroup:
        """Merge two groups that turned out to be one call; the older one survives."""
        survivor, absorbed = (a, b) if a.started <= b.started else (b, a)
        for uid, ch in absorbed.channels.items():
            ch.group = survivor
            survivor.channels[uid] = ch
        survivor.alive += absorbed.alive
        for linkedid in absorbed.linkedids:
            self.groups[linkedid] = survivor
        survivor.linkedids |= absorbed.linkedids
        survivor.bridges |= absorbed.bridges
        for key, value in absorbed.facts.items():
            survivor.facts.setdefault(key, value)
        survivor.call_uid = survivor.call_uid or absorbed.call_uid
        survivor.legs.update(absorbed.legs)
        survivor.ringing.update(absorbed.ringing)
        survivor.attempts += absorbed.attempts
        survivor.progressed = survivor.progressed or absorbed.progressed
        survivor.recording_started = survivor.recording_started or absorbed.recording_started
        survivor.originated = survivor.originated or absorbed.originated
        survivor.originate_reason = survivor.originate_reason or absorbed.originate_reason
        survivor.dial_string = survivor.dial_string or absorbed.dial_string
        survivor.last_ts = max(survivor.last_ts, absorbed.last_ts)
        if absorbed.tracked and not survivor.tracked:
            survivor.tracked = True
            self._flush_pending(survivor)
        if absorbed.tracked:
            self.out.append((OP_MERGE, absorbed.key, survivor.key))
        elif absorbed.pending and survivor.tracked:
            for msg in absorbed.pending:
                self.out.append((OP_EVENT, survivor.key, msg))
        elif absorbed.pending:
            survivor.pending.extend(absorbed.pending)
        absorbed.pending = []
        return survivor

    # ------------------------------------------------------------------ bookkeeping helpers

    def _record(self, group: CallGroup, msg: dict) -> None:
        if group.tracked:
            self.out.append((OP_EVENT, group.key, msg))
        elif len(group.pending) < _PENDING_LIMIT:
            group.pending.append(msg)

    def _flush_pending(self, group: CallGroup) -> None:
        for msg in group.pending:
            self.out.append((OP_EVENT, group.key, msg))
        group.pending = []

    def _track(self, group: CallGroup) -> None:
        if not group.tracked:
            group.tracked = True
            self._flush_pending(group)

    def _learn_facts(self, group: CallGroup, variables: dict[str, str]) -> None:
        for name, value in variables.items():
            if name.startswith("CT_") or name in ("MIXMONITOR_FILENAME", "QUEUESTATUS"):
                if value:
                    group.facts[name] = value
                elif name in group.facts and name in (dv.DIAL, dv.QUEUE):
                    group.facts[name] = value
        if variables.get(dv.CALLBACK_ID):
            group.originated = True
        uid = variables.get(dv.CALL_ID)
        if uid and not group.facts.get("userevent_call_id"):
            group.call_uid = uid
            self._track(group)

    def _maybe_live(self, group: CallGroup) -> None:
        if not group.tracked or not (group.call_uid or group.progressed):
            return
        state = "up" if group.connected_since is not None or group.answered_at is not None else "ringing"
        ringing = ",".join(sorted(set(group.ringing.values())))[:100] or None
        snapshot = (state, ringing, group.answered_by, group.call_uid, group.answered_at)
        if snapshot != group.live_sent:
            group.live_sent = snapshot
            self.out.append((OP_LIVE, group.key, self._live_record(group, state, ringing)))

    def _live_record(self, group: CallGroup, state: str, ringing: str | None) -> dict:
        record = self._identity(group)
        answered_by = self._callback_manager(group) if group.originated and group.answered_by else group.answered_by
        record.update(state=state, ringing_endpoint=ringing, answered_by=answered_by,
                      answered_at=group.answered_at)
        return record

    def _identity(self, group: CallGroup) -> dict:
        caller = self._caller_channel(group)
        origin = group.channels.get(group.key) or caller
        return {
            "key": group.key, "linkedids": sorted(group.linkedids), "call_uid": group.call_uid,
            "uniqueid": caller.uniqueid if caller else group.key,
            "channel": caller.name if caller else None,
            "did": caller.exten if caller else None,
            "caller_number": (origin.caller_num if origin else "") or (caller.caller_num if caller else ""),
            "caller_name": (origin.caller_name if origin else "") or (caller.caller_name if caller else ""),
            "started_at": group.started, "source": group.facts.get("source") or group.facts.get(dv.SOURCE),
            "routed_manager": group.facts.get("manager") or group.facts.get(dv.MANAGER),
            "routed_by": group.facts.get("routed_by") or group.facts.get(dv.ROUTED_BY),
            "queue": group.queue, "adopted": group.adopted,
        }

    def _caller_channel(self, group: CallGroup) -> Channel | None:
        """The caller-side channel that came in to the PBX (the trunk, or a Local ``;2``)."""
        best = None
        for uid in (group.key, group.partner):
            ch = group.channels.get(uid) if uid else None
            if ch is None:
                continue
            if ch.inbound:
                return ch
            best = best or ch
        return best

    # ------------------------------------------------------------------ channel lifecycle

    def _on_newchannel(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is None:
            return
        ch.name = msg.get("Channel") or ch.name
        ch.created = min(ch.created, ts)
        ch.context = msg.get("Context", "") or ch.context
        ch.exten = msg.get("Exten", "") or ch.exten
        ch.caller_num = _clean_callerid(msg.get("CallerIDNum")) or ch.caller_num
        ch.caller_name = _clean_callerid(msg.get("CallerIDName")) or ch.caller_name
        self._set_state(ch, msg.get("ChannelStateDesc", ""))

    def _on_show_channel(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        """A resync answer for a channel we never saw: adopt it, with its bridge if it has one."""
        self._on_newchannel(msg, ts, group)
        ch = self.channels.get(msg.get("Uniqueid", ""))
        duration = _duration_seconds(msg.get("Duration"))
        if ch is not None and duration is not None:
            ch.created = min(ch.created, ts - duration)
            ch.group.started = min(ch.group.started, ch.created)
        bridge_id = msg.get("BridgeId")
        if ch is not None and group is not None and isinstance(bridge_id, str) and bridge_id:
            self._on_bridge_enter({"Uniqueid": ch.uniqueid, "BridgeUniqueid": bridge_id}, ts, group)
        elif (ch is not None and group is not None and ch.state == "Ringing" and not ch.is_local
              and not group.is_caller_side(ch.uniqueid)):
            # a phone of this call ringing when we came back: the pop-up shows it again
            group.ringing[ch.uniqueid] = endpoint_of(ch.name)
        if group is not None and group.adopted:
            # Its start was missed (listener restart or gap): follow it to the end so the row the
            # AGI wrote gets finished; the writer only completes an existing row for it.
            group.progressed = True
            self._track(group)

    def _on_new_callerid(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is not None:
            ch.caller_num = _clean_callerid(msg.get("CallerIDNum")) or ch.caller_num
            ch.caller_name = _clean_callerid(msg.get("CallerIDName")) or ch.caller_name

    def _on_newstate(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is not None:
            self._set_state(ch, msg.get("ChannelStateDesc", ""))

    def _set_state(self, ch: Channel, state: str) -> None:
        if not state:
            return
        ch.state = state
        if state == "Ring" and not ch.inbound:
            ch.inbound = True
            group = ch.group
            if group.is_caller_side(ch.uniqueid) and (not self.inbound_contexts or ch.context in self.inbound_contexts):
                self._track(group)

    def _on_rename(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is not None and msg.get("Newname"):
            ch.name = msg["Newname"]

    def _on_hangup_request(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is None or group is None or group.hangup_side is not None:
            return
        if group.is_caller_side(ch.uniqueid):
            if ch.state == "Busy" or msg.get("Cause") == "17":
                group.hangup_side = HangupSide.PBX  # our own Busy() answered with a 486
                return
            group.hangup_side = HangupSide.CALLER
            group.caller_hung_up = True
            if group.answered_at is None and (group.ringing or group.in_queue):
                group.caller_gave_up_while_ringing = True
        elif self._connected_callee(group, ch):
            group.hangup_side = HangupSide.MANAGER

    def _on_hangup(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is None or ch.gone or group is None:
            return
        ch.gone = True
        ch.hangup_at = ts
        if msg["Event"] == GONE_EVENT:
            ch.gone_by_sweeper = True
        else:
            ch.cause = _int(msg.get("Cause"))
            ch.cause_txt = msg.get("Cause-txt") or None
        if group.is_caller_side(ch.uniqueid) and group.answered_at is None and group.hangup_side is None \
                and msg["Event"] == "Hangup" and (group.ringing or group.in_queue) and ch.inbound:
            # the caller's CANCEL without a HangupRequest (seen on chan_sip)
            group.hangup_side = HangupSide.CALLER
            group.caller_hung_up = True
            group.caller_gave_up_while_ringing = True
        if ch.bridge is not None:
            self._leave_bridge(ch, ts)
        group.ringing.pop(ch.uniqueid, None)
        group.alive -= 1
        self.channels.pop(ch.uniqueid, None)
        if ch.local_base:
            pair = self.local_pairs.get(ch.local_base)
            if pair is not None:
                pair.pop(ch.local_half, None)
                if not pair:
                    del self.local_pairs[ch.local_base]
        if group.alive <= 0:
            self._finish(group, ts)

    # ------------------------------------------------------------------ dialling and queues

    def _on_dial_begin(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is None:
            return
        src = msg.get("Uniqueid")
        dest = msg.get("DestUniqueid")
        if not dest or not isinstance(src, str) or not group.is_caller_side(src):
            return  # an Originate's own dial, or a callee dialling further (Local ;2 -> phone)
        dest_ch = self.channels.get(dest)
        if dest_ch is None:
            dest_ch = self._add_channel(group, dest, msg.get("DestChannel", ""), ts)
        group.legs.setdefault(dest, [])
        if group.dial_string is None and isinstance(msg.get("DialString"), str):
            group.dial_string = msg["DialString"]
        group.ringing[dest] = endpoint_of(dest_ch.name or msg.get("DestChannel", ""))
        group.attempts += 1
        group.progressed = True
        if not group.in_queue:
            group.queue_left_without_agent = False

    def _on_dial_end(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is None:
            return
        src = msg.get("Uniqueid")
        dest = msg.get("DestUniqueid")
        if not dest or not isinstance(src, str) or not group.is_caller_side(src):
            return
        group.legs.setdefault(dest, []).append(msg.get("DialStatus", ""))
        group.ringing.pop(dest, None)

    def _on_queue_join(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is not None:
            group.queue = msg.get("Queue") or group.queue
            group.in_queue = True
            group.progressed = True
            group.queue_left_without_agent = False

    def _on_queue_leave(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is not None and group.in_queue:
            group.in_queue = False
            group.queue_left_without_agent = not group.agent_connected and not group.queue_abandoned

    def _on_queue_abandon(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        """app_queue sends QueueCallerAbandon when the caller hangs up *and* when its own timeout
        ends the wait (then QUEUESTATUS=TIMEOUT follows and the dialplan goes on).  Only the first
        is the caller giving up: the caller side asked to hang up before the event."""
        if group is not None and group.caller_hung_up:
            group.queue_abandoned = True

    def _on_agent_connect(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is not None:
            group.agent_connected = True
            group.queue_left_without_agent = False

    def _on_agent_complete(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is not None and msg.get("Reason") == "transfer":
            group.transferred = True

    def _on_transfer(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is not None and msg.get("Result", "Success") == "Success":
            group.transferred = True

    # ------------------------------------------------------------------ bridges

    def _on_bridge_enter(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        bridge_id = msg.get("BridgeUniqueid")
        if ch is None or group is None or not bridge_id:
            return
        if ch.bridge is not None and ch.bridge != bridge_id:
            self._leave_bridge(ch, ts)
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            bridge = self.bridges[bridge_id] = Bridge()
        bridge.technology = msg.get("BridgeTechnology", "") or bridge.technology
        bridge.members.add(ch.uniqueid)
        ch.bridge = bridge_id
        group.bridges.add(bridge_id)
        group.progressed = True
        self._update_connection(group, ts)

    def _on_bridge_leave(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        ch = self.channels.get(msg.get("Uniqueid", ""))
        if ch is not None and ch.bridge is not None:
            self._leave_bridge(ch, ts)

    def _leave_bridge(self, ch: Channel, ts: float) -> None:
        bridge = self.bridges.get(ch.bridge or "")
        ch.bridge = None
        if bridge is not None:
            bridge.members.discard(ch.uniqueid)
            if not bridge.members:
                for bid, b in list(self.bridges.items()):
                    if b is bridge:
                        del self.bridges[bid]
                        ch.group.bridges.discard(bid)
        self._update_connection(ch.group, ts)

    def _on_local_bridge(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        one, two = msg.get("LocalOneUniqueid"), msg.get("LocalTwoUniqueid")
        if group is not None and one and two:
            if group.key == one:
                group.partner = two
            elif group.key == two:
                group.partner = one

    def _real_callee(self, group: CallGroup, uid: str) -> Channel | None:
        """A callee that really picked up, or None.  Local halves count once they are Up."""
        if group.is_caller_side(uid):
            return None
        ch = self.channels.get(uid)
        if ch is None or (ch.is_local and ch.state != "Up"):
            return None
        return ch

    def _connected_callees(self, group: CallGroup) -> list[Channel]:
        """Callees sharing a real (non-holding) bridge with the caller side right now."""
        found: list[Channel] = []
        for bridge_id in group.bridges:
            bridge = self.bridges.get(bridge_id)
            if bridge is None or bridge.technology == "holding_bridge" or len(bridge.members) < 2:
                continue
            if not any(group.is_caller_side(uid) for uid in bridge.members):
                continue
            for uid in bridge.members:
                callee = self._real_callee(group, uid)
                if callee is not None:
                    found.append(callee)
        return found

    def _connected_callee(self, group: CallGroup, ch: Channel) -> bool:
        for callee in self._connected_callees(group):
            if callee is ch or (ch.local_base and ch.local_base == callee.local_base):
                return True
        return False

    def _endpoint_behind(self, callee: Channel) -> str:
        """Follow Local ``;1`` -> ``;2`` -> its bridge peer to reach the real phone."""
        if callee.is_local and callee.local_base:
            other = self.local_pairs.get(callee.local_base, {}).get(3 - callee.local_half)
            partner = self.channels.get(other or "")
            if partner is not None and partner.bridge:
                for uid in self.bridges.get(partner.bridge, Bridge()).members:
                    peer = self.channels.get(uid)
                    if peer is not None and peer is not partner and not peer.is_local:
                        return endpoint_of(peer.name)
        return endpoint_of(callee.name)

    def _update_connection(self, group: CallGroup, ts: float) -> None:
        callees = self._connected_callees(group)
        if not callees:
            if group.connected_since is not None:
                group.talk += max(0.0, ts - group.connected_since)
                group.connected_since = None
            return
        if group.connected_since is None:
            group.connected_since = ts
        endpoints = {self._endpoint_behind(c): c for c in callees}
        if group.last_answered_by in endpoints:
            return
        # prefer a real phone over a Local half when both are in the bridge (optimisation swap)
        endpoint = sorted(endpoints, key=lambda e: e.startswith("Local/"))[0]
        if group.answered_at is None:
            group.answered_at = ts
            group.answerer = endpoints[endpoint].uniqueid
            group.answered_by = group.last_answered_by = endpoint
            group.ringing.clear()
            return
        if endpoint.startswith("Local/"):
            return  # a phone moving between a Local pair's bridges (optimisation) is not a new party
        previous = group.last_answered_by or ""
        if previous.startswith("Local/") and not endpoint.startswith("Local/") and group.answered_by == previous:
            group.answered_by = endpoint  # Local optimisation revealed the real phone
        else:
            group.transferred = True
        group.last_answered_by = endpoint

    # ------------------------------------------------------------------ AGI facts, live state

    def _on_user_event(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is None or msg.get("UserEvent") != dv.ROUTE_USEREVENT:
            return
        for header in ("call_id", "source", "manager", "campaign", "recording", "routed_by"):
            value = msg.get(header)
            if isinstance(value, str) and value:
                group.facts[header] = value
        if msg.get("call_id"):
            group.call_uid = msg["call_id"]
            group.facts["userevent_call_id"] = "1"
        self._track(group)

    def _on_originate_response(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        action_id = msg.get("ActionID")
        if (group is not None and msg.get("Uniqueid") == group.key and isinstance(action_id, str)
                and action_id.startswith(dv.CALLBACK_ACTION_PREFIX)):  # ours, not any Originate
            group.originated = True
            reason = msg.get("Reason")
            group.originate_reason = reason if isinstance(reason, str) and reason else group.originate_reason

    def _on_mixmonitor_start(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        if group is not None:
            group.recording_started = True

    def _on_varset(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        uid = msg.get("Uniqueid")
        if group is None or not isinstance(uid, str) or not group.is_caller_side(uid):
            return
        name = msg.get("Variable")
        if isinstance(name, str):
            self._learn_facts(group, {name: msg.get("Value", "") if isinstance(msg.get("Value"), str) else ""})

    def _on_device_state(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        device, state = msg.get("Device"), msg.get("State")
        if isinstance(device, str) and device and isinstance(state, str):
            self.out.append((OP_DEVICE, device, state, ts))

    def _on_extension_status(self, msg: dict, ts: float, group: CallGroup | None) -> None:
        hint, text = msg.get("Hint"), msg.get("StatusText")
        state = _EXTENSION_STATES.get(text or "")
        if isinstance(hint, str) and hint and state and "&" not in hint and "/" in hint:
            self.out.append((OP_DEVICE, hint, state, ts))

    # ------------------------------------------------------------------ the end of a call

    def _finish(self, group: CallGroup, ts: float) -> None:
        for linkedid in group.linkedids:
            if self.groups.get(linkedid) is group:
                del self.groups[linkedid]
        for bridge_id in group.bridges:
            bridge = self.bridges.get(bridge_id)
            if bridge is not None and not (bridge.members - set(group.channels)):
                del self.bridges[bridge_id]
        if group.connected_since is not None:
            group.talk += max(0.0, ts - group.connected_since)
            group.connected_since = None
        outbound = self.outbound_record(group)
        if outbound is not None:
            self.out.append((OP_OUTBOUND, group.key, outbound))
        if not group.tracked:
            return
        self.out.append((OP_FINISH, group.key, self.record(group)))

    def outbound_record(self, group: CallGroup) -> dict | None:
        """A call a phone placed itself and dialled out from (a manager calling a customer from the
        desk phone), or None.  Not one astertrack knows: no call id from the AGI, not an originated
        callback, not adopted mid-way.  The writer keeps it only when the phone is a manager's."""
        origin = group.channels.get(group.key)
        if (origin is None or origin.is_local or not origin.inbound or not group.legs or group.call_uid
                or group.facts.get(dv.CALL_ID) or group.originated or group.adopted):
            return None
        statuses = [s for leg in group.legs.values() for s in leg if s]
        disposition = "answered" if group.answered_at is not None else (statuses[-1].lower() if statuses else "failed")
        callees = sorted({endpoint_of(ch.name) for uid, ch in group.channels.items()
                          if not group.is_caller_side(uid) and not ch.is_local and ch.name})
        return {
            "key": group.key, "linkedids": sorted(group.linkedids), "endpoint": endpoint_of(origin.name),
            "exten": origin.exten or None, "dial_string": group.dial_string, "callee_endpoints": callees,
            "started_at": group.started, "answered_at": group.answered_at,
            "ended_at": max((ch.hangup_at or ch.created) for ch in group.channels.values()),
            "disposition": disposition[:20],
        }

    def record(self, group: CallGroup) -> dict:
        """The finished-call record: everything the writer stores about one call."""
        caller = self._caller_channel(group)
        ended = max((ch.hangup_at or ch.created) for ch in group.channels.values())
        record = self._identity(group)
        if group.answered_at is not None:
            outcome, reason = Outcome.ANSWERED, None
            wait = group.answered_at - group.started
        elif group.originated:
            origin = group.channels.get(group.key)
            outcome, reason = classify_callback(
                manager_answered=origin is not None and (origin.state == "Up" or origin.bridge is not None
                                                         or bool(group.legs)),
                originate_reason=group.originate_reason, manager_cause=origin.cause if origin else None,
                visitor_statuses=[leg_status(s) for s in group.legs.values()], manager_hung_up=group.caller_hung_up)
            wait = ended - group.started
        else:
            outcome, reason = classify_unanswered(
                queue_abandoned=group.queue_abandoned,
                caller_gave_up_while_ringing=group.caller_gave_up_while_ringing,
                queue_left_without_agent=group.queue_left_without_agent,
                queue_status=group.facts.get("QUEUESTATUS"),
                leg_statuses=[leg_status(s) for s in group.legs.values()],
                caller_hung_up=group.caller_hung_up)
            caller_end = caller.hangup_at if caller is not None and caller.hangup_at else ended
            wait = caller_end - group.started
        recording = self._recording_path(group)
        swept = any(ch.gone_by_sweeper for ch in group.channels.values())
        record.update(
            state="finished", outcome=str(outcome), missed_reason=str(reason) if reason else None,
            answered_at=group.answered_at, ended_at=ended,
            wait_seconds=round(max(0.0, wait), 3), talk_seconds=round(group.talk, 3),
            total_seconds=round(max(0.0, ended - group.started), 3),
            answered_by=self._callback_manager(group) if group.originated and group.answered_at else group.answered_by,
            transferred=group.transferred,
            transferred_to=group.last_answered_by if group.transferred and group.last_answered_by != group.answered_by
            else None,
            hangup_cause=caller.cause if caller else None,
            hangup_cause_text=caller.cause_txt if caller else None,
            hangup_side=str(self._hangup_side(group)),
            recording_path=recording,
            # False: no MixMonitor started (nothing was recorded); None: we joined late, cannot tell
            recording_started=group.recording_started or bool(recording) or (None if group.adopted else False),
            recording_state=(("kept" if outcome == Outcome.ANSWERED else "empty") if recording else None),
            closed_by="sweeper" if swept else "events",
            dial_attempts=group.attempts, ringing_endpoint=None,
        )
        return record

    @staticmethod
    def _hangup_side(group: CallGroup) -> HangupSide:
        """Who ended the call; in a callback the origin is the manager and the callee the customer."""
        side = group.hangup_side or HangupSide.PBX
        if group.originated and side in (HangupSide.CALLER, HangupSide.MANAGER):
            return HangupSide.MANAGER if side == HangupSide.CALLER else HangupSide.CALLER
        return side

    def _callback_manager(self, group: CallGroup) -> str | None:
        """A callback is answered by the manager whose phone it rang first (the origin)."""
        origin = group.channels.get(group.key)
        return endpoint_of(origin.name) if origin is not None and origin.name else group.answered_by

    def _recording_path(self, group: CallGroup) -> str | None:
        """The file a MixMonitor of this call really writes, or None when none started (the
        dialplan's fallback records nothing, whatever name the AGI announced).  A call we joined
        late may have started its MixMonitor unseen: the writer then keeps the AGI's name."""
        real = group.facts.get("MIXMONITOR_FILENAME")
        if real:
            return real
        if not group.recording_started:
            return None
        name = group.facts.get("recording") or group.facts.get(dv.RECORDING)
        if not name:
            return None
        if "." not in posixpath.basename(name):
            name = f"{name}.{self.recording_format}"
        if name.startswith("/"):
            return name
        return posixpath.join(self.recordings_dir, name)


def _duration_seconds(value: Any) -> float | None:
    """``HH:MM:SS`` (CoreShowChannel Duration) to seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        total = 0
        for part in value.split(":"):
            total = total * 60 + int(part)
        return float(total)
    except ValueError:
        return None


def _clean_callerid(value: Any) -> str:
    if not isinstance(value, str) or value in ("<unknown>", "unknown"):
        return ""
    return value


__all__ = ["CallStateMachine", "MissedReason", "Outcome", "endpoint_of", "GONE_EVENT",
           "OP_EVENT", "OP_LIVE", "OP_FINISH", "OP_MERGE", "OP_DEVICE", "OP_OUTBOUND"]
