"""One rule for who sees which lead, on SQLite and PostgreSQL: ``visible_condition`` for the current
user (the lead pages) and for a manager named outside a request (the pop-up's journey) pick the same
leads, so the journey cannot drift from the lead pages."""

from __future__ import annotations

from flask_login import login_user
from sqlalchemy import select

from astertrack.db.models import Call, Lead, User
from astertrack.db.types import utcnow
from astertrack.leads.enquiries import record_enquiry
from webadmin.journey.data import journey
from webadmin.leads.access import visible_condition
from webadmin.security import AppUser


def _visible(db, condition) -> set[int]:
    return set(db.scalars(select(Lead.id).where(condition)))


def _as_user(app, db, login: str) -> set[int]:
    user = db.scalars(select(User).where(User.login == login)).one()
    with app.test_request_context():
        login_user(AppUser.from_row(user))
        return _visible(db, visible_condition())


def test_the_current_users_leads_and_a_named_managers_leads_are_the_same_rule(app, data, db):
    # a second lead, Boris's through an enquiry of his: Anna must not see it, Boris must
    record_enquiry(db, data.site, "form", at=utcnow(), phone="+79165550001", manager_id=data.boris)
    db.commit()
    every = _visible(db, Lead.id.isnot(None))
    assert len(every) >= 2
    anna, boris = _visible(db, visible_condition(data.anna)), _visible(db, visible_condition(data.boris))
    assert anna and boris and not anna & boris  # each their own, none shared in this seed
    assert _as_user(app, db, "anna") == anna and _as_user(app, db, "boris") == boris
    assert _as_user(app, db, "admin") == every  # staff: all, and only without a manager named
    assert _visible(db, visible_condition(-1)) == set()


def test_the_journey_shows_a_manager_the_leads_the_lead_pages_would(app, data, db):
    """A new call of the seeded caller: the journey lists Anna's lead (same phone) to Anna and the
    staff, not to Boris, who may not open it."""
    call = Call(site_id=data.site, caller_number="+79161234567", state="ringing", started_at=utcnow(),
                routed_manager_id=data.boris, session_id=data.visit)
    db.add(call)
    db.commit()
    with app.app_context():
        shown = {who: {lead["id"] for lead in journey(db, "call", call.id, only_manager_id=mid)["leads"]}
                 for who, mid in (("staff", None), ("anna", data.anna), ("boris", data.boris))}
    assert shown["staff"] and shown["anna"] == shown["staff"] <= _visible(db, visible_condition(data.anna))
    assert shown["boris"] == set()
