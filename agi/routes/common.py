"""Pieces shared by the routes: who is calling, which candidates are free, reserve-or-retry."""

from __future__ import annotations

import functools
import re

from agi import store
from astertrack.phones import try_normalize
from astertrack.routing import rules
from astertrack.routing.rules import ManagerView

SAFE_DEVICE = re.compile(r"^[A-Za-z0-9_./@:-]{1,100}$")
OFFER_AHEAD = 2  # free candidates handed to one reservation round (a spare if a concurrent call wins)
_UNKNOWN = {"", "unknown", "anonymous", "restricted", "private", "<unknown>"}
# One GET FULL VARIABLE asks for several devices (``${DEVICE_STATE(a)},${DEVICE_STATE(b)}``):
# one round trip instead of one per device.  Asterisk reads an AGI command into a 2 KB
# buffer, so a long ring-all group is asked in a few chunks.
MAX_EXPRESSION = 1000
# Caller ids repeat (callbacks, regulars) and DIDs repeat on every call; parsing one with
# libphonenumber costs more than the rest of the caller info together.
_normalize = functools.lru_cache(maxsize=4096)(try_normalize)


def clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = "".join(ch for ch in value if ch.isprintable()).strip()
    if value.lower() in _UNKNOWN:
        return None
    return value[:limit]


def caller_info(request, did_arg: str | None = None) -> store.CallerInfo:
    """DID: the route argument, else ``agi_extension``, else ``agi_dnid`` (``unknown`` on Local channels)."""
    env, region = request.env, request.settings.region
    did = None
    for raw in (did_arg, env.get("agi_extension"), env.get("agi_dnid")):
        did = _normalize(clean(raw, 64), region)
        if did:
            break
    raw_caller = clean(env.get("agi_callerid"), 80)
    caller = _normalize(raw_caller, region)
    return store.CallerInfo(
        did=did, caller=caller, caller_raw=None if caller else raw_caller,
        caller_name=clean(env.get("agi_calleridname"), 200), uniqueid=clean(env.get("agi_uniqueid"), 150),
        linkedid=None,
    )


def _expression_chunks(endpoints: list[str]) -> list[list[int]]:
    """Indexes of ``endpoints`` grouped so each group's expression stays under MAX_EXPRESSION."""
    chunks: list[list[int]] = []
    size = MAX_EXPRESSION
    for index, endpoint in enumerate(endpoints):
        cost = len(endpoint) + len("${DEVICE_STATE()},")
        if size + cost > MAX_EXPRESSION:
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += cost
    return chunks


async def device_states(request, managers: list[ManagerView]) -> list[str]:
    """Device state of each manager, in order; Asterisk is asked for all of them at once.

    States are single words (``NOT_INUSE``, ``INUSE`` ...) and endpoints cannot contain a
    comma (``SAFE_DEVICE``), so the comma-joined answer splits back unambiguously; an answer
    that does not split into one state per device counts as ``UNKNOWN`` (not free).
    """
    if request.settings.device_state_source == "database":
        return [manager.device_state for manager in managers]
    states = ["INVALID"] * len(managers)
    asked = [index for index, manager in enumerate(managers) if SAFE_DEVICE.match(manager.endpoint)]
    for chunk in _expression_chunks([managers[index].endpoint for index in asked]):
        indexes = [asked[position] for position in chunk]
        expression = ",".join(f"${{DEVICE_STATE({managers[index].endpoint})}}" for index in indexes)
        values = (await request.channel.get_full_variable(expression) or "").split(",")
        if len(values) != len(indexes):
            values = [""] * len(indexes)
        for index, value in zip(indexes, values, strict=True):
            states[index] = value.strip() or "UNKNOWN"
    return states


async def take_free(request, candidates: list[ManagerView], want: int) -> tuple[list[ManagerView], list[ManagerView]]:
    """Walk the candidates in order until ``want`` free ones are found; return (free, not yet checked).

    Each round asks about as many candidates as free ones are still missing, so the devices
    asked about are the same as walking one by one, in fewer round trips.
    """
    free: list[ManagerView] = []
    index = 0
    while index < len(candidates) and len(free) < want:
        batch = candidates[index:index + want - len(free)]
        index += len(batch)
        for manager, state in zip(batch, await device_states(request, batch), strict=True):
            if rules.is_free_state(state):
                free.append(manager)
    return free, candidates[index:]


async def reserve_loop(request, plan: store.Plan, commit) -> store.Decision:
    """Offer free candidates to the atomic reservation until one is won or none is left."""
    remaining = list(plan.candidates)
    ring_all = plan.strategy == "ring_all"
    while True:
        free, remaining = await take_free(request, remaining, len(remaining) if ring_all else OFFER_AHEAD)
        decision = await request.db(commit, plan, free, request.settings, not remaining)
        if decision is not None:
            return decision
