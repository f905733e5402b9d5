"""``/api/v1/calls``: inbound calls and callbacks with outcome, manager and attribution (never the
recording's path or raw AMI data), each list one query joined to its source and manager."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import aliased

from astertrack.db.models import Call, Manager, Source
from astertrack.reporting.reports import confidence_condition
from webadmin.api import bp
from webadmin.api.registry import check_site, found, limit_to_site, operation, paginate, within_period
from webadmin.api.schemas import CallList, CallOut, CallsQuery
from webadmin.db import get_session

_Answered = aliased(Manager)


def _select():
    return (select(Call, Source.name, _Answered.name).outerjoin(Source, Source.id == Call.source_id)
            .outerjoin(_Answered, _Answered.id == Call.manager_id))


def call_out(row) -> CallOut:
    call, source, manager = row
    return CallOut(
        id=call.id, call_uid=call.call_uid, site_id=call.site_id, did=call.did, caller_number=call.caller_number,
        caller_name=call.caller_name, started_at=call.started_at, answered_at=call.answered_at,
        ended_at=call.ended_at, state=call.state, outcome=call.outcome, missed_reason=call.missed_reason,
        wait_seconds=call.wait_seconds, talk_seconds=call.talk_seconds, total_seconds=call.total_seconds,
        manager_id=call.manager_id, manager=manager, routed_manager_id=call.routed_manager_id,
        source_id=call.source_id, source=source, session_id=call.session_id,
        attribution_kind=call.attribution_kind, attribution_confidence=call.attribution_confidence,
        attribution_reason=call.attribution_reason, attribution_candidates=call.attribution_candidates,
        utm_source=call.utm_source, utm_medium=call.utm_medium, utm_campaign=call.utm_campaign, keyword=call.keyword,
        is_first_call=call.is_first_call, channel=call.lead_channel or "call", hangup_side=call.hangup_side,
        transferred=bool(call.transferred), recording_state=call.recording_state)


@bp.get("/calls")
@operation("Calls", "List calls", query=CallsQuery, response=CallList,
           description="Newest first. `from`/`to` bound the call's start; `channel` is how the call came "
                       "(`call` inbound, `callback` / `missed_call_callback` placed by astertrack).")
def calls(query: CallsQuery):
    stmt = limit_to_site(_select(), Call.site_id, query.site_id)
    for column, value in ((Call.source_id, query.source_id), (Call.manager_id, query.manager_id),
                          (Call.outcome, query.outcome), (Call.lead_channel, query.channel), (Call.state, query.state)):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.min_confidence is not None:
        stmt = stmt.where(confidence_condition(query.min_confidence))
    stmt = within_period(stmt, Call.started_at, query)
    return CallList(**paginate(get_session(), stmt, Call.id, query, call_out))


@bp.get("/calls/<int:call_id>")
@operation("Calls", "One call", response=CallOut)
def call(call_id: int):
    row = found(get_session().execute(_select().where(Call.id == call_id)).first(), "call", call_id)
    check_site(row[0].site_id)
    return call_out(row)
