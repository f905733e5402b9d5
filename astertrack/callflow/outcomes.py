"""Call outcome vocabulary and the pure rule that turns a call's facts into an outcome.

The rule rests on what the whole call did (bridges, per-leg dial status, queue events, who asked
to hang up first), never on one channel driver's hangup cause: chan_sip and chan_pjsip give
different causes for the same flow (tests/fixtures/asterisk/EXPECTED-pjsip.md, "PJSIP vs chan_sip").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Outcome(enum.StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"  # every manager dialled was busy (missed_reason all_busy): a kind of missed call


class MissedReason(enum.StrEnum):
    NO_ANSWER = "no_answer"
    ALL_BUSY = "all_busy"
    CALLER_HANGUP = "caller_hangup"  # the caller gave up while a manager's phone rang
    QUEUE_ABANDON = "queue_abandon"
    QUEUE_TIMEOUT = "queue_timeout"
    FAILED = "failed"  # unavailable, congestion, nobody dialled
    # A callback astertrack placed (AMI Originate): the manager's phone rings first, then the visitor's.
    MANAGER_NO_ANSWER = "manager_no_answer"
    MANAGER_BUSY = "manager_busy"
    VISITOR_NO_ANSWER = "visitor_no_answer"
    VISITOR_BUSY = "visitor_busy"


class HangupSide(enum.StrEnum):
    CALLER = "caller"
    MANAGER = "manager"
    PBX = "pbx"


class DialStatus(enum.StrEnum):
    ANSWER = "ANSWER"
    BUSY = "BUSY"
    NOANSWER = "NOANSWER"
    CANCEL = "CANCEL"
    CONGESTION = "CONGESTION"
    CHANUNAVAIL = "CHANUNAVAIL"
    DONTCALL = "DONTCALL"
    TORTURE = "TORTURE"
    INVALIDARGS = "INVALIDARGS"
    ABORT = "ABORT"
    CONTINUE = "CONTINUE"
    GOTO = "GOTO"  # may arrive as GOTO:<location>


UNAVAILABLE = frozenset({"CHANUNAVAIL", "CONGESTION", "DONTCALL", "TORTURE", "INVALIDARGS"})

# QUEUESTATUS values (app_queue.c) that mean the queue could not take or keep the caller; any other
# ending without an agent (TIMEOUT, or none recorded) is a queue timeout.
QUEUE_FAILED_STATUSES = frozenset({"FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL"})


def leg_status(statuses: Iterable[str]) -> str | None:
    """One dialled leg's final word.  app_queue repeats DialEnd (CANCEL twice, NOANSWER then
    CANCEL), so the first status that is not CANCEL wins; CANCEL only if it is all there is."""
    final = None
    for status in statuses:
        status = status.split(":", 1)[0].upper()
        if status != "CANCEL":
            return status
        final = status
    return final


def classify_unanswered(*, queue_abandoned: bool, caller_gave_up_while_ringing: bool,
                        queue_left_without_agent: bool, queue_status: str | None,
                        leg_statuses: Iterable[str | None], caller_hung_up: bool) -> tuple[Outcome, MissedReason]:
    """Outcome of a call nobody answered, from the most specific fact to the least."""
    if queue_abandoned:
        return Outcome.MISSED, MissedReason.QUEUE_ABANDON
    if caller_gave_up_while_ringing:
        return Outcome.MISSED, MissedReason.CALLER_HANGUP
    if queue_left_without_agent:
        if queue_status in QUEUE_FAILED_STATUSES:
            return Outcome.MISSED, MissedReason.FAILED
        return Outcome.MISSED, MissedReason.QUEUE_TIMEOUT
    legs = [s for s in leg_statuses if s]
    if any(s == "NOANSWER" for s in legs):
        return Outcome.MISSED, MissedReason.NO_ANSWER
    if legs and any(s == "BUSY" for s in legs) and all(s == "BUSY" or s in UNAVAILABLE for s in legs):
        return Outcome.BUSY, MissedReason.ALL_BUSY
    if legs and all(s in UNAVAILABLE for s in legs):
        return Outcome.MISSED, MissedReason.FAILED
    if caller_hung_up:
        return Outcome.MISSED, MissedReason.CALLER_HANGUP
    if legs:
        return Outcome.MISSED, MissedReason.NO_ANSWER
    return Outcome.MISSED, MissedReason.FAILED


# OriginateResponse ``Reason`` (Asterisk's outgoing-call result: AST_CONTROL_* of the dialled leg).
ORIGINATE_NO_ANSWER = frozenset({"1", "3"})  # hung up while ringing, rang out
ORIGINATE_BUSY = frozenset({"5"})


def classify_callback(*, manager_answered: bool, originate_reason: str | None, manager_cause: int | None,
                      visitor_statuses: Iterable[str | None], manager_hung_up: bool) -> tuple[Outcome, MissedReason]:
    """Outcome of a callback nobody finished answering: which side did not pick up, and why.
    The manager's side rests on the OriginateResponse reason (the dial result), the visitor's on
    the Dial() leg statuses, as for an inbound call."""
    if not manager_answered:
        if originate_reason in ORIGINATE_BUSY or (originate_reason is None and manager_cause == 17):
            return Outcome.MISSED, MissedReason.MANAGER_BUSY
        if originate_reason in ORIGINATE_NO_ANSWER or originate_reason is None:
            return Outcome.MISSED, MissedReason.MANAGER_NO_ANSWER
        return Outcome.MISSED, MissedReason.FAILED
    legs = [s for s in visitor_statuses if s]
    if any(s == "NOANSWER" for s in legs):
        return Outcome.MISSED, MissedReason.VISITOR_NO_ANSWER
    if any(s == "BUSY" for s in legs):
        return Outcome.MISSED, MissedReason.VISITOR_BUSY
    if legs and all(s in UNAVAILABLE for s in legs):
        return Outcome.MISSED, MissedReason.FAILED
    if manager_hung_up:
        return Outcome.MISSED, MissedReason.CALLER_HANGUP
    return Outcome.MISSED, MissedReason.VISITOR_NO_ANSWER if legs else MissedReason.FAILED
