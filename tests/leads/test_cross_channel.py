"""One lead per customer across every channel (#25), on both databases: a call, a messenger
conversation and a form from one phone; a browser's enquiries without a phone joined by its visitor
id; a phone shared later in a conversation joins the phone's lead."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.db.models import Call, Enquiry, Lead, Site, VisitorSession
from astertrack.leads import messengers
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.messengers import add_phone
from astertrack.samples.factories import add_site, add_static_source

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
CALLER = "+79161234567"


def _leads(session, site):
    return session.scalars(select(Lead).where(Lead.site_id == site.id, Lead.merged_into_id.is_(None))
                           .order_by(Lead.id)).all()


def _visit(session, site, visitor_id, at=T0, **fields):
    visit = VisitorSession(site_id=site.id, visitor_id=visitor_id, first_seen=at, last_seen=at, **fields)
    session.add(visit)
    session.flush()
    return visit


def test_call_then_messenger_then_form_is_one_lead_with_three_enquiries(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Yandex Direct")
    call = Call(site_id=site.id, caller_number=CALLER, started_at=T0, state="finished", outcome="answered",
                source_id=ads.id)
    session.add(call)
    session.flush()
    record_enquiry(session, site, "call", at=T0, call=call)
    got = messengers.receive(session, site, "whatsapp", "79161234567", message_key="wamid.1",
                             at=T0 + dt.timedelta(hours=1), text="Окна на дачу", phone="+7 916 123 45 67")
    record_enquiry(session, site, "form", at=T0 + dt.timedelta(days=2), phone="8 (916) 123-45-67", name="Иван")
    session.commit()
    [lead] = _leads(session, site)
    channels = session.scalars(select(Enquiry.channel).where(Enquiry.lead_id == lead.id).order_by(Enquiry.at)).all()
    assert channels == ["call", "messenger", "form"]
    assert (lead.first_channel, lead.enquiries_count, lead.source_id) == ("call", 3, ads.id)
    assert got.enquiry.lead_id == lead.id and got.enquiry.repeat is True


def test_without_phone_or_email_the_visitor_joins_its_enquiries(session):
    site = add_site(session)
    first = _visit(session, site, "browser-1", utm_source="yandex")
    later = _visit(session, site, "browser-1", at=T0 + dt.timedelta(days=1))
    stranger = _visit(session, site, "browser-2")
    a = record_enquiry(session, site, "messenger", at=T0, visitor_session=first)
    b = record_enquiry(session, site, "chat", at=T0 + dt.timedelta(days=1), visitor_session=later)
    # the same browser's form with a phone joins that phone-less lead, which takes the phone
    c = record_enquiry(session, site, "form", at=T0 + dt.timedelta(days=1, hours=1), visitor_session=later,
                       phone=CALLER)
    other = record_enquiry(session, site, "messenger", at=T0, visitor_session=stranger)
    session.commit()
    assert a.lead_id == b.lead_id == c.lead_id != other.lead_id
    lead = session.get(Lead, a.lead_id)
    assert (lead.phone, lead.enquiries_count, lead.first_channel) == (CALLER, 3, "messenger")


def test_a_visitors_lead_with_another_phone_is_not_joined(session):
    site = add_site(session)
    visit = _visit(session, site, "shared-pc")
    a = record_enquiry(session, site, "form", at=T0, visitor_session=visit, phone="+79160000001")
    b = record_enquiry(session, site, "form", at=T0 + dt.timedelta(hours=1), visitor_session=visit,
                       phone="+79160000002")
    c = record_enquiry(session, site, "messenger", at=T0 + dt.timedelta(hours=2), visitor_session=visit)
    session.commit()
    assert a.lead_id != b.lead_id
    assert c.lead_id == b.lead_id  # no phone: the browser's most recent lead
    # past the window the visitor's lead is not joined
    late = record_enquiry(session, site, "messenger", at=T0 + dt.timedelta(days=site.lead_window_days + 2),
                          visitor_session=visit)
    assert late.lead_id not in (a.lead_id, b.lead_id)


def test_a_phone_shared_later_merges_the_conversation_into_the_phones_lead(session):
    site = add_site(session)
    called = record_enquiry(session, site, "call", at=T0, phone=CALLER)
    chat = messengers.receive(session, site, "telegram", "42", message_key="42:1", at=T0 + dt.timedelta(hours=1),
                              text="/start")
    assert chat.enquiry.lead_id != called.lead_id
    messengers.receive(session, site, "telegram", "42", message_key="42:2", at=T0 + dt.timedelta(hours=1, minutes=1),
                       phone=CALLER)
    session.commit()
    [lead] = _leads(session, site)
    assert lead.id == called.lead_id and lead.enquiries_count == 2 and lead.first_channel == "call"
    # a phone-less conversation's own lead takes the phone when no lead has it
    alone = messengers.receive(session, site, "telegram", "43", message_key="43:1", at=T0, text="hi")
    assert add_phone(session, alone.enquiry, "+79990001122").phone == "+79990001122"


def test_messenger_code_is_unique_among_the_sites_recent_visits(session, monkeypatch):
    site = add_site(session)
    old = _visit(session, site, "v-old")
    old.messenger_code = "AAAAAA"
    fresh = _visit(session, site, "v-new")
    codes = iter(["AAAAAA", "BBBBBB"])
    monkeypatch.setattr(messengers, "new_code", lambda: next(codes))
    assert messengers.visit_code(session, fresh, T0) == "BBBBBB"  # AAAAAA is taken by a live visit
    assert messengers.find_visit(session, session.get(Site, site.id), "aaaaaa", T0).id == old.id
    assert messengers.find_visit(session, site, "AAAAAA", T0 + dt.timedelta(days=site.attribution_window_days + 1)) is None
