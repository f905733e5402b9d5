"""The journey's CSV export per call (and per lead), and the template global the cards' partials
call.  Access is the card's: a call a manager may not open is a 404 here too (``calls.access``),
a lead likewise (``leads.access``); anonymous visitors go to the login page."""

from __future__ import annotations

from typing import Any

from flask_login import current_user

from webadmin.calls.access import can_see, visible_call_or_404
from webadmin.db import get_session
from webadmin.exports import stream_csv
from webadmin.journey import bp, data
from webadmin.leads.access import visible_lead_or_404
from webadmin.security import ROLES, roles_required


def _only_manager_id() -> int | None:
    return None if current_user.is_staff else (current_user.manager_id if current_user.manager_id is not None else -1)


@bp.app_template_global("journey_view")
def journey_view(kind: str, obj: Any) -> dict[str, Any] | None:
    """The journey of the call or lead a card shows, for the current user (None for a call the
    user may not see: the partial then shows nothing)."""
    if obj is None or not current_user.is_authenticated:
        return None
    if kind == "call":
        if not can_see(obj):
            return None
    elif kind == "lead":
        visible_lead_or_404(obj.id)
    else:
        raise ValueError(kind)
    return data.journey(get_session(), kind, obj.id, only_manager_id=_only_manager_id())


def _export(kind: str, object_id: int):
    only = _only_manager_id()
    return stream_csv(f"journey-{kind}-{object_id}.csv", data.CSV_HEADER,
                      lambda db: data.csv_rows(data.journey(db, kind, object_id, only_manager_id=only)))


@bp.get("/call/<int:call_id>.csv")
@roles_required(*ROLES)
def call_csv(call_id: int):
    visible_call_or_404(call_id)
    return _export("call", call_id)


@bp.get("/lead/<int:lead_id>.csv")
@roles_required(*ROLES)
def lead_csv(lead_id: int):
    visible_lead_or_404(lead_id)
    return _export("lead", lead_id)
