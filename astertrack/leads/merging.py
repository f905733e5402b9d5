"""Merging two leads by hand (two numbers later found to be one customer): nothing is deleted.

The other lead's enquiries, deals and callback requests MOVE to the kept lead (so the kept lead's
card lists every enquiry in order, and revenue already won is still counted, once); the other lead
stays as a row with ``merged_into_id``/``merged_at`` set and no enquiries, left out of lists and
reports, and later enquiries from its phone or e-mail join the kept lead.  The kept lead's firsts
(channel, source, session, call, created_at) and counts are derived again from all its enquiries;
its state and amount stay its own (the amount of the other is taken when the kept one has none).
The admin (the caller) writes the audit entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from astertrack.db.models import CallbackRequest, Deal, Enquiry, Lead
from astertrack.leads.enquiries import refresh_lead, resolve
from astertrack.leads.errors import LeadError


def merge_leads(session: Session, keep: Lead, other: Lead, user: Any = None, *,
                now: dt.datetime | None = None) -> dict[str, Any]:
    """Merge ``other`` into ``keep`` (see the module); returns what changed, for the audit log:
    ``{"kept": id, "merged": id, "enquiries": n moved, "deals": n moved, "by": user id or None}``.

    Raises LeadError (field ``lead``) for a lead merged into itself, leads of two sites, or a
    lead already merged.  Nothing is committed here.
    """
    keep = resolve(session, keep)
    if other.merged_into_id is not None:
        raise LeadError("lead", f"lead {other.id} is already merged into lead {other.merged_into_id}")
    if keep.id == other.id:
        raise LeadError("lead", "a lead cannot be merged into itself")
    if keep.site_id != other.site_id:
        raise LeadError("lead", "only leads of the same site can be merged")
    now = now or dt.datetime.now(dt.UTC)
    session.flush()
    moved = session.execute(update(Enquiry).where(Enquiry.lead_id == other.id)
                            .values(lead_id=keep.id)).rowcount
    deals = session.execute(update(Deal).where(Deal.lead_id == other.id).values(lead_id=keep.id)).rowcount
    session.execute(update(CallbackRequest).where(CallbackRequest.lead_id == other.id).values(lead_id=keep.id))
    # Leads merged into the other one before now point at the kept one directly.
    session.execute(update(Lead).where(Lead.merged_into_id == other.id).values(merged_into_id=keep.id))
    session.expire_all()
    keep = session.get(Lead, keep.id)
    other = session.get(Lead, other.id)
    other.merged_into_id = keep.id
    other.merged_at = now
    other.updated_at = now
    other.enquiries_count = 0
    if keep.amount is None and other.amount is not None:
        keep.amount, keep.currency = other.amount, other.currency
        keep.deal_updated_at = now  # the kept lead's deal changed: deal.updated announces it
    for attr in ("phone", "email", "name", "manager_id"):
        if getattr(keep, attr) is None:
            setattr(keep, attr, getattr(other, attr))
    keep.updated_at = now
    refresh_lead(session, keep)
    session.flush()
    return {"kept": keep.id, "merged": other.id, "enquiries": moved, "deals": deals,
            "by": getattr(user, "id", None)}
