"""journey_for_call / journey_for_lead on both databases: visits in order with their pages and
actions, linking by visitor id, GA id, Metrica id and by phone, and the bounds."""

from __future__ import annotations

import datetime as dt

from astertrack.db.models import Call, Enquiry, Lead, PageView, VisitorAction, VisitorSession
from astertrack.journey import journey_for_call, journey_for_lead
from astertrack.samples.factories import add_site, add_static_source

NOW = dt.datetime(2026, 5, 10, 12, 0, tzinfo=dt.UTC)


def _visit(db, site, at, *, pages=(), actions=(), **fields):
    visit = VisitorSession(site_id=site.id, first_seen=at, last_seen=at + dt.timedelta(minutes=5), **fields)
    db.add(visit)
    db.flush()
    for i, (url, secs) in enumerate(pages):
        db.add(PageView(session_id=visit.id, site_id=site.id, client_key=f"p{i}", at=at + dt.timedelta(seconds=60 * i),
                        url=url, title=f"T{i}", seconds_on_page=secs))
    for i, (kind, target) in enumerate(actions):
        db.add(VisitorAction(session_id=visit.id, site_id=site.id, client_key=f"a{i}",
                             at=at + dt.timedelta(seconds=60 * i + 30), kind=kind, target=target))
    db.flush()
    return visit


def _call(db, site, visit, at=NOW, number="+79991234567"):
    call = Call(site_id=site.id, session_id=visit.id if visit else None, caller_number=number, started_at=at,
                did="+74950000001")
    db.add(call)
    db.flush()
    return call


def test_call_journey_lists_visits_pages_and_actions_in_order_linked_by_visitor_id(session):
    site = add_site(session, attribution_window_days=30)
    source = add_static_source(session, site, "Yandex Direct")
    first = _visit(session, site, NOW - dt.timedelta(days=3), visitor_id="v1", utm_source="yandex",
                   utm_campaign="spring", keyword="buy sofa", source_id=source.id,
                   landing_page="https://shop.example/?utm_source=yandex&token=SECRET#x",
                   pages=[("https://shop.example/", 20), ("https://shop.example/sofas", 40)])
    second = _visit(session, site, NOW - dt.timedelta(minutes=10), visitor_id="v1",
                    pages=[("https://shop.example/a", 5), ("https://shop.example/b", 7), ("https://shop.example/c", 3)],
                    actions=[("tel_link", "tel:+74950000001")])
    stranger = _visit(session, site, NOW - dt.timedelta(days=1), visitor_id="v2", pages=[("https://shop.example/x", 1)])
    too_old = _visit(session, site, NOW - dt.timedelta(days=40), visitor_id="v1")
    call = _call(session, site, second)
    session.commit()

    journey = journey_for_call(session, call.id)

    assert [v["session_id"] for v in journey["visits"]] == [first.id, second.id]
    assert not {stranger.id, too_old.id} & {v["session_id"] for v in journey["visits"]}
    assert journey["visits"][0]["linked_by"] == "visitor_id" and journey["visits"][1]["is_anchor"]
    assert journey["visits"][0]["source"]["name"] == "Yandex Direct"
    assert journey["visits"][0]["landing_page"] == "https://shop.example/?utm_source=yandex"
    assert [p["url"] for p in journey["visits"][1]["pages"]] == [
        "https://shop.example/a", "https://shop.example/b", "https://shop.example/c"]
    assert [p["seconds_on_page"] for p in journey["visits"][0]["pages"]] == [20, 40]
    assert journey["visits"][1]["actions"][0]["kind"] == "tel_link"
    assert journey["days_since_first_visit"] == 3
    assert journey["anchor"] == {"kind": "call", "id": call.id, "at": NOW, "phone": "+79991234567"}


def test_ga_and_metrica_ids_link_sessions_of_other_browsers(session):
    site = add_site(session)
    by_ga = _visit(session, site, NOW - dt.timedelta(days=2), visitor_id="phone-browser", ga_client_id="111.222")
    by_ym = _visit(session, site, NOW - dt.timedelta(days=1), visitor_id="tablet", ym_client_id="999")
    anchor = _visit(session, site, NOW - dt.timedelta(minutes=1), visitor_id="laptop", ga_client_id="111.222",
                    ym_client_id="999")
    call = _call(session, site, anchor)
    session.commit()
    linked = {v["session_id"]: v["linked_by"] for v in journey_for_call(session, call.id)["visits"]}
    assert linked == {by_ga.id: "ga_client_id", by_ym.id: "ym_client_id", anchor.id: "call"}


def test_phone_from_a_call_joins_a_form_session_of_another_browser_and_earlier_calls_and_leads(session):
    site = add_site(session)
    call_visit = _visit(session, site, NOW - dt.timedelta(days=2), visitor_id="desktop")
    earlier = _call(session, site, call_visit, at=NOW - dt.timedelta(days=2))
    form_visit = _visit(session, site, NOW - dt.timedelta(hours=3), visitor_id="mobile",
                        pages=[("https://shop.example/contacts", 30)])
    lead = Lead(site_id=site.id, phone="+79991234567", first_channel="form", created_at=NOW - dt.timedelta(hours=3))
    session.add(lead)
    session.flush()
    session.add(Enquiry(lead_id=lead.id, site_id=site.id, channel="form", at=NOW - dt.timedelta(hours=3),
                        session_id=form_visit.id, phone="+79991234567"))
    call = _call(session, site, None)  # today's call came on a static number: no session of its own
    other = _call(session, site, None, number="+70000000000")
    session.commit()

    journey = journey_for_call(session, call.id)
    assert [v["session_id"] for v in journey["visits"]] == [call_visit.id, form_visit.id]
    assert {v["linked_by"] for v in journey["visits"]} == {"phone"}
    assert [c["id"] for c in journey["calls"]] == [earlier.id] and other.id not in [c["id"] for c in journey["calls"]]
    assert [row["id"] for row in journey["leads"]] == [lead.id]

    by_lead = journey_for_lead(session, lead.id)
    assert form_visit.id in [v["session_id"] for v in by_lead["visits"]]
    assert call_visit.id in [v["session_id"] for v in by_lead["visits"]]  # through the lead's phone
    assert lead.id not in [row["id"] for row in by_lead["leads"]]


def test_unknown_ids_and_a_call_without_site_or_session(session):
    assert journey_for_call(session, 987654) is None and journey_for_lead(session, 987654) is None
    call = Call(caller_number="+79990000000", started_at=NOW)
    session.add(call)
    session.commit()
    journey = journey_for_call(session, call.id)
    assert journey["visits"] == [] and journey["days_since_first_visit"] is None
