"""Recorded AMI streams as load: copy a capture under fresh ids and interleave many copies in time.

Used by the benchmark and the burst tests to turn one recorded call into thousands of concurrent
ones without inventing event shapes: every message is a recorded one, with its uniqueids,
linkedids, channel-name counters, bridge ids, call ids and timestamps rewritten per copy.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable

_ID_HEADER = re.compile(rb"(?m)^((?:[A-Za-z]*)(?:Uniqueid|Linkedid|UniqueID|LinkedID|Uniqueid[12])): ([^\r\n]+)\r$")
_CHANNEL_COUNTER = re.compile(rb"-0000([0-9a-f]{4})(?=[;\r\n,&]|$)")
_BRIDGE = re.compile(rb"(?m)^(BridgeUniqueid|BridgeId|Bridge): ([0-9a-f-]{36})\r$")
_CALL_ID = re.compile(rb"ct-(\d{8})-(\d+)")
_TIMESTAMP = re.compile(rb"(?m)^Timestamp: (\d+\.\d+)\r$")


def body_of(capture: bytes) -> bytes:
    """Drop the banner and the recorder's login response from a recorded stream."""
    if capture.startswith(b"Asterisk Call Manager/"):
        capture = capture.split(b"\r\n", 1)[1]
    first, sep, rest = capture.partition(b"\r\n\r\n")
    return rest if b"Response:" in first else capture


def rewrite_copy(body: bytes, copy: int, time_shift: float = 0.0) -> bytes:
    """The same stream as if it were another call: ids unique per ``copy``, times shifted."""
    tag = b"c%d-" % copy
    counter = b"-%04x" % (copy & 0xFFFF)
    out = _ID_HEADER.sub(lambda m: m.group(1) + b": " + tag + m.group(2) + b"\r", body)
    out = _CHANNEL_COUNTER.sub(lambda m: counter + m.group(1), out)
    out = _BRIDGE.sub(lambda m: m.group(1) + b": " + tag + m.group(2) + b"\r", out)
    out = _CALL_ID.sub(lambda m: b"ct-%s-%d-%s" % (m.group(1), copy, m.group(2)), out)
    if time_shift:
        out = _TIMESTAMP.sub(lambda m: b"Timestamp: %.6f\r" % (float(m.group(1)) + time_shift), out)
    return out


def _timed_blocks(body: bytes) -> list[tuple[float, bytes]]:
    blocks = []
    first = _TIMESTAMP.search(body)
    last = float(first.group(1)) if first else 0.0  # untimed opening messages go with the first event
    for block in body.split(b"\r\n\r\n"):
        if not block.strip():
            continue
        match = _TIMESTAMP.search(block + b"\r")
        if match:
            last = float(match.group(1))
        blocks.append((last, block + b"\r\n\r\n"))
    return blocks


def interleave(streams: Iterable[bytes]) -> bytes:
    """Merge several streams into one, ordered by event time (each stream keeps its own order)."""
    tagged = []
    for index, stream in enumerate(streams):
        tagged.append([(ts, index, n, block) for n, (ts, block) in enumerate(_timed_blocks(stream))])
    return b"".join(item[3] for item in heapq.merge(*tagged))


def multiply(captures: list[bytes], copies: int, spacing: float) -> bytes:
    """``copies`` calls cycling through ``captures`` (bodies), each starting ``spacing`` s after the last."""
    bodies = [body_of(c) for c in captures]
    starts = [_timed_blocks(b)[0][0] if _timed_blocks(b) else 0.0 for b in bodies]
    base = min(starts) if starts else 0.0
    streams = []
    for copy in range(copies):
        which = copy % len(bodies)
        streams.append(rewrite_copy(bodies[which], copy, base - starts[which] + copy * spacing))
    return interleave(streams)
