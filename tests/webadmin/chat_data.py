"""Website chats on top of the admin's seed (tests/webadmin/seed.py), for the API and lead-card tests."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from astertrack.chat import conversations as chats
from astertrack.db.models import Enquiry, Manager, Site, VisitorSession
from astertrack.db.types import utcnow
from astertrack.samples.factories import add_site

HOSTILE = "<img src=x onerror=alert(1)>"


def make_chats(db, data) -> SimpleNamespace:
    """Ivan's chat (from the Yandex visit): his hostile message, Anna's reply, moved to Boris, his
    phone (Ivan's: the chat's enquiry joins his lead), closed by Boris.  A later chat nobody took
    yet, and one on another site."""
    site = db.get(Site, data.site)
    anna, boris = db.get(Manager, data.anna), db.get(Manager, data.boris)
    start = utcnow() - dt.timedelta(minutes=50)
    at = lambda minutes: start + dt.timedelta(minutes=minutes)  # noqa: E731 - the chat's clock
    ivan, _ = chats.start(db, site, at=at(0), visit=db.get(VisitorSession, data.visit),
                          page_url="https://shop.example/sofas", ip="203.0.113.7")
    chats.post(db, ivan, "visitor", HOSTILE, at=at(1), client_id="m1")
    chats.post(db, ivan, "manager", "Hello! Which sofa?", at=at(2), manager=anna)
    chats.transfer(db, ivan, boris, by=anna, at=at(3))
    chats.give_contact(db, ivan, phone="8 916 123-45-67", name="Ivan", at=at(4))
    chats.close(db, ivan, by="manager", manager=boris, at=at(5))
    db.commit()
    later, _ = chats.start(db, site, at=at(10))
    chats.post(db, later, "visitor", "anyone?", at=at(11))
    db.commit()
    other = add_site(db, "Chat elsewhere")
    elsewhere, _ = chats.start(db, other, at=at(12))
    db.commit()
    return SimpleNamespace(ivan=ivan.id, later=later.id, elsewhere=elsewhere.id, other_site=other.id,
                           ivan_lead=db.get(Enquiry, ivan.enquiry_id).lead_id, start=start)
