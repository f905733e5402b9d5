"""The admin's side of attribution confidence (#24): the call card says how sure and why, and one
minimum-confidence filter narrows the call log and the reports alike."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from astertrack.db.models import Call, User
from astertrack.reporting import reports
from astertrack.routing import attribution
from webadmin.labels import VOCABULARIES


def _set(db, call_id: int, **values) -> None:
    db.query(Call).filter(Call.id == call_id).update(values)
    db.commit()


def test_every_reason_has_words(app):
    assert [r for r in attribution.REASONS if r not in VOCABULARIES["attribution_reason"]] == []
    for kind in ("fallback", "non_direct"):
        assert kind in VOCABULARIES["attribution_kind"]


def test_call_card_says_how_sure_and_why_in_english_and_russian(client, auth, data, db):
    _set(db, data.answered, attribution_kind="dynamic", attribution_confidence=0.4,
         attribution_reason="reused_contested", attribution_candidates=2)
    auth.login("super")

    page = client.get(f"/calls/{data.answered}", headers={"Accept-Language": "en"}).data.decode()

    assert "a guess" in page and "40.0%" in page
    assert "either could be calling" in page and "2 candidate visits" in page
    reason = page.split('id="attribution-reason"')[1].split("</dd>")[0]
    assert "taken over" not in reason  # the contested text, not the plain reuse one
    winner = page.split('id="winning-visit"')[1].split("</dd>")[0]
    session = db.get(Call, data.answered).session
    assert session.public_id in winner

    db.get(User, data.users["super"]).locale = "ru"
    db.commit()
    page = client.get(f"/calls/{data.answered}").data.decode()
    assert "предположение" in page and "позвонить мог любой из двух" in page and "2 визита-кандидата" in page


def test_call_card_of_a_fallback_call_without_a_visit_says_how_many_candidates(client, auth, data, db):
    _set(db, data.missed, attribution_kind="unknown", attribution_confidence=0.0,
         attribution_reason="fallback_ambiguous", attribution_candidates=3, session_id=None)
    auth.login("super")

    page = client.get(f"/calls/{data.missed}", headers={"Accept-Language": "en"}).data.decode()

    assert "not attributed" in page and "shown to several visits lately" in page and "3 candidate visits" in page


def test_call_card_of_a_last_non_direct_call_names_the_ad_visit(client, auth, data, db):
    _set(db, data.answered, attribution_kind="non_direct", attribution_confidence=0.9,
         attribution_reason="last_non_direct", attribution_candidates=1)
    auth.login("super")

    page = client.get(f"/calls/{data.answered}", headers={"Accept-Language": "en"}).data.decode()

    assert "last advertising visit" in page and "very likely" in page
    assert "candidate" not in page.split('id="attribution-reason"')[1].split("</dd>")[0]


def _confidences(db, data) -> None:
    _set(db, data.answered, attribution_confidence=1.0)
    _set(db, data.missed, attribution_confidence=0.3)
    _set(db, data.callback, attribution_confidence=0.6)


def test_confidence_filter_narrows_the_call_log(client, auth, data, db):
    _confidences(db, data)
    auth.login("admin")
    every = reports.call_log_count(db, reports.CallLogFilter())

    assert reports.call_log_count(db, reports.CallLogFilter(min_confidence=0.8)) == every - 2
    page = client.get("/calls/?min_confidence=0.8").data.decode()
    assert f"/calls/{data.answered}\"" in page
    assert f"/calls/{data.missed}\"" not in page and f"/calls/{data.callback}\"" not in page
    assert 'value="0.8" selected' in page
    # a percentage means the same
    assert client.get("/calls/?min_confidence=80").data.decode().count("/calls/") == page.count("/calls/")


def test_confidence_filter_narrows_the_reports_the_same_way(client, auth, data, db):
    _confidences(db, data)
    auth.login("admin")
    now = dt.datetime.now(dt.UTC)
    period = {"start": now - dt.timedelta(days=30), "end": now + dt.timedelta(days=1)}

    everything = reports.calls_by(db, reports.ReportFilter(**period))["totals"]["total"]
    sure = reports.calls_by(db, reports.ReportFilter(**period, min_confidence=0.5))["totals"]["total"]

    expected = db.execute(select(Call.id).where(Call.started_at >= period["start"],
                                                Call.attribution_confidence >= 0.5)).all()
    assert sure == len(expected) < everything
    page = client.get("/reports/sources?min_confidence=0.5").data.decode()
    assert 'value="0.5" selected' in page
    assert "min_confidence=0.5" in page  # the rows open the log narrowed the same way
    assert client.get("/reports/sources?min_confidence=0.5&format=csv").status_code == 200


def test_a_bad_confidence_is_a_clear_400(client, auth, data):
    auth.login("admin")
    for bad in ("lots", "-1", "150", "nan"):
        for page in ("/calls/", "/reports/sources"):
            response = client.get(f"{page}?min_confidence={bad}", headers={"Accept-Language": "en"})
            assert response.status_code == 400, (page, bad)
            assert b"is not a confidence" in response.data
