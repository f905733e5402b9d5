"""200 visitors at once against a 20-number pool, over real HTTP, on both databases."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from astertrack.db.models import NumberAssignment, OverflowEvent, VisitorSession
from astertrack.samples.factories import FALLBACK_NUMBER, pooled_site
from tests.tracker.conftest import post, serve

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
VISITORS, POOL = 200, 20


@pytest.mark.slow
def test_200_concurrent_visitors_share_a_20_number_pool_exactly(session, tracker_app):
    site = pooled_site(session, POOL)
    barrier = threading.Barrier(VISITORS)

    def visit(i: int):
        barrier.wait()
        return post(f"{url}/v/start", {"k": site.public_key, "visitor_id": f"visitor-{i}",
                                       "utm_source": f"src{i % 7}"}, {"User-Agent": UA}, timeout=60)

    with serve(tracker_app()) as url, ThreadPoolExecutor(VISITORS) as executor:
        results = list(executor.map(visit, range(VISITORS)))

    assert [status for status, _, _ in results] == [200] * VISITORS, [b for s, b, _ in results if s != 200][:3]
    bodies = [body for _, body, _ in results]
    pool_numbers = [b["number"] for b in bodies if b["kind"] == "pool"]
    fallbacks = [b for b in bodies if b["kind"] == "fallback"]
    assert len(pool_numbers) == POOL and len(set(pool_numbers)) == POOL
    assert len(fallbacks) == VISITORS - POOL and all(b["number"] == FALLBACK_NUMBER for b in fallbacks)
    assert len({b["sid"] for b in bodies}) == VISITORS
    assert session.scalar(select(func.count()).select_from(OverflowEvent)) == VISITORS - POOL
    assert session.scalar(select(func.count()).select_from(VisitorSession)) == VISITORS
    live = session.execute(select(NumberAssignment.number_id).where(NumberAssignment.released_at.is_(None))).all()
    assert len(live) == POOL and len(set(live)) == POOL
