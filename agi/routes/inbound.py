"""``inbound``: attribute a new call to its source and choose who answers it.

Dialplan: ``AGI(agi://127.0.0.1:4573/inbound[,DID[,${CHANNEL(linkedid)}]])``; the linkedid
as an argument saves asking for it.  Sets CT_CALL_ID, CT_SOURCE,
CT_CAMPAIGN, CT_MANAGER, CT_DIAL, CT_TIMEOUT, CT_QUEUE, CT_RECORDING, CT_ROUTED_BY,
CT_FALLBACK, CT_ATTEMPT, then CT_STATUS=OK; optionally CALLERID(name) = ``[Source] Name``;
sends the ``AstertrackRoute`` UserEvent.
"""

from __future__ import annotations

from agi import announce, store
from agi.registry import route
from agi.routes.common import caller_info, clean, reserve_loop


@route("inbound")
async def inbound(request) -> None:
    info = caller_info(request, request.args[0] if request.args else None)
    channel = request.channel
    # No PENDING first: the channel is new (CT_STATUS unset) and the shipped dialplan clears
    # CT_STATUS before every AGI anyway; it is OK only once everything is set.
    linkedid = request.args[1] if len(request.args) > 1 else await channel.get_variable("CHANNEL(linkedid)")
    info.linkedid = clean(linkedid, 150) or info.uniqueid
    plan = await request.db(store.plan_inbound, request.app.snapshots, info, request.settings, request.now())
    decision = await reserve_loop(request, plan, store.commit_inbound)
    await announce.announce(channel, decision, request.settings, info.caller_name)
    if decision.use_fallback_now:
        request.result = "fallback"
    request.note = (f"DID {info.did or '?'} caller {info.caller or info.caller_raw or '?'} "
                    f"{plan.attribution.kind}:{decision.source or '-'} ({plan.attribution.confidence:.2f} "
                    f"{plan.attribution.reason}) "
                    f"-> {decision.manager_label or decision.fallback or 'nothing'} by {decision.routed_by}")
