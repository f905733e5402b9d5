"""``ingest.store`` on the request's connection, on SQLite and PostgreSQL: a batch that fits is
written whole (page views and actions, fields left out stored as NULL), on PostgreSQL in one
statement (one round trip a batch: the journey benchmark's p99 is mostly waiting for wake-ups);
a batch that does not fit whole stores what the cap leaves, and an unknown session nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, func, select

from astertrack.db.models import PageView, VisitorAction, VisitorSession
from astertrack.journey import ingest
from astertrack.samples.factories import add_site

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _visit(session):
    site = add_site(session)
    visit = VisitorSession(site_id=site.id, first_seen=NOW, last_seen=NOW)
    session.add(visit)
    session.commit()
    return site, visit


def _statements(conn) -> list[str]:
    seen: list[str] = []
    event.listen(conn, "before_cursor_execute", lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


def _count(session, model, visit):
    return session.scalar(select(func.count()).select_from(model).where(model.session_id == visit.id))


def test_a_batch_that_fits_is_written_whole_and_in_one_statement_on_postgresql(session):
    site, visit = _visit(session)
    # no title, referrer, seconds or target anywhere: whole columns of NULLs
    batch = ingest.parse_batch([{"t": "p", "id": "p1", "u": "https://x.example/a"},
                                {"t": "p", "id": "p2", "d": 1000, "u": "https://x.example/b"},
                                {"t": "a", "id": "c1", "k": "tel_link"}], NOW)
    conn = session.connection()
    seen = _statements(conn)
    stored = ingest.store(conn, site.id, visit.public_id, batch)
    session.commit()
    assert (stored.session_id, stored.pageviews, stored.actions, stored.refused) == (visit.id, 2, 1, 0)
    if conn.dialect.name == "postgresql":
        assert len(seen) == 1, seen
    views = session.scalars(select(PageView).where(PageView.session_id == visit.id).order_by(PageView.at)).all()
    assert [(v.client_key, v.url, v.title, v.seconds_on_page, v.site_id) for v in views] == [
        ("p2", "https://x.example/b", None, None, site.id), ("p1", "https://x.example/a", None, None, site.id)]
    action = session.scalars(select(VisitorAction).where(VisitorAction.session_id == visit.id)).one()
    assert (action.kind, action.target, action.at) == ("tel_link", None, NOW)
    session.refresh(visit)
    assert visit.journey_events == 3


@pytest.mark.parametrize("room", [0, 2])
def test_a_batch_past_the_cap_stores_what_fits_and_an_unknown_session_nothing(session, room):
    site, visit = _visit(session)
    visit.journey_events = 10 - room
    session.commit()
    batch = ingest.parse_batch([{"t": "p", "id": f"p{i}", "u": f"https://x.example/{i}"} for i in range(3)]
                               + [{"t": "a", "id": "c1", "k": "tel_link"}], NOW)
    conn = session.connection()
    stored = ingest.store(conn, site.id, visit.public_id, batch, cap=10)
    assert (stored.pageviews, stored.actions, stored.refused) == (room, 0, 4 - room)
    with pytest.raises(ingest.BatchError) as refused:
        ingest.store(conn, site.id, "no-such-session", batch, cap=10)
    session.commit()
    assert refused.value.status == 404
    assert (_count(session, PageView, visit), _count(session, VisitorAction, visit)) == (room, 0)
    session.refresh(visit)
    assert visit.journey_events == 10
