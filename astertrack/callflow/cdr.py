"""Asterisk's own record of a call (its CDR lines) and the facts it gives: pure, no file, no database.

The AMI stream is live but not durable: a listener that restarts, crashes or loses its connection
misses events, and a call it followed across the gap would get guessed times.  Asterisk writes a
CDR line for every leg of every call whatever we do; ``asterisk-conf/cdr_custom_astertrack.conf``
makes it one CSV line with the linked id and microsecond times.  A call the gap touched takes its
outcome, manager, wait and talk from these lines (``reconcile``), the way Asterisk saw them.

What one call's lines look like (Asterisk 20, chan_sip and chan_pjsip alike): every Dial() or
Queue() attempt of the caller's channel is one line with the callee in ``dstchannel`` and its own
disposition; a transfer adds a line per new party; applications without a callee (Busy, Playback)
add lines without ``dstchannel``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from astertrack.callflow.outcomes import MissedReason, Outcome
from astertrack.callflow.state_machine import endpoint_of

FORMAT = "at1"  # first field of every line: the layout below
FIELDS = ("format", "linkedid", "uniqueid", "channel", "dstchannel", "lastapp", "lastdata", "disposition",
          "start", "answer", "end", "dcontext", "src", "dst", "sequence")
# a Dial() or Queue() that ran this close to its own timeout ended by the timeout, not by the caller
TIMEOUT_MARGIN = 1.0


class CdrFormatError(ValueError):
    """A line that is not one of ours (another layout, truncated, garbage)."""


@dataclass(frozen=True, slots=True)
class CdrLine:
    linkedid: str
    uniqueid: str
    channel: str
    dstchannel: str
    lastapp: str
    lastdata: str
    disposition: str
    start: float
    answer: float | None  # None: never answered (Asterisk writes 0.000000)
    end: float
    sequence: int | None = None


def parse_line(text: str) -> CdrLine:
    """One line of the CDR file; ``CdrFormatError`` says why it is not usable."""
    try:
        (row,) = list(csv.reader([text.rstrip("\r\n")]))
    except (csv.Error, ValueError) as exc:
        raise CdrFormatError(f"not one CSV line: {exc}") from None
    if not row or row[0] != FORMAT:
        raise CdrFormatError(f"unknown layout {row[0][:20]!r}" if row else "empty line")
    if len(row) != len(FIELDS):
        raise CdrFormatError(f"{len(row)} fields, expected {len(FIELDS)}")
    fields = dict(zip(FIELDS, row, strict=True))
    if not fields["linkedid"] or not fields["uniqueid"]:
        raise CdrFormatError("no linkedid or uniqueid")
    try:
        start, answer, end = (float(fields[k]) for k in ("start", "answer", "end"))
    except ValueError:
        raise CdrFormatError("start, answer and end must be epoch seconds (CDR(...,u))") from None
    if start <= 0 or end < start:
        raise CdrFormatError("start must be set and not after end")
    return CdrLine(linkedid=fields["linkedid"][:150], uniqueid=fields["uniqueid"][:150],
                   channel=fields["channel"][:200], dstchannel=fields["dstchannel"][:200],
                   lastapp=fields["lastapp"][:80], lastdata=fields["lastdata"][:255],
                   disposition=fields["disposition"].upper()[:20], start=start,
                   answer=answer if answer > 0 else None, end=end,
                   sequence=int(fields["sequence"]) if fields["sequence"].isdigit() else None)


@dataclass(frozen=True, slots=True)
class CdrFacts:
    """What Asterisk's CDR says about one call."""

    outcome: str
    missed_reason: str | None
    started: float
    answered_at: float | None
    ended: float
    wait_seconds: float
    talk_seconds: float
    answered_by: str | None  # endpoint, e.g. PJSIP/101
    transferred_to: str | None
    attempts: int


def _timeout_arg(line: CdrLine) -> float | None:
    """Dial(dest,timeout,...) and Queue(name,options,URL,announce,timeout): the timeout it ran with."""
    args = line.lastdata.split(",")
    index = {"dial": 1, "queue": 4}.get(line.lastapp.lower())
    if index is None or len(args) <= index:
        return None
    try:
        return float(args[index]) if args[index].strip() else None
    except ValueError:
        return None


def _callee_endpoint(line: CdrLine, lines: list[CdrLine]) -> str:
    """The phone behind a callee: a Local ``;1`` callee is followed to what its ``;2`` half dialled."""
    if line.dstchannel.startswith("Local/") and line.dstchannel.endswith(";1"):
        other = line.dstchannel[:-1] + "2"
        for candidate in lines:
            if candidate.channel == other and candidate.dstchannel and candidate.answer is not None:
                return _callee_endpoint(candidate, lines)
    return endpoint_of(line.dstchannel)


def _talk(answered: list[CdrLine]) -> float:
    """Seconds with somebody on the line: the union of the answered legs' [answer, end]."""
    total, reach = 0.0, None
    for line in sorted(answered, key=lambda x: x.answer or 0.0):
        start, end = line.answer or line.start, line.end
        if reach is not None and start < reach:
            start = reach
        if end > start:
            total += end - start
            reach = end if reach is None else max(reach, end)
    return total


def _unanswered_reason(legs: list[CdrLine]) -> tuple[str, str]:
    dispositions = {line.disposition for line in legs}
    if not legs or dispositions <= {"FAILED", "CONGESTION"}:
        return Outcome.MISSED, MissedReason.FAILED
    if "BUSY" in dispositions and dispositions <= {"BUSY", "FAILED", "CONGESTION"}:
        return Outcome.BUSY, MissedReason.ALL_BUSY
    last = max(legs, key=lambda x: (x.end, x.start))
    timeout = _timeout_arg(last)
    ran_out = timeout is not None and last.end - last.start >= timeout - TIMEOUT_MARGIN
    if last.lastapp.lower() == "queue":
        return Outcome.MISSED, MissedReason.QUEUE_TIMEOUT if ran_out else MissedReason.QUEUE_ABANDON
    if timeout is None or ran_out:
        return Outcome.MISSED, MissedReason.NO_ANSWER
    return Outcome.MISSED, MissedReason.CALLER_HANGUP


def reconcile(lines: list[CdrLine]) -> CdrFacts | None:
    """The call's facts from all the CDR lines of its linked id (None without any).

    The caller's channel is the one whose uniqueid is the linked id (the oldest channel of the
    call); its lines with a callee are the attempts.  Answered: the first attempt a callee
    answered; wait runs from the caller channel's start to that answer, talk is the answered
    time of every answered attempt (a transfer's new party included).  Unanswered: wait runs to
    the caller's last end, and the last attempt tells why - a Dial() or Queue() that ran to its
    own timeout was not answered; one that ended earlier was given up by the caller.
    """
    if not lines:
        return None
    linkedid = lines[0].linkedid
    caller = [line for line in lines if line.uniqueid == linkedid] or lines
    legs = [line for line in caller if line.dstchannel]
    started = min(line.start for line in caller)
    ended = max(line.end for line in lines)
    answered = sorted((line for line in legs if line.disposition == "ANSWERED" and line.answer is not None),
                      key=lambda x: x.answer)
    if answered:
        first, last = answered[0], answered[-1]
        by = _callee_endpoint(first, lines)
        then = _callee_endpoint(last, lines)
        return CdrFacts(outcome=Outcome.ANSWERED, missed_reason=None, started=started, answered_at=first.answer,
                        ended=ended, wait_seconds=round(first.answer - started, 3),
                        talk_seconds=round(_talk(answered), 3), answered_by=by,
                        transferred_to=then if then != by else None, attempts=len(legs))
    outcome, reason = _unanswered_reason(legs)
    return CdrFacts(outcome=str(outcome), missed_reason=str(reason), started=started, answered_at=None, ended=ended,
                    wait_seconds=round(max(line.end for line in caller) - started, 3), talk_seconds=0.0,
                    answered_by=None, transferred_to=None, attempts=len(legs))
