"""Reports count real leads: one per customer in the period of its first enquiry, merged ones left
out, deals and revenue from set_state; split by channel; callbacks count as "called back"."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from astertrack.db.models import Call, CallbackRequest, Lead
from astertrack.leads.deals import set_state
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.merging import merge_leads
from astertrack.reporting import reports
from astertrack.samples.factories import add_site, add_static_source

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PERIOD = reports.ReportFilter(start=T0 - dt.timedelta(days=1), end=T0 + dt.timedelta(days=10))


def _call(session, site, at, caller, source, **fields):
    values = {"outcome": "answered", "talk_seconds": 60, **fields}
    call = Call(site_id=site.id, caller_number=caller, started_at=at, state="finished", source_id=source.id, **values)
    session.add(call)
    session.flush()
    return call


def test_sources_report_counts_leads_deals_revenue_and_splits_by_channel(session):
    site = add_site(session)
    ads, seo = add_static_source(session, site, "Ads"), add_static_source(session, site, "SEO")
    # customer 1: a call, then a form and another call (repeats), then won
    a = record_enquiry(session, site, "call", at=T0, call=_call(session, site, T0, "+79160000001", ads))
    record_enquiry(session, site, "form", at=T0 + dt.timedelta(hours=2), phone="+79160000001", source_id=ads.id)
    record_enquiry(session, site, "call", at=T0 + dt.timedelta(days=1),
                   call=_call(session, site, T0 + dt.timedelta(days=1), "+79160000001", ads))
    set_state(session, session.get(Lead, a.lead_id), "won", amount="1000")
    # customer 2: a form only (no call at all) from SEO, won too
    b = record_enquiry(session, site, "form", at=T0, email="b@example.com", source_id=seo.id)
    set_state(session, session.get(Lead, b.lead_id), "won", amount="250.50")
    # customers 3 and 4: calls from Ads, then merged by hand: one customer
    c = record_enquiry(session, site, "call", at=T0, call=_call(session, site, T0, "+79160000003", ads))
    d = record_enquiry(session, site, "call", at=T0, call=_call(session, site, T0, "+79160000004", ads))
    merge_leads(session, session.get(Lead, c.lead_id), session.get(Lead, d.lead_id))
    # a lead from before the period: its repeat in the period is a unique lead, not a new one
    old = T0 - dt.timedelta(days=5)
    record_enquiry(session, site, "call", at=old, call=_call(session, site, old, "+79160000005", seo))
    record_enquiry(session, site, "call", at=T0 + dt.timedelta(days=2),
                   call=_call(session, site, T0 + dt.timedelta(days=2), "+79160000005", seo))
    session.commit()

    data = reports.calls_by(session, PERIOD, "source")
    rows = {r["label"]: r for r in data["rows"]}
    assert (rows["Ads"]["total"], rows["Ads"]["leads"], rows["Ads"]["unique_leads"]) == (4, 2, 2)
    assert (rows["Ads"]["deals"], rows["Ads"]["revenue"]) == (1, Decimal("1000.00"))
    # SEO: the form-only lead appears although SEO has one call only (the old customer's repeat)
    assert (rows["SEO"]["total"], rows["SEO"]["leads"], rows["SEO"]["unique_leads"]) == (1, 1, 2)
    assert rows["SEO"]["revenue"] == Decimal("250.50")
    totals = data["totals"]
    assert (totals["leads"], totals["unique_leads"], totals["deals"], totals["revenue"]) == (
        3, 4, 2, Decimal("1250.50"))

    by_channel = {r["key"]: r for r in reports.calls_by(session, PERIOD, "lead_channel")["rows"]}
    assert (by_channel["call"]["leads"], by_channel["form"]["leads"]) == (2, 1)
    assert by_channel["form"]["total"] == 0 and by_channel["form"]["unique_leads"] == 2  # customer 1's form too
    forms_only = reports.calls_by(session, reports.ReportFilter(PERIOD.start, PERIOD.end, lead_channel="form"))
    assert forms_only["totals"]["leads"] == 1 and forms_only["totals"]["total"] == 0

    funnel = {r["label"]: r for r in reports.funnel(session, PERIOD)["rows"]}
    assert (funnel["Ads"]["leads"], funnel["Ads"]["deals"], funnel["Ads"]["revenue"]) == (2, 1, Decimal("1000.00"))


def test_missed_call_called_back_by_astertrack(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Ads")
    missed = _call(session, site, T0, "+79160000009", ads, outcome="missed")
    callback_call = _call(session, site, T0 + dt.timedelta(minutes=4), "+79160000009", ads,
                          lead_channel="missed_call_callback", outcome="missed")  # the manager's leg connected,
    session.add(CallbackRequest(site_id=site.id, kind="missed_call_callback", phone="+79160000009",  # visitor's not
                                missed_call_id=missed.id, call_id=callback_call.id, state="connected"))
    session.commit()
    result = reports.missed_calls(session, PERIOD)
    assert result["total"] == 1  # the callback attempt is not a missed customer
    [row] = result["rows"]
    assert row["id"] == missed.id and row["callback_seconds"] == 240
    assert result["called_back"] == 1


def test_a_tag_filter_counts_only_the_leads_a_tagged_call_made(session):
    """The review filters are about calls: narrowed to tagged calls, the report's leads are the
    leads those calls made, and a lead that only a form made leaves the rows."""
    import dataclasses

    from astertrack.review.actions import add_tag

    site = add_site(session)
    ads, seo = add_static_source(session, site, "Ads"), add_static_source(session, site, "SEO")
    tagged = _call(session, site, T0, "+79160000011", ads)
    record_enquiry(session, site, "call", at=T0, call=tagged)
    record_enquiry(session, site, "call", at=T0, call=_call(session, site, T0, "+79160000012", ads))
    record_enquiry(session, site, "form", at=T0, email="form-only@example.com", source_id=seo.id)
    add_tag(session, tagged, "price question")
    session.commit()

    everything = {r["label"]: r["leads"] for r in reports.calls_by(session, PERIOD, "source")["rows"]}
    assert everything == {"Ads": 2, "SEO": 1}
    narrowed = reports.calls_by(session, dataclasses.replace(PERIOD, tag="price question"), "source")
    assert {r["label"]: (r["total"], r["leads"], r["unique_leads"]) for r in narrowed["rows"]} == {"Ads": (1, 1, 1)}
    assert (narrowed["totals"]["leads"], narrowed["totals"]["unique_leads"]) == (1, 1)
