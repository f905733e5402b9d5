"""The missed-calls report counts a manager's own answered outbound call to the number as calling
back (page and CSV read the same ``missed_select``); an unanswered dial, or one before the missed
call, does not."""

from __future__ import annotations

import datetime as dt

from astertrack.db.models import Call, Manager, OutboundCall
from astertrack.reporting import reports
from astertrack.samples.factories import add_site, add_static_source

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PERIOD = reports.ReportFilter(start=T0 - dt.timedelta(days=1), end=T0 + dt.timedelta(days=10))


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def missed(session, site, source, at, number) -> Call:
    call = Call(site_id=site.id, source_id=source.id, caller_number=number, started_at=at, state="finished",
                outcome="missed", missed_reason="no_answer", wait_seconds=20)
    session.add(call)
    session.flush()
    return call


def dial(session, manager, at, number, *, answered_after: float | None, linkedid: str) -> None:
    session.add(OutboundCall(node="pbx1", linkedid=linkedid, manager_id=manager.id, endpoint=manager.endpoint,
                             number=number, number_raw=number.lstrip("+"), started_at=at,
                             answered_at=at + dt.timedelta(seconds=answered_after) if answered_after is not None
                             else None, ended_at=at + dt.timedelta(seconds=60),
                             disposition="answered" if answered_after is not None else "noanswer"))


def test_an_answered_manager_dial_after_the_missed_call_is_called_back_with_its_delay(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Ads")
    anna = Manager(name="Anna", endpoint="PJSIP/101", extension="101")
    session.add(anna)
    session.flush()
    reached = missed(session, site, ads, T0, "+79161112233")
    tried = missed(session, site, ads, minutes(1), "+79161112244")
    dial(session, anna, minutes(-30), "+79161112233", answered_after=3, linkedid="before")  # before: no
    dial(session, anna, minutes(2), "+79161112233", answered_after=None, linkedid="no-answer-1")  # not answered
    dial(session, anna, minutes(7), "+79161112233", answered_after=4, linkedid="reached")  # this one
    dial(session, anna, minutes(9), "+79161112233", answered_after=2, linkedid="again")  # later: not the first
    dial(session, anna, minutes(3), "+79161112244", answered_after=None, linkedid="no-answer-2")
    session.commit()

    result = reports.missed_calls(session, PERIOD)
    rows = {row["id"]: row for row in result["rows"]}
    assert rows[reached.id]["callback_at"] == minutes(7)  # the dial's start, as for any call back
    assert rows[reached.id]["callback_seconds"] == 420
    assert rows[tried.id]["callback_at"] is None and rows[tried.id]["callback_seconds"] is None
    assert (result["total"], result["called_back"], result["never_reached"]) == (2, 1, 1)
    assert result["median_callback_seconds"] == 420
    # the CSV export streams the same query
    assert {r["id"]: r["callback_seconds"] for r in reports.iter_missed(session, PERIOD)} == {reached.id: 420,
                                                                                            tried.id: None}


def test_the_earliest_of_a_return_call_and_a_manager_dial_counts(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Ads")
    anna = Manager(name="Anna", endpoint="PJSIP/101", extension="101")
    session.add(anna)
    session.flush()
    first = missed(session, site, ads, T0, "+79161112233")
    session.add(Call(site_id=site.id, source_id=ads.id, caller_number="+79161112233", started_at=minutes(10),
                     state="finished", outcome="answered", talk_seconds=30))  # the customer rang again
    dial(session, anna, minutes(5), "+79161112233", answered_after=3, linkedid="dial")
    session.commit()
    (row,) = reports.missed_calls(session, PERIOD)["rows"]
    assert (row["id"], row["callback_seconds"]) == (first.id, 300)

    session.query(OutboundCall).delete()
    dial(session, anna, minutes(15), "+79161112233", answered_after=3, linkedid="late-dial")
    session.commit()
    (row,) = reports.missed_calls(session, PERIOD)["rows"]
    assert row["callback_seconds"] == 600  # the return call came first
