"""Pure AMI byte-stream parser: bytes in, ordered header dicts out.  No sockets, no asyncio.

Why our own parser: panoramisk 1.4 decodes with ``errors='ignore'``, turns a
single ``ChanVariable`` header into a string its ``getdict`` then rejects, and parses every event
in full although a third of the stream is ``VarSet`` noise.  Here:

* messages are split on the blank line (``\\r\\n\\r\\n``, tolerating bare ``\\n\\n``) and come out in
  the order they were received, a truncated tail is kept until the next read;
* events we do not read are dropped from their first line, before any header is parsed
  (``keep_events``; ``VarSet`` only for the variables in ``keep_vars``);
* repeated headers are folded: ``ChanVariable``/``DestChanVariable`` (one or many) become a
  ``{name: value}`` dict, other repeats a list;
* ``Timestamp`` becomes a float and queue durations are normalised to seconds
  (``AgentRingNoAnswer`` RingTime is milliseconds, everything else seconds).

A block that holds no ``Key: value`` line, or has no ``Event``/``Response``, is counted in
``garbage`` and skipped; it never stops the stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Message = dict  # header name -> str | list[str] | dict[str, str] | float

CHANVAR_HEADERS = frozenset({"ChanVariable", "DestChanVariable", "TransfererChanVariable",
                             "TransfereeChanVariable", "OrigTransfererChanVariable",
                             "SecondTransfererChanVariable", "TransferTargetChanVariable"})

# Event families the call state machine and the live state read.  Everything else is dropped early.
TRACKED_EVENTS = frozenset({
    "Newchannel", "Newstate", "NewCallerid", "Hangup", "HangupRequest", "SoftHangupRequest", "Rename",
    "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave",
    "LocalBridge", "LocalOptimizationBegin", "LocalOptimizationEnd",
    "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled", "AgentConnect",
    "AgentComplete", "AgentRingNoAnswer", "AgentDump",
    "BlindTransfer", "AttendedTransfer", "UserEvent", "MixMonitorStart", "MixMonitorStop",
    "DeviceStateChange", "ExtensionStatus", "VarSet",
    "OriginateResponse",  # the result of a callback's Originate (astertrack/leads/callbacks)
    # resync answers and session events
    "CoreShowChannel", "CoreShowChannelsComplete", "FullyBooted", "Shutdown",
})

# VarSet is the chattiest event (37 % of the recorded streams); keep only what we read.
TRACKED_VARS = frozenset({"MIXMONITOR_FILENAME", "QUEUESTATUS", "DIALSTATUS", "AGISTATUS"})
TRACKED_VAR_PREFIXES = (b"CT_",)

_SECONDS_FIELDS = ("HoldTime", "TalkTime", "RingTime")


def parse_chanvariables(value: str | list[str] | None) -> dict[str, str]:
    """``NAME=value`` header(s) to a dict: accepts one string or a list (the panoramisk 1.4 trap)."""
    if value is None:
        return {}
    items = [value] if isinstance(value, str) else value
    result: dict[str, str] = {}
    for item in items:
        name, sep, val = item.partition("=")
        if sep and name:
            result[name.strip()] = val
    return result


def normalise(msg: Message) -> Message:
    """Units and types fixed at the boundary: Timestamp float, queue times in seconds."""
    ts = msg.get("Timestamp")
    if isinstance(ts, str):
        try:
            msg["Timestamp"] = float(ts)
        except ValueError:
            del msg["Timestamp"]
    name = msg.get("Event")
    if name in ("AgentConnect", "AgentComplete", "AgentRingNoAnswer", "QueueCallerAbandon"):
        scale = 0.001 if name == "AgentRingNoAnswer" else 1.0  # app_queue.c: "in %d ms"
        for key in _SECONDS_FIELDS:
            raw = msg.get(key)
            if isinstance(raw, str):
                try:
                    msg[key] = float(raw) * scale
                except ValueError:
                    del msg[key]
    return msg


def parse_block(text: str) -> Message | None:
    """One AMI message (without the blank line) to a dict, or None if it is not a message."""
    msg: Message = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if not key or " " in key:
            continue
        value = value.strip(" \r")
        if key in CHANVAR_HEADERS:
            folded = msg.get(key)
            if folded is None:
                msg[key] = folded = {}
            folded.update(parse_chanvariables(value))
            continue
        old = msg.get(key)
        if old is None:
            msg[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            msg[key] = [old, value]
    if "Event" not in msg and "Response" not in msg:
        return None
    return normalise(msg)


@dataclass
class AmiStreamParser:
    """Incremental parser for one AMI connection.  ``feed(bytes)`` returns the complete messages.

    ``keep_events`` = event names to parse (None: all).  Responses, and any block carrying an
    ``ActionID`` (answers to our own actions, e.g. ``CoreShowChannel``), are always kept.
    """

    keep_events: frozenset[str] | None = TRACKED_EVENTS
    keep_vars: frozenset[str] = TRACKED_VARS
    keep_var_prefixes: tuple[bytes, ...] = TRACKED_VAR_PREFIXES
    max_message_bytes: int = 1_000_000
    banner: str | None = None
    garbage: int = 0
    dropped: int = 0
    parsed: int = 0
    _tail: bytes = field(default=b"", repr=False)

    def reset(self) -> int:
        """Forget a half-received message (connection lost); return how many bytes were lost."""
        lost = len(self._tail)
        self._tail = b""
        self.banner = None
        return lost

    def feed(self, data: bytes) -> list[Message]:
        buf = self._tail + data if self._tail else data
        if self.banner is None and buf:
            if buf.startswith(b"Asterisk Call Manager/"):
                end = buf.find(b"\n")
                if end < 0:
                    self._tail = buf
                    return []
                self.banner = buf[:end].decode("utf-8", "replace").strip()
                buf = buf[end + 1:]
            elif len(buf) >= 22 or not b"Asterisk Call Manager/".startswith(buf):
                self.banner = ""
        if b"\n\n" in buf:  # some peers send bare \n; normalise once, cheaply
            buf = buf.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        blocks = buf.split(b"\r\n\r\n")
        tail = blocks.pop()
        if len(tail) > self.max_message_bytes:
            self.garbage += 1
            tail = b""
        self._tail = tail
        out: list[Message] = []
        keep = self.keep_events
        for block in blocks:
            if not block:
                continue
            if keep is not None and block.startswith(b"Event: "):
                end = block.find(b"\r\n")
                name = (block[7:] if end < 0 else block[7:end]).decode("ascii", "replace").strip()
                if name not in keep and b"\r\nActionID:" not in block:
                    self.dropped += 1
                    continue
                if name == "VarSet" and not self._wanted_var(block):
                    self.dropped += 1
                    continue
            text = block.decode("utf-8", "replace")
            if "\x00" in text:
                text = text.replace("\x00", "")  # PostgreSQL refuses NUL in text and JSON
            msg = parse_block(text.lstrip("\r\n"))
            if msg is None:
                self.garbage += 1
                continue
            self.parsed += 1
            out.append(msg)
        return out

    def _wanted_var(self, block: bytes) -> bool:
        start = block.find(b"\r\nVariable: ")
        if start < 0:
            return False
        start += 12
        end = block.find(b"\r\n", start)
        name = block[start:] if end < 0 else block[start:end]
        if name.startswith(self.keep_var_prefixes):
            return True
        return name.decode("ascii", "replace") in self.keep_vars


def parse_stream(data: bytes, keep_events: Iterable[str] | None = TRACKED_EVENTS) -> list[Message]:
    """Parse a whole recorded stream (tests, rebuild, benchmarks)."""
    parser = AmiStreamParser(keep_events=frozenset(keep_events) if keep_events is not None else None)
    return parser.feed(data + b"\r\n\r\n")
