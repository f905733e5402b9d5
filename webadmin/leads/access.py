"""Who may see which lead: staff see all, a manager only leads whose calls or enquiries were theirs
(the lead's manager, an enquiry's manager, or a call of the lead routed to or answered by them)."""

from __future__ import annotations

from flask import abort
from flask_login import current_user
from sqlalchemy import ColumnElement, exists, or_, select, true

from astertrack.db.models import Call, Enquiry, Lead
from webadmin.db import get_session


def visible_condition(manager_id: int | None = None) -> ColumnElement[bool]:
    """The SQL condition on ``Lead`` of the leads the current user may see, or, given ``manager_id``,
    of those that manager may see (the manager's pop-up is built outside a request: one rule for both)."""
    if manager_id is not None:
        mid = manager_id
    elif current_user.is_staff:
        return true()
    else:
        mid = current_user.manager_id if current_user.manager_id is not None else -1
    own_call = or_(Call.manager_id == mid, Call.routed_manager_id == mid)
    return or_(
        Lead.manager_id == mid,
        exists(select(Enquiry.id).where(Enquiry.lead_id == Lead.id, Enquiry.manager_id == mid)),
        exists(select(Call.id).where(Call.id == Lead.call_id, own_call)),
        exists(select(Enquiry.id).join(Call, Call.id == Enquiry.call_id).where(Enquiry.lead_id == Lead.id, own_call)),
    )


def visible_lead_or_404(lead_id: int) -> Lead:
    """404 both for a missing lead and for someone else's: a manager learns nothing of others' leads."""
    lead = get_session().scalars(select(Lead).where(Lead.id == lead_id, visible_condition())).first()
    if lead is None:
        abort(404)
    return lead
