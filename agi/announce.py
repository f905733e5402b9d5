"""Tell the dialplan (channel variables) and the AMI listener (UserEvent) what was decided.

``CT_STATUS`` is set to ``OK`` only after every other variable, and it is empty or
``PENDING`` until then (the shipped dialplan clears it before each AGI; ``next`` also sets
``PENDING`` itself), so a session cut half-way leaves the dialplan on its fallback branch
instead of dialling with half-written variables.  The variables go in one ``EXEC MSet``
where their values allow it (``AGIChannel.set_variables``), the caller-id name with them:
three round trips per decision (device states, UserEvent, MSet) instead of seventeen.
The UserEvent keeps the recorded shape
``AstertrackRoute,call_id: ..,source: ..,manager: 101`` (extra headers follow those three).
"""

from __future__ import annotations

import re

from agi.protocol import AGIChannel, brackets_closed
from agi.settings import AgiSettings
from agi.store import Decision
from astertrack.routing import dialplan_vars as v

PENDING = "PENDING"
OK = "OK"
FAILED = "FAILED"
# UserEvent data is split by Asterisk on commas (arguments) and ": " (header/value); "|",
# quotes, backslashes, "$" and braces have meaning to the dialplan parser.  Keep them out.
_UNSAFE_EVENT = re.compile(r"[,|\"\\${}\r\n\x00-\x1f]")
_UNSAFE_TEXT = re.compile(r"[\r\n\x00-\x1f\x7f]")
_BRACKETS_BLANK = str.maketrans("[]()", "    ")
MAX_NAME = 80


def event_value(value: object) -> str:
    """A UserEvent header value: nothing that splits or expands, and no ``[`` or ``(`` left
    open (UserEvent nests commas inside them: every header after it would be swallowed)."""
    text = _UNSAFE_EVENT.sub(" ", str(value)).strip()[:200]
    return text if brackets_closed(text) else text.translate(_BRACKETS_BLANK)


def text_value(value: object, limit: int = 200) -> str:
    return _UNSAFE_TEXT.sub(" ", str(value)).strip()[:limit]


def user_event_data(decision: Decision) -> str:
    headers = [("call_id", decision.call_uid), ("source", decision.source), ("manager", decision.manager_label)]
    if decision.campaign:
        headers.append(("campaign", decision.campaign))
    headers += [("recording", decision.recording), ("routed_by", decision.routed_by),
                ("attempt", decision.attempt)]
    return ",".join([v.ROUTE_USEREVENT] + [f"{name}: {event_value(value)}" for name, value in headers])


def callerid_name(source: str, caller_name: str | None) -> str:
    """``[Direct] Ivan``: the manager's phone shows where the call came from."""
    name = text_value(caller_name or "", MAX_NAME)
    prefix = f"[{text_value(source, 40)}]"
    return f"{prefix} {name}".strip()[:MAX_NAME]


async def mark_pending(channel: AGIChannel) -> None:
    await channel.set_variable(v.STATUS, PENDING)


async def announce(channel: AGIChannel, decision: Decision, settings: AgiSettings, caller_name: str | None,
                   full: bool = True) -> None:
    """Set the CT_* variables and send the UserEvent.  ``full=False`` for ``next`` (call-level
    variables such as CT_CALL_ID and CT_RECORDING are already on the channel)."""
    values: list[tuple[str, object]] = []
    if full:
        values += [(v.CALL_ID, decision.call_uid), (v.SOURCE, text_value(decision.source)),
                   (v.CAMPAIGN, text_value(decision.campaign))]
    values += [
        (v.MANAGER, decision.dial), (v.DIAL, decision.dial), (v.TIMEOUT, decision.timeout),
        (v.QUEUE, decision.queue),
    ]
    if full:
        values.append((v.RECORDING, decision.recording))
    values += [
        (v.ROUTED_BY, decision.routed_by), (v.FALLBACK, str(decision.fallback or "")), (v.ATTEMPT, decision.attempt),
    ]
    if full and settings.callerid_prefix and decision.source:
        values.append(("CALLERID(name)", callerid_name(decision.source, caller_name)))  # rides in the MSet
    if decision.managers or decision.queue or full:
        await channel.exec_app("UserEvent", user_event_data(decision))
    await channel.set_variables(values + [(v.STATUS, OK)])


async def announce_done(channel: AGIChannel) -> None:
    """Nothing more to try (answered, or the caller went away)."""
    await channel.set_variables([(name, "") for name in (v.DIAL, v.QUEUE, v.MANAGER, v.FALLBACK)] + [(v.STATUS, OK)])


async def announce_failure(channel: AGIChannel, settings: AgiSettings, fallback: str) -> None:
    """Failure policy: no candidate variables, the global fallback, CT_STATUS=FAILED."""
    await channel.set_variables([(v.DIAL, ""), (v.QUEUE, ""), (v.MANAGER, ""), (v.FALLBACK, fallback),
                                 (v.TIMEOUT, settings.ring_timeout), (v.ROUTED_BY, "failed"), (v.STATUS, FAILED)])
