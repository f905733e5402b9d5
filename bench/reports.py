"""Report speed on a big database: the 30-day sources report and a filtered call-log page.

Seeds N calls (default 1,000,000) and 3×N visitor sessions spread over a year, on SQLite (a
temp file) and on PostgreSQL (a throwaway database), then times the queries the web admin
runs (median of five warm runs).  Rows are inserted oldest first, as a running system
appends them.  Bulk loading uses executemany on SQLite and COPY on PostgreSQL.

    python bench/reports.py                 # full size
    python bench/reports.py --calls 100000  # smaller
    python bench/reports.py --skip-pg       # SQLite only

The last printed line is one JSON object: pg_sources_ms, pg_calllog_ms, sqlite_sources_ms,
sqlite_calllog_ms, calls.  Goal: ≤ 300 ms on PostgreSQL and ≤ 1 s on SQLite for each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url  # noqa: E402

from astertrack.db.engine import make_engine, make_session_factory  # noqa: E402
from astertrack.db.models import Base  # noqa: E402
from astertrack.reporting import reports  # noqa: E402
from astertrack.samples.factories import add_managers, add_site, add_static_source  # noqa: E402
from astertrack.samples.processes import throwaway_postgres  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SITES, SOURCES_PER_SITE, MANAGERS = 3, 10, 40
DAYS = 365
CALL_COLUMNS = ("call_uid", "node", "site_id", "did", "caller_number", "started_at", "answered_at", "ended_at", "state",
                "outcome", "missed_reason", "wait_seconds", "talk_seconds", "total_seconds", "manager_id",
                "routed_manager_id", "routing_attempts", "transferred", "source_id", "session_id", "attribution_kind",
                "attribution_confidence", "utm_source", "utm_medium", "utm_campaign", "keyword", "is_first_call")
SESSION_COLUMNS = ("public_id", "site_id", "source_id", "utm_source", "utm_medium", "utm_campaign", "keyword",
                   "landing_page", "is_bot", "page_views", "interacted", "first_seen", "last_seen")


def log(message: str) -> None:
    print(message, flush=True)


def seed_reference(factory) -> tuple[list[tuple[int, int]], list[int]]:
    """Sites, sources and managers through the ORM; returns (site, source) pairs and manager ids."""
    with factory() as db:
        sites = [add_site(db, f"site{i}") for i in range(SITES)]
        sources = [add_static_source(db, s, f"{s.name}-source{j}", channel=random.choice(["cpc", "organic", "social"]))
                   for s in sites for j in range(SOURCES_PER_SITE)]
        managers = add_managers(db, [100 + i for i in range(MANAGERS)], names=[f"manager{i}" for i in range(MANAGERS)],
                                extension=None)
        db.commit()
        return [(s.site_id, s.id) for s in sources], [m.id for m in managers]


def _ages(rng: random.Random, count: int) -> list[float]:
    """Seconds before now, oldest first: rows arrive in time order, as a live system appends them."""
    return sorted((rng.random() * DAYS * 86400 for _ in range(count)), reverse=True)


def session_rows(count: int, pairs, now: dt.datetime, naive: bool):
    rng = random.Random(1)
    for age in _ages(rng, count):
        site_id, source_id = rng.choice(pairs)
        first = now - dt.timedelta(seconds=age)
        last = first + dt.timedelta(seconds=rng.randint(5, 1800))
        if naive:
            first, last = first.replace(tzinfo=None), last.replace(tzinfo=None)
        yield (uuid.UUID(int=rng.getrandbits(128)).hex, site_id, source_id, f"src{source_id}", "cpc",
               f"campaign{rng.randint(1, 200)}", f"keyword{rng.randint(1, 1000)}", "https://example.ru/landing",
               rng.random() < 0.05, rng.randint(1, 12), rng.random() < 0.3, first, last)


def call_rows(count: int, pairs, managers, sessions: int, now: dt.datetime, naive: bool):
    rng = random.Random(2)
    for age in _ages(rng, count):
        site_id, source_id = rng.choice(pairs)
        started = now - dt.timedelta(seconds=age)
        roll = rng.random()
        outcome = "answered" if roll < 0.78 else ("missed" if roll < 0.95 else "busy")
        wait = round(rng.uniform(1, 40), 1)
        talk = round(rng.expovariate(1 / 120), 1) if outcome == "answered" else None
        answered = started + dt.timedelta(seconds=wait) if talk is not None else None
        ended = started + dt.timedelta(seconds=wait + (talk or 0))
        routed = rng.choice(managers)
        manager = (routed if rng.random() < 0.9 else rng.choice(managers)) if outcome == "answered" else None
        if naive:
            started = started.replace(tzinfo=None)
            answered = answered.replace(tzinfo=None) if answered else None
            ended = ended.replace(tzinfo=None)
        yield (uuid.UUID(int=rng.getrandbits(128)).hex, "pbx1", site_id, "+74951000000",
               f"+7916{rng.randint(0, 399_999):07d}", started, answered, ended, "finished", outcome,
               "no_answer" if outcome == "missed" else None, wait, talk, wait + (talk or 0), manager, routed, 1, False,
               source_id, rng.randint(1, sessions) if sessions and rng.random() < 0.6 else None, "dynamic", 0.9,
               f"src{source_id}", "cpc", f"campaign{rng.randint(1, 200)}", f"keyword{rng.randint(1, 1000)}",
               rng.random() < 0.55)


def chunks(iterable, size: int):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def bulk_sqlite(path: str, table: str, columns, rows, total: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    done = 0
    for batch in chunks(rows, 50_000):
        conn.executemany(sql, [tuple(v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v for v in row)
                               for row in batch])
        conn.commit()
        done += len(batch)
        if done % 500_000 < 50_000 or done == total:
            log(f"  sqlite {table}: {done:,}/{total:,}")
    conn.close()


def bulk_pg(url: str, table: str, columns, rows, total: int) -> None:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                done += 1
                if done % 500_000 == 0:
                    log(f"  pg {table}: {done:,}/{total:,}")
        conn.commit()
    log(f"  pg {table}: {total:,} done")


def timed(fn, repeat: int = 5) -> float:
    fn()  # warm the cache the way a second visitor would find it
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 1)


def measure(factory, pairs, managers) -> tuple[float, float, float]:
    tz = "Europe/Moscow"
    period = reports.last_days(30, tz=tz)
    site_id, source_id = pairs[0]

    def sources_report():
        with factory() as db:
            reports.calls_by(db, period, "source")
            reports.time_series(db, period, tz)

    def call_log():
        with factory() as db:
            f = reports.CallLogFilter(start=period.start, end=period.end, site_id=site_id, source_id=source_id,
                                      outcome="missed")
            calls, _ = reports.call_log(db, f, limit=50)
            assert calls, "the filtered call log should not be empty"

    def funnel():
        with factory() as db:
            reports.funnel(db, period)

    return timed(sources_report), timed(call_log), timed(funnel)


def run(url: str, kind: str, n_calls: int, n_sessions: int) -> tuple[float, float, float]:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    random.seed(0)
    pairs, managers = seed_reference(factory)
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    if kind == "sqlite":
        path = make_url(url).database
        bulk_sqlite(path, "visitor_sessions", SESSION_COLUMNS, session_rows(n_sessions, pairs, now, True), n_sessions)
        bulk_sqlite(path, "calls", CALL_COLUMNS, call_rows(n_calls, pairs, managers, n_sessions, now, True), n_calls)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        bulk_pg(url, "visitor_sessions", SESSION_COLUMNS, session_rows(n_sessions, pairs, now, False), n_sessions)
        bulk_pg(url, "calls", CALL_COLUMNS, call_rows(n_calls, pairs, managers, n_sessions, now, False), n_calls)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE calls")
            conn.exec_driver_sql("VACUUM ANALYZE visitor_sessions")
    log(f"{kind}: seeded {n_calls:,} calls and {n_sessions:,} sessions in {time.perf_counter() - started:.0f} s")
    result = measure(factory, pairs, managers)
    log(f"{kind}: sources report {result[0]} ms, filtered call log {result[1]} ms, funnel {result[2]} ms")
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=None, help="default: 3 × calls")
    parser.add_argument("--pg-url", default=os.environ.get("ASTERTRACK_TEST_PG_URL", DEFAULT_PG))
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    n_sessions = args.sessions if args.sessions is not None else 3 * args.calls
    out = {"pg_sources_ms": None, "pg_calllog_ms": None, "sqlite_sources_ms": None, "sqlite_calllog_ms": None,
           "calls": args.calls, "sessions": n_sessions, "pg_funnel_ms": None, "sqlite_funnel_ms": None}
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="astertrack-bench-") as tmp:
            out["sqlite_sources_ms"], out["sqlite_calllog_ms"], out["sqlite_funnel_ms"] = run(
                f"sqlite:///{tmp}/bench.db", "sqlite", args.calls, n_sessions)
    if not args.skip_pg:
        with throwaway_postgres(args.pg_url) as url:
            out["pg_sources_ms"], out["pg_calllog_ms"], out["pg_funnel_ms"] = run(url, "pg", args.calls, n_sessions)
    out["load_avg_1m"] = round(os.getloadavg()[0], 1)  # the machine is shared: say how busy it was
    print(json.dumps(out))


if __name__ == "__main__":
    main()
