"""Archived settings leave the snippet (issue #21 §1), through the real tracker over HTTP: an
archived site's key gets no number, an archived source no longer matches, an archived pool or
pool number is never handed out."""

from __future__ import annotations

from sqlalchemy import select

from astertrack.db.models import NumberAssignment, NumberPool, Site, Source, TrackingNumber
from astertrack.db.types import utcnow
from astertrack.samples.factories import DEFAULT_NUMBER, add_static_source, pooled_site
from tests.tracker.conftest import serve
from tests.tracker.test_api import start

EMAIL = [{"field": "utm_medium", "op": "equals", "value": "email"}]


def _archive(session, model, row_id: int) -> None:
    session.get(model, row_id).archived_at = utcnow()
    session.commit()


def test_an_archived_site_gets_no_numbers(session, tracker_app):
    site = pooled_site(session, 2)
    _archive(session, Site, site.id)
    with serve(tracker_app(site_cache_seconds=0)) as url:
        status, body, _ = start(url, site.public_key, visitor_id="v1")
    assert status == 404 and "number" not in body
    assert session.scalar(select(NumberAssignment.id)) is None


def test_an_archived_source_no_longer_matches_and_a_restore_brings_it_back(session, tracker_app):
    site = pooled_site(session, 2)
    email = add_static_source(session, site, "Email", ["+74958880000"], priority=10, match_rules=EMAIL)
    session.commit()
    with serve(tracker_app(site_cache_seconds=0)) as url:
        _, shown, _ = start(url, site.public_key, visitor_id="a", utm_medium="email")
        assert (shown["kind"], shown["number"]) == ("static", "+74958880000")
        _archive(session, Source, email.id)
        _, archived, _ = start(url, site.public_key, visitor_id="b", utm_medium="email")
        assert archived["kind"] == "pool" and archived["number"] != "+74958880000"
        session.get(Source, email.id).archived_at = None
        session.commit()
        _, restored, _ = start(url, site.public_key, visitor_id="c", utm_medium="email")
        assert (restored["kind"], restored["number"]) == ("static", "+74958880000")


def test_archived_pool_numbers_and_pools_are_never_handed_out(session, tracker_app):
    site = pooled_site(session, 3)
    numbers = session.scalars(select(TrackingNumber).where(TrackingNumber.site_id == site.id)
                              .order_by(TrackingNumber.id)).all()
    _archive(session, TrackingNumber, numbers[0].id)
    _archive(session, TrackingNumber, numbers[1].id)
    with serve(tracker_app(site_cache_seconds=0)) as url:
        _, first, _ = start(url, site.public_key, visitor_id="a")
        assert (first["kind"], first["number"]) == ("pool", numbers[2].number)
        _, second, _ = start(url, site.public_key, visitor_id="b")  # the pool is full: the fallback
        assert second["number"] not in {n.number for n in numbers}
        _archive(session, NumberPool, numbers[0].pool_id)
        _, third, _ = start(url, site.public_key, visitor_id="c")
        assert (third["kind"], third["number"]) == ("default", DEFAULT_NUMBER)
