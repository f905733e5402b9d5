"""record_enquiry's deduplication on both databases: one lead per phone (or e-mail) within the site's
window, measured from the lead's last enquiry; no false merge between an e-mail and a phone."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from astertrack.db.models import Call, Enquiry, Lead, VisitorSession
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.errors import LeadError
from astertrack.samples.factories import add_site, add_static_source

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
CALLER = "+79161234567"


def _call(session, site, at, caller=CALLER, **fields) -> Call:
    call = Call(site_id=site.id, caller_number=caller, started_at=at, state="finished", outcome="answered", **fields)
    session.add(call)
    session.flush()
    return call


def _leads(session, site):
    return session.scalars(select(Lead).where(Lead.site_id == site.id).order_by(Lead.id)).all()


def _enquiries(session, lead):
    return session.scalars(select(Enquiry).where(Enquiry.lead_id == lead.id).order_by(Enquiry.at)).all()


def test_call_then_form_from_same_number_is_one_lead_first_channel_call(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Yandex Direct")
    call = _call(session, site, T0, source_id=ads.id, utm_campaign="spring")
    first = record_enquiry(session, site, "call", at=T0, call=call)
    # The form writes the number the way people do; it normalises to the caller's number.
    second = record_enquiry(session, site, "form", at=T0 + dt.timedelta(days=3), phone="8 (916) 123-45-67",
                            name="Иван", email="Ivan@Example.RU", message="<script>alert(1)</script>")
    session.commit()
    [lead] = _leads(session, site)
    assert first.lead_id == second.lead_id == lead.id
    assert lead.first_channel == "call" and lead.enquiries_count == 2
    assert lead.source_id == ads.id and lead.call_id == call.id and lead.phone == CALLER
    assert lead.email == "ivan@example.ru" and lead.name == "Иван"
    assert lead.created_at == T0 and lead.last_enquiry_at == T0 + dt.timedelta(days=3)
    enquiries = _enquiries(session, lead)
    assert [(e.channel, e.repeat) for e in enquiries] == [("call", False), ("form", True)]
    assert enquiries[0].utm_campaign == "spring"
    assert enquiries[1].message == "<script>alert(1)</script>"  # kept as text


def test_after_the_window_a_new_lead(session):
    site = add_site(session, lead_window_days=30)
    record_enquiry(session, site, "call", at=T0, call=_call(session, site, T0))
    record_enquiry(session, site, "form", at=T0 + dt.timedelta(days=31), phone=CALLER)
    session.commit()
    old, new = _leads(session, site)
    assert (old.enquiries_count, new.enquiries_count) == (1, 1)
    assert new.first_channel == "form" and new.created_at == T0 + dt.timedelta(days=31)


def test_window_is_measured_from_the_last_enquiry(session):
    site = add_site(session, lead_window_days=30)
    for days in (0, 25, 50, 75):  # each within 30 days of the one before, 75 days in all
        at = T0 + dt.timedelta(days=days)
        record_enquiry(session, site, "call", at=at, call=_call(session, site, at))
    session.commit()
    [lead] = _leads(session, site)
    assert lead.enquiries_count == 4 and lead.created_at == T0


def test_email_only_form_then_call_are_two_leads(session):
    site = add_site(session)
    form = record_enquiry(session, site, "form", at=T0, email="buyer@example.com", name="Anna")
    call = record_enquiry(session, site, "call", at=T0 + dt.timedelta(hours=1),
                          call=_call(session, site, T0 + dt.timedelta(hours=1)))
    session.commit()
    assert form.lead_id != call.lead_id
    first, second = _leads(session, site)
    assert (first.email, first.phone, first.first_channel) == ("buyer@example.com", None, "form")
    assert (second.email, second.phone, second.first_channel) == (None, CALLER, "call")


def test_email_joins_by_email_but_never_across_two_phones(session):
    site = add_site(session)
    a = record_enquiry(session, site, "form", at=T0, email="x@example.com")
    b = record_enquiry(session, site, "form", at=T0 + dt.timedelta(hours=1), email="X@example.com", phone=CALLER)
    c = record_enquiry(session, site, "form", at=T0 + dt.timedelta(hours=2), email="x@example.com")
    d = record_enquiry(session, site, "form", at=T0 + dt.timedelta(hours=3), email="x@example.com",
                       phone="+79990001122")
    session.commit()
    assert a.lead_id == b.lead_id == c.lead_id  # the phone-less lead got the phone
    assert d.lead_id != a.lead_id  # another phone: another customer, whatever the e-mail
    assert session.get(Lead, a.lead_id).phone == CALLER


def test_site_windows_are_separate(session):
    shop, other = add_site(session, "Shop"), add_site(session, "Other")
    x = record_enquiry(session, shop, "form", at=T0, phone=CALLER)
    y = record_enquiry(session, other, "form", at=T0, phone=CALLER)
    assert x.lead_id != y.lead_id


def test_a_call_recorded_after_a_later_form_still_opens_the_lead(session):
    """The listener records a call a few seconds after it happened; a form sent meanwhile must not
    become the lead's first enquiry."""
    site = add_site(session)
    call = _call(session, site, T0)
    form = record_enquiry(session, site, "form", at=T0 + dt.timedelta(seconds=5), phone=CALLER)
    record_enquiry(session, site, "call", at=T0, call=call)
    session.commit()
    lead = session.get(Lead, form.lead_id)
    assert lead.first_channel == "call" and lead.created_at == T0 and lead.call_id == call.id
    assert [(e.channel, e.repeat) for e in _enquiries(session, lead)] == [("call", False), ("form", True)]


def test_a_call_makes_one_enquiry(session):
    site = add_site(session)
    call = _call(session, site, T0)
    first = record_enquiry(session, site, "call", at=T0, call=call)
    again = record_enquiry(session, site, "call", at=T0, call=call)
    session.commit()
    assert again.id == first.id
    assert session.scalar(select(Lead.enquiries_count).where(Lead.id == first.lead_id)) == 1


def test_invalid_phone_kept_as_given_and_flagged(session):
    site = add_site(session)
    enquiry = record_enquiry(session, site, "form", at=T0, phone="call me maybe 123")
    session.commit()
    assert (enquiry.phone, enquiry.phone_raw, enquiry.phone_invalid) == (None, "call me maybe 123", True)
    assert session.get(Lead, enquiry.lead_id).phone is None


def test_attribution_copied_from_the_visit(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Google Ads")
    visit = VisitorSession(site_id=site.id, source_id=ads.id, utm_source="google", utm_medium="cpc",
                           utm_campaign="brand", gclid="gc-1", ga_client_id="GA1.2.3", ym_client_id="ym-9",
                           keyword="buy sofa", ip="203.0.113.7", user_agent="Firefox")
    session.add(visit)
    session.flush()
    enquiry = record_enquiry(session, site, "form", at=T0, phone=CALLER, visitor_session=visit,
                             page_url="https://shop.example/contact", utm_content="banner-2")
    session.commit()
    assert enquiry.source_id == ads.id and enquiry.session_id == visit.id
    assert (enquiry.utm_source, enquiry.utm_medium, enquiry.utm_campaign, enquiry.utm_content) == (
        "google", "cpc", "brand", "banner-2")
    assert (enquiry.gclid, enquiry.ga_client_id, enquiry.ym_client_id, enquiry.keyword) == (
        "gc-1", "GA1.2.3", "ym-9", "buy sofa")
    lead = session.get(Lead, enquiry.lead_id)
    assert lead.source_id == ads.id and lead.session_id == visit.id


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"channel": "fax", "phone": CALLER}, "channel"),
    ({"channel": "form", "name": "Only a name"}, "phone"),
])
def test_bad_input_is_refused_on_its_field(session, kwargs, field):
    site = add_site(session)
    kwargs = dict(kwargs)
    channel = kwargs.pop("channel")
    with pytest.raises(LeadError) as error:
        record_enquiry(session, site, channel, at=T0, **kwargs)
    assert error.value.field == field
    session.rollback()
    assert session.scalar(select(Lead.id)) is None


def test_an_e_mail_that_is_not_one_is_kept_flagged_and_never_merges(session):
    """A typo in a form's e-mail field loses nothing: the enquiry is kept with the text as typed,
    flagged, and the text is never a key (two forms with the same typo are two leads)."""
    site = add_site(session)
    with_phone = record_enquiry(session, site, "form", at=T0, phone=CALLER, email="ivan.mail.ru")
    assert (with_phone.email, with_phone.email_invalid, with_phone.phone) == ("ivan.mail.ru", True, CALLER)
    assert session.get(Lead, with_phone.lead_id).email is None
    only = record_enquiry(session, site, "form", at=T0, email="<b>ivan</b>")
    again = record_enquiry(session, site, "form", at=T0 + dt.timedelta(minutes=1), email="<b>ivan</b>")
    assert only.email == "<b>ivan</b>" and only.email_invalid
    assert only.lead_id != again.lead_id and only.lead_id != with_phone.lead_id
    good = record_enquiry(session, site, "form", at=T0, email="Ivan@Mail.ru")
    assert (good.email, good.email_invalid) == ("ivan@mail.ru", False)


def test_naive_time_refused(session):
    site = add_site(session)
    with pytest.raises(LeadError):
        record_enquiry(session, site, "form", at=dt.datetime(2026, 1, 1), phone=CALLER)
