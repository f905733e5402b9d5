"""Report queries over a hand-built data set whose answers are known."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from astertrack.db.models import AdCost, Call, Deal, Lead, Manager, Site, Source, VisitorSession
from astertrack.db.types import utcnow
from astertrack.reporting import reports


@pytest.fixture
def world(session):
    site = Site(name="S", timezone="Europe/Moscow", target_call_seconds=60)
    session.add(site)
    session.flush()
    a = Source(site_id=site.id, name="A", channel="cpc")
    b = Source(site_id=site.id, name="B", channel="organic")
    m1, m2 = Manager(name="M1", endpoint="PJSIP/1"), Manager(name="M2", endpoint="PJSIP/2")
    session.add_all([a, b, m1, m2])
    session.flush()
    now = utcnow()
    t0 = now - dt.timedelta(days=2)

    def call(minutes, number, source, outcome, talk=None, wait=5, first=None, manager=None, routed=None, campaign=None):
        c = Call(site_id=site.id, caller_number=number, started_at=t0 + dt.timedelta(minutes=minutes), state="finished",
                 outcome=outcome, talk_seconds=talk, wait_seconds=wait, source_id=source.id if source else None,
                 is_first_call=first, manager_id=manager.id if manager else None,
                 routed_manager_id=routed.id if routed else None, utm_campaign=campaign,
                 missed_reason="no_answer" if outcome == "missed" else None)
        session.add(c)
        return c

    call(0, "+79160000001", a, "answered", talk=90, first=True, manager=m1, routed=m1, campaign="c1")   # target
    call(10, "+79160000001", a, "answered", talk=30, first=False, manager=m1, routed=m1, campaign="c1")  # short
    call(20, "+79160000002", a, "missed", wait=25, first=True, routed=m2, campaign="c2")
    call(80, "+79160000002", a, "answered", talk=61, first=False, manager=m1, routed=m2)  # call back after missed
    call(30, "+79160000003", b, "busy", wait=0, first=True, routed=m2)
    call(40, "+79160000004", b, "answered", talk=200, first=True, manager=m2, routed=m2)  # target
    call(50, None, None, None)  # hidden number, still in progress
    call(-60 * 24 * 40, "+79160000009", a, "answered", talk=100)  # outside the 30-day period
    s1 = VisitorSession(site_id=site.id, source_id=a.id, first_seen=t0)
    s2 = VisitorSession(site_id=site.id, source_id=a.id, first_seen=t0)
    bot = VisitorSession(site_id=site.id, source_id=a.id, first_seen=t0, is_bot=True)
    session.add_all([s1, s2, bot])
    lead = Lead(site_id=site.id, source_id=a.id, manager_id=m1.id, created_at=t0)
    lead2 = Lead(site_id=site.id, source_id=a.id, manager_id=m1.id, created_at=t0)
    session.add_all([lead, lead2])
    session.flush()
    session.add_all([Deal(lead_id=lead.id, status="won", revenue=Decimal("3000")),
                     Deal(lead_id=lead2.id, status="lost", revenue=Decimal("999"))])
    session.add(AdCost(source_id=a.id, day=t0.date(), amount=Decimal("1000")))
    session.commit()
    return {"site": site, "a": a, "b": b, "m1": m1, "m2": m2, "f": reports.last_days(30, tz="Europe/Moscow")}


def _row(result, label):
    return next(r for r in result["rows"] if r["label"] == label)


def test_calls_by_source_counts(session, world):
    result = reports.calls_by(session, world["f"], "source")
    a = _row(result, "A")
    assert (a["total"], a["unique"], a["answered"], a["missed"]) == (4, 2, 3, 1)
    assert a["target"] == 2 and a["unique_target"] == 2  # 90 s and 61 s >= 60 s; 30 s is not
    assert (a["first_time"], a["repeat"]) == (2, 2)
    assert a["answer_rate"] == pytest.approx(3 / 4)
    b = _row(result, "B")
    assert (b["total"], b["answered"], b["missed"], b["target"]) == (2, 1, 1, 1)
    none = _row(result, None)
    assert none["total"] == 1 and none["unique"] == 0
    totals = result["totals"]
    assert (totals["total"], totals["unique"], totals["answered"], totals["missed"]) == (7, 4, 4, 2)
    assert totals["avg_talk"] == pytest.approx((90 + 30 + 61 + 200) / 4, abs=0.1)


def test_calls_by_campaign_and_channel(session, world):
    by_campaign = reports.calls_by(session, world["f"], "campaign")
    assert _row(by_campaign, "c1")["total"] == 2 and _row(by_campaign, "c2")["missed"] == 1
    by_channel = reports.calls_by(session, world["f"], "channel")
    assert _row(by_channel, "cpc")["total"] == 4 and _row(by_channel, "organic")["total"] == 2
    with pytest.raises(ValueError):
        reports.calls_by(session, world["f"], "nonsense")


def test_filters_narrow_the_report(session, world):
    f = reports.last_days(30, tz="Europe/Moscow", source_id=world["b"].id)
    assert reports.calls_by(session, f)["totals"]["total"] == 2
    f = reports.last_days(30, tz="Europe/Moscow", manager_id=world["m1"].id)
    assert reports.calls_by(session, f)["totals"]["total"] == 3


def test_time_series_has_every_day(session, world):
    series = reports.time_series(session, world["f"], "Europe/Moscow")
    assert len(series) == 30
    assert sum(p["total"] for p in series) == 7
    assert sum(p["missed"] for p in series) == 2
    assert sum(p["target"] for p in series) == 3


def test_missed_calls_with_callback(session, world):
    result = reports.missed_calls(session, world["f"])
    assert result["total"] == 2
    by_number = {r["caller_number"]: r for r in result["rows"]}
    called_back = by_number["+79160000002"]
    assert called_back["callback_seconds"] == pytest.approx(60 * 60)
    assert by_number["+79160000003"]["callback_at"] is None
    assert result["called_back"] == 1 and result["never_reached"] == 1


def test_managers_report(session, world):
    rows = {r["name"]: r for r in reports.managers_report(session, world["f"])}
    m1, m2 = rows["M1"], rows["M2"]
    assert (m1["routed"], m1["answered"], m1["missed"]) == (2, 3, 0)
    assert m1["answer_rate"] == 1.0
    assert (m2["routed"], m2["answered"], m2["missed"]) == (4, 1, 3)  # one of them was picked up by M1
    assert m1["leads"] == 2 and m1["deals"] == 1 and m1["revenue"] == Decimal("3000")


def test_funnel_and_roi(session, world):
    result = reports.funnel(session, world["f"])
    a = next(r for r in result["rows"] if r["label"] == "A")
    assert (a["sessions"], a["calls"], a["leads"], a["deals"]) == (2, 4, 2, 1)  # the bot is not a session
    assert a["revenue"] == Decimal("3000") and a["cost"] == Decimal("1000")
    assert a["roi"] == pytest.approx(200.0)
    assert a["cost_per_call"] == pytest.approx(250.0) and a["cost_per_lead"] == pytest.approx(500.0)
    assert result["totals"]["calls"] == 7


def test_first_vs_repeat_share(session, world):
    result = reports.first_vs_repeat(session, world["f"])
    assert _row(result, "A")["first_share"] == pytest.approx(0.5)


def test_every_metric_has_a_formula():
    for key in ("total", "unique", "target", "unique_target", "answered", "missed", "answer_rate", "first_time",
                "called_back", "roi", "utilisation", "recommended"):
        assert reports.FORMULAS[key]


def test_call_log_keyset_pagination(session, world):
    site = world["site"]
    base = utcnow() - dt.timedelta(hours=1)
    same_time = base - dt.timedelta(minutes=5)
    for i in range(25):  # several calls share one timestamp: the id breaks the tie
        session.add(Call(site_id=site.id, caller_number=f"+7916555{i:04d}",
                         started_at=same_time if i % 3 == 0 else base - dt.timedelta(seconds=i), outcome="answered"))
    session.commit()
    f = reports.CallLogFilter(start=utcnow() - dt.timedelta(days=1), end=utcnow(), caller="7916555")
    seen, cursor, pages = [], None, 0
    while True:
        calls, cursor = reports.call_log(session, f, limit=7, before=cursor)
        seen.extend(c.id for c in calls)
        pages += 1
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 25 and len(set(seen)) == 25
    keys = [(c.started_at, c.id) for c in session.query(Call).filter(Call.id.in_(seen))]
    assert sorted(keys, reverse=True) == [next(k for k in keys if k[1] == i) for i in seen]
