"""The fitted model recovers known parameters from a synthetic history, within ``model.TOLERANCES``."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.db.models import Call, VisitorSession
from astertrack.samples.factories import add_dynamic_source, add_pool, add_site
from astertrack.simulation.fit import fit_model
from astertrack.simulation.generate import generate
from astertrack.simulation.model import TOLERANCES, ProductSettings, TrafficModel

KNOWN = TrafficModel(visits_per_day=250, session_median_seconds=200, session_sigma=0.8, pages_per_visit=2.5,
                     bot_share=0.08, caller_share=0.12, call_during_share=0.6, call_after_share=0.3,
                     repeat_caller_share=0.15, return_visit_share=0.0, timezone_offset_hours=3,
                     sources=(("yandex", 0.5), ("google", 0.3), (None, 0.2)))


def store_history(session, stream, heartbeat: int = 60):
    """The rows the product would keep: sessions (last seen at the last heartbeat or page load before
    the visitor left) and calls joined to their visit."""
    site = add_site(session, "history", timezone="Europe/Moscow")
    pool = add_pool(session, site, "main")
    sources = {name: add_dynamic_source(session, site, name, pool).id for name, _ in KNOWN.sources if name}
    rows = []
    for visit in stream.visits:
        seen = (visit.end - visit.start).total_seconds()
        last_seen = visit.start + dt.timedelta(seconds=seen - seen % heartbeat if not visit.is_bot else 0)
        rows.append(VisitorSession(site_id=site.id, source_id=sources.get(visit.utm_source), is_bot=visit.is_bot,
                                   first_seen=visit.start, last_seen=last_seen, page_views=visit.pages))
    session.add_all(rows)
    session.flush()
    session.add_all(Call(site_id=site.id, started_at=call.at, session_id=rows[call.visit].id,
                         caller_number=call.caller, is_first_call=call.timing != "repeat")
                    for call in stream.calls)
    session.commit()
    return site


def test_the_fitted_model_recovers_the_known_parameters_within_the_stated_tolerances(session):
    stream = generate(KNOWN, ProductSettings(), days=14, seed=5)
    site = store_history(session, stream)
    report = fit_model(session, site.id, stream.start, stream.until)
    fitted, tol = report.model, TOLERANCES
    assert report.sessions == len(stream.visits) > 3000
    assert abs(fitted.visits_per_day / KNOWN.visits_per_day - 1) <= tol.visits_per_day
    assert abs(fitted.session_median_seconds / KNOWN.session_median_seconds - 1) <= tol.session_median_seconds
    assert abs(fitted.session_sigma - KNOWN.session_sigma) <= tol.session_sigma
    assert abs(fitted.pages_per_visit / KNOWN.pages_per_visit - 1) <= tol.pages_per_visit
    assert abs(fitted.bot_share - KNOWN.bot_share) <= tol.bot_share
    assert abs(fitted.caller_share - KNOWN.caller_share) <= tol.caller_share
    assert abs(fitted.call_during_share - KNOWN.call_during_share) <= tol.call_during_share
    assert abs(fitted.repeat_caller_share - KNOWN.repeat_caller_share) <= tol.repeat_caller_share
    known_daily = [w / sum(KNOWN.daily_curve) for w in KNOWN.daily_curve]
    assert max(abs(a - b) for a, b in zip(fitted.daily_curve, known_daily, strict=True)) <= tol.curve
    known_weekly = [w / sum(KNOWN.weekly_curve) for w in KNOWN.weekly_curve]
    assert max(abs(a - b) for a, b in zip(fitted.weekly_curve, known_weekly, strict=True)) <= tol.curve
    assert fitted.timezone_offset_hours == 3
    assert dict(fitted.sources)["yandex"] == pytest.approx(0.5, abs=0.03)
    assert "tab_left_open_share" in report.defaults and "caller_share" in report.fitted


def test_too_little_history_keeps_the_defaults_and_says_so(session):
    site = add_site(session, "new")
    session.commit()
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    report = fit_model(session, site.id, now - dt.timedelta(days=7), now)
    assert report.model == TrafficModel() and report.defaults and not report.fitted
