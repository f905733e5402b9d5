"""Leads for the web admin's lead tests, made the one way the product makes them
(``astertrack.leads.enquiries.record_enquiry``) on top of the seeded calls."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from astertrack.db.models import Call, VisitorSession
from astertrack.db.types import utcnow
from astertrack.leads.enquiries import record_enquiry
from tests.webadmin.seed import XSS

HOSTILE_MESSAGE = "<script>alert('lead')</script> =HYPERLINK(\"x\")"


def make_leads(db, data) -> SimpleNamespace:
    """Ivan: his answered call (Anna, Yandex; the seed's lead, won) then a web form from his number
    with hostile text;
    Olga: a form with an e-mail and a phone that does not parse; Petr: Boris's missed call."""
    answered, missed = db.get(Call, data.answered), db.get(Call, data.missed)
    ivan_call = record_enquiry(db, data.site, "call", at=answered.started_at, call=answered)
    ivan_form = record_enquiry(db, data.site, "form", at=utcnow(),
                               phone="8 (916) 123-45-67", name=XSS, message=HOSTILE_MESSAGE,
                               page_url="https://shop.example/sofas?<b>x</b>", gclid="gclid-123",
                               visitor_session=db.get(VisitorSession, data.visit))
    olga = record_enquiry(db, data.site, "form", at=answered.started_at + dt.timedelta(minutes=20),
                          phone="call me <b>maybe</b>", email="Olga@Example.com", name="=cmd|' /C calc'!A0")
    petr = record_enquiry(db, data.site, "call", at=missed.started_at, call=missed)
    db.commit()
    return SimpleNamespace(ivan=ivan_call.lead_id, ivan_form=ivan_form.id, olga=olga.lead_id, petr=petr.lead_id)
