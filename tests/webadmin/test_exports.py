"""CSV exports are complete: over 10,000 calls (the old silent cap) and over 500 missed calls (the
old page cap) come out whole, row for row what the page counts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from sqlalchemy import insert

from astertrack.db.models import Call
from astertrack.db.types import utcnow
from astertrack.samples.factories import add_site

CALLS = 10_250
MISSED_EVERY = 7  # one call in 7 is missed: 1,465 missed calls


def _bulk_calls(db) -> int:
    site = add_site(db, "Bulk", domains=["bulk.example"], timezone="UTC")  # beside the seed's site
    db.commit()
    now = utcnow()
    rows = [{"site_id": site.id, "caller_number": f"+7916{i:07d}", "started_at": now - dt.timedelta(minutes=1 + i),
             "state": "finished", "outcome": "missed" if i % MISSED_EVERY == 0 else "answered",
             "missed_reason": "no_answer" if i % MISSED_EVERY == 0 else None, "wait_seconds": 5.0,
             "talk_seconds": None if i % MISSED_EVERY == 0 else 30.0} for i in range(CALLS)]
    db.execute(insert(Call), rows)
    db.commit()
    return site.id


def _rows(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def test_call_log_export_is_complete_and_matches_the_page_count(client, auth, data, db):
    site = _bulk_calls(db)
    auth.login("admin")
    page = client.get(f"/calls/?site={site}").get_data(as_text=True)
    count = int(re.search(r'id="call-count">([\d,\u00a0 ]+) calls', page).group(1).replace(",", "").replace("\u00a0", ""))
    assert count == CALLS
    rows = _rows(client.get(f"/calls/?site={site}&format=csv"))
    assert len(rows) == count and len({r["id"] for r in rows}) == count
    assert {"tags", "handled_at", "handled_by", "score"} <= set(rows[0])
    assert rows[0]["started_at"] > rows[-1]["started_at"]  # newest first, as on the page


def test_missed_export_has_every_missed_call_the_page_counts(client, auth, data, db):
    site = _bulk_calls(db)
    auth.login("admin")
    missed = len(range(0, CALLS, MISSED_EVERY))
    page = client.get(f"/reports/missed?site={site}").get_data(as_text=True)
    assert f"Showing the latest 500 of {missed}" in page
    rows = _rows(client.get(f"/reports/missed?site={site}&format=csv"))
    assert len(rows) == missed
    log = _rows(client.get(f"/calls/?site={site}&outcome=missed_any&format=csv"))
    assert {r["id"] for r in log} == {r["id"] for r in rows}
