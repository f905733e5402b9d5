"""Pieces shared by the routes: who is calling, which candidates are free, reserve-or-retry."""

from __future__ import annotations

import re

from agi import store
from astertrack import routing
from astertrack.phones import try_normalize
from astertrack.routing import ManagerView

SAFE_DEVICE = re.compile(r"^[A-Za-z0-9_./@:-]{1,100}$")
OFFER_AHEAD = 2  # free candidates handed to one reservation round (a spare if a concurrent call wins)
_UNKNOWN = {"", "unknown", "anonymous", "restricted", "private", "<unknown>"}


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
        did = try_normalize(clean(raw, 64), region)
        if did:
            break
    raw_caller = clean(env.get("agi_callerid"), 80)
    caller = try_normalize(raw_caller, region)
    return store.CallerInfo(
        did=did, caller=caller, caller_raw=None if caller else raw_caller,
        caller_name=clean(env.get("agi_calleridname"), 200), uniqueid=clean(env.get("agi_uniqueid"), 150),
        linkedid=None,
    )


async def device_state(request, manager: ManagerView) -> str:
    if request.settings.device_state_source == "database":
        return manager.device_state
    if not SAFE_DEVICE.match(manager.endpoint):
        return "INVALID"
    return (await request.channel.get_full_variable(f"${{DEVICE_STATE({manager.endpoint})}}")) or "UNKNOWN"


async def take_free(request, candidates: list[ManagerView], want: int) -> tuple[list[ManagerView], list[ManagerView]]:
    """Walk the candidates in order until ``want`` free ones are found; return (free, not yet checked)."""
    free: list[ManagerView] = []
    index = 0
    while index < len(candidates) and len(free) < want:
        manager = candidates[index]
        index += 1
        if routing.is_free_state(await device_state(request, manager)):
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
