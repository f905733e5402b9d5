"""Page views and visitor actions leave after the site's page-view retention (the sessions stay:
calls and leads point at them); a site without it keeps them as long as their session."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from astertrack.db.models import PageView, Site, VisitorAction, VisitorSession
from astertrack.ops.retention import Sweeper
from astertrack.samples.factories import add_site

NOW = dt.datetime(2026, 11, 23, 3, 30, tzinfo=dt.UTC)


def _journey(session, site, age_days, n=3):
    at = NOW - dt.timedelta(days=age_days)
    visit = VisitorSession(site_id=site.id, first_seen=at, last_seen=at)
    session.add(visit)
    session.flush()
    for i in range(n):
        session.add(PageView(session_id=visit.id, site_id=site.id, client_key=f"p{i}", at=at, url="https://x.example/"))
        session.add(VisitorAction(session_id=visit.id, site_id=site.id, client_key=f"a{i}", at=at, kind="tel_link"))
    return visit


def _count(session, model, site):
    return session.scalar(select(func.count()).select_from(model).where(model.site_id == site.id))


def test_page_views_go_after_the_sites_days_and_sessions_stay(session_factory, tmp_path):
    with session_factory() as session:
        short = add_site(session, "short", pageviews_retention_days=7)
        keep = add_site(session, "keep")
        _journey(session, short, 10)
        recent = _journey(session, short, 2)
        _journey(session, keep, 400)
        session.commit()
        short_id, keep_id, recent_id = short.id, keep.id, recent.id

    dry = Sweeper(session_factory, tmp_path, now=NOW, batch_size=2, dry_run=True).run()
    assert dry.totals["pageviews_deleted"] == 6
    report = Sweeper(session_factory, tmp_path, now=NOW, batch_size=2).run()
    assert {s.site_id: s.pageviews_deleted for s in report.sites}[short_id] == 6
    assert report.totals["pageviews_deleted"] == 6

    with session_factory() as session:
        assert {pv.session_id for pv in session.scalars(select(PageView).where(PageView.site_id == short_id))} == {
            recent_id}
        assert session.scalar(select(func.count()).select_from(VisitorSession)
                              .where(VisitorSession.site_id == short_id)) == 2  # sessions stay
        keep = session.get(Site, keep_id)
        assert _count(session, PageView, keep) == 3 and _count(session, VisitorAction, keep) == 3


def test_a_session_swept_takes_its_page_views_with_it(session_factory, tmp_path):
    with session_factory() as session:
        site = add_site(session, "s", sessions_retention_days=30)
        _journey(session, site, 40)
        session.commit()
        site_id = site.id
    Sweeper(session_factory, tmp_path, now=NOW).run()
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(PageView).where(PageView.site_id == site_id)) == 0
        assert session.scalar(select(func.count()).select_from(VisitorAction).where(VisitorAction.site_id == site_id)) == 0
