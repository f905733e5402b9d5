"""``ping``: a health check the dialplan or a monitor can run (``AGI(agi://127.0.0.1:4573/ping)``)."""

from __future__ import annotations

from agi.registry import route
from astertrack.routing import dialplan_vars as v


@route("ping")
async def ping(request) -> None:
    await request.channel.set_variable(v.STATUS, "OK")
    request.note = "pong"
