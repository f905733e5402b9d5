"""``next``: the dialled manager did not take the call; offer it to the next one.

Dialplan: ``AGI(agi://127.0.0.1:4573/next,${DIALSTATUS})`` after ``Dial``.  After
NOANSWER / BUSY / CHANUNAVAIL / CONGESTION the next free candidate of the same rule is
reserved, up to the attempt budget (``max_attempts``), then CT_DIAL is emptied and
CT_FALLBACK says where to go.  After ANSWER or CANCEL there is nothing left to do.
"""

from __future__ import annotations

from agi import announce, store
from agi.registry import route
from agi.routes.common import clean, reserve_loop
from astertrack.routing import dialplan_vars as v
from astertrack.routing import rules


class MissingCallId(LookupError):
    pass


@route("next")
async def next_candidate(request) -> None:
    channel = request.channel
    dial_status = (request.args[0] if request.args else "").strip().upper()
    call_uid = clean(request.args[1] if len(request.args) > 1 else None, 64)
    if not call_uid:
        call_uid = clean(await channel.get_variable(v.CALL_ID), 64)
    if not call_uid:
        raise MissingCallId("CT_CALL_ID is not set on the channel")
    await announce.mark_pending(channel)
    if not rules.should_retry(dial_status):
        await request.db(store.release_call, call_uid)
        await announce.announce_done(channel)
        request.note = f"call {call_uid} after {dial_status or '?'}: done"
        return
    plan = await request.db(store.plan_next, request.app.snapshots, call_uid, request.settings, request.now())
    decision = await reserve_loop(request, plan, store.commit_next)
    await announce.announce(channel, decision, request.settings, None, full=False)
    if decision.use_fallback_now:
        request.result = "fallback"
    request.note = (f"call {call_uid} after {dial_status}: "
                    f"-> {decision.manager_label or decision.fallback or 'nothing'} by {decision.routed_by}")
