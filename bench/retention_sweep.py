#!/usr/bin/env python3
"""Retention sweep throughput: how long the nightly job takes and how much it frees.

Seeds a throw-away database (SQLite by default, ``--db-url`` for PostgreSQL) with one site
keeping 30 days of calls and 7 days of recordings, ``--calls`` calls spread over 90 days
(each with ``--events`` raw AMI events and a small recording file), and ``--sessions``
visitor sessions; then runs the real sweeper and times it.  The batch size is the shipped
default, so the live daemons never wait on one long delete transaction.

Run from the repo root:  python bench/retention_sweep.py [--db-url URL]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, inspect, select  # noqa: E402

from astertrack.db.engine import make_engine, make_session_factory  # noqa: E402
from astertrack.db.models import Base, Call, CallEvent, VisitorSession, new_uid  # noqa: E402
from astertrack.ops.retention import Sweeper  # noqa: E402
from astertrack.routing.recording import recording_name  # noqa: E402
from astertrack.samples.factories import add_site  # noqa: E402


def seed(factory, recdir: Path, calls: int, events: int, sessions: int, now: dt.datetime, rng: random.Random):
    with factory() as session:
        site = add_site(session, "bench", calls_retention_days=30, recordings_retention_days=7,
                        sessions_retention_days=30)
        session.commit()
        site_id = site.id
    rows = []
    for _ in range(calls):
        started = now - dt.timedelta(seconds=rng.uniform(0, 90 * 86400))
        uid = new_uid()
        name = recording_name(uid, started) + ".wav"
        path = recdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 2044)
        rows.append({"call_uid": uid, "site_id": site_id, "started_at": started, "state": "finished",
                     "outcome": "answered", "recording_path": name, "recording_state": "kept", "node": "pbx1",
                     "routing_attempts": 0, "transferred": False})
    with factory() as session:
        for start in range(0, len(rows), 1000):
            session.execute(insert(Call), rows[start:start + 1000])
        session.commit()
        ids = list(session.scalars(select(Call.id)))
        event_rows = [{"call_id": call_id, "name": "Hangup", "node": "pbx1", "headers": {"Uniqueid": "1.1"},
                       "received_at": now} for call_id in ids for _ in range(events)]
        for start in range(0, len(event_rows), 5000):
            session.execute(insert(CallEvent), event_rows[start:start + 5000])
        visits = [{"public_id": new_uid(), "site_id": site_id, "first_seen": now - dt.timedelta(days=d),
                   "last_seen": now - dt.timedelta(days=d), "is_bot": False, "page_views": 1, "interacted": False}
                  for d in (rng.uniform(0, 90) for _ in range(sessions))]
        for start in range(0, len(visits), 5000):
            session.execute(insert(VisitorSession), visits[start:start + 5000])
        session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=50_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="astertrack-bench-retention-"))
    try:
        url = args.db_url or f"sqlite:///{work / 'bench.db'}"
        engine = make_engine(url)
        if args.db_url and inspect(engine).get_table_names():
            raise SystemExit(f"{args.db_url} is not empty: the bench creates and drops its own tables, give it an "
                             "empty database")
        Base.metadata.create_all(engine)
        factory = make_session_factory(engine)
        recdir = work / "monitor"
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        seed(factory, recdir, args.calls, args.events, args.sessions, now, random.Random(7))
        seeded = time.perf_counter() - started
        print(f"seeded {args.calls} calls, {args.calls * args.events} events, {args.sessions} sessions "
              f"in {seeded:.1f} s", file=sys.stderr)
        started = time.perf_counter()
        report = Sweeper(factory, recdir, now=now).run()
        elapsed = time.perf_counter() - started
        with factory() as session:
            left = session.scalar(select(func.count()).select_from(Call))
        totals = report.totals
        result = {
            "bench": "retention_sweep", "backend": engine.dialect.name, "calls": args.calls,
            "events_per_call": args.events, "sessions": args.sessions, "seconds": round(elapsed, 2),
            "calls_deleted": totals["calls_deleted"], "recordings_deleted": totals["recordings_deleted"],
            "sessions_deleted": totals["sessions_deleted"], "bytes_freed": totals["bytes_freed"],
            "calls_left": left, "calls_deleted_per_s": round(totals["calls_deleted"] / elapsed),
            "rows_deleted_per_s": round((totals["calls_deleted"] * (1 + args.events) + totals["sessions_deleted"])
                                        / elapsed),
        }
        if args.db_url:
            Base.metadata.drop_all(engine)  # it was empty before the bench
        engine.dispose()
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
