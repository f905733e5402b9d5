"""Who may see which call: staff see all, a manager only calls routed to or answered by them."""

from __future__ import annotations

from flask import abort
from flask_login import current_user

from astertrack.db.models import Call, Manager
from webadmin.db import get_session


def can_see(call: Call) -> bool:
    if current_user.is_staff:
        return True
    mid = current_user.manager_id
    if mid is None:
        return False
    if mid in (call.manager_id, call.routed_manager_id):
        return True
    if call.ringing_endpoint:  # ring-all: "PJSIP/101,PJSIP/102", every phone the call rang at
        manager = get_session().get(Manager, mid)
        return manager is not None and manager.endpoint in call.ringing_endpoint.split(",")
    return False


def visible_call_or_404(call_id: int) -> Call:
    """404 both for a missing call and for someone else's: a manager learns nothing about others' calls."""
    call = get_session().get(Call, call_id)
    if call is None or not can_see(call):
        abort(404)
    return call
