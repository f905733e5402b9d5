"""Load test of the tracker API under gunicorn with PostgreSQL, with a trivial-endpoint ceiling.

    python bench/tracker_load.py            (from the repo root; about 45 s)

Creates a throwaway database on the local PostgreSQL (``ASTERTRACK_BENCH_PG``, default
postgres@127.0.0.1:5432), seeds 50 sites with 40-number pools, starts the tracker under
gunicorn on loopback and drives it with ``wrk`` (``apt-get install wrk``) and a Lua script:

1. session creates: every request a new visitor.  Holds are 2 s during this phase so the
   2,000 numbers keep turning over and most creates take the full allocation path (session
   row, locked pick of the least recently released number, release of the expired hold,
   new hold); the rest get the fallback number and an overflow event.  Counts are printed.
2. heartbeats from visitors who hold a pool number (holds set back to 10 minutes first);
3. the same gunicorn setup serving a trivial Flask endpoint: the ceiling of this machine,
   measured before and after the tracker phases (mean reported; the machine may be shared).
4. with ``BENCH_FLOOR=1``: the session creates again against the tracker with a create's database
   work replaced by a fixed answer (``floor_app``): what the same server gives these requests when
   the database costs nothing.  A yardstick that says how much of the gap to the ceiling is the
   database's, never the tracker's figure.

gunicorn as deployed (``--config python:astertrack.ops.gunicorn_conf``: the event-loop worker of
``astertrack.ops.serving``), 2 workers (one per core) x 8 threads for both the tracker and the
ceiling (``BENCH_WORKERS``, ``BENCH_THREADS``); ``BENCH_WORKER=gthread`` measures gunicorn's gthread
worker instead (how the tracker was served before issue #20).  Each phase also reports the CPU it cost per request:
the gunicorn workers' (user + system) and the PostgreSQL backends' of the bench database, read
from /proc, so a slow run on a busy machine still shows where the time goes.

The last printed line is one JSON object with the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from astertrack.samples.processes import free_port, stop_process, throwaway_postgres, wait_for_http  # noqa: E402

PG_ADMIN = os.environ.get("ASTERTRACK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SITES, POOL_SIZE = 50, 40
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
WORKER = os.environ.get("BENCH_WORKER", "event")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
PHASE_SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CEILING_SECONDS = max(2, PHASE_SECONDS // 2)
FLOOR = os.environ.get("BENCH_FLOOR") == "1"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

LUA_COMMON = r"""
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,' ..
    '"connect_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.timeout))
end
"""

LUA_START = LUA_COMMON + r"""
local keys = {}
local counter = 0
local prefix
function init(args)
  for line in io.lines(args[1]) do table.insert(keys, line) end
  prefix = tostring(tid) .. "-" .. tostring(math.random(1, 1000000000))
end
function request()
  counter = counter + 1
  local key = keys[(counter % #keys) + 1]
  local body = '{"k":"' .. key .. '","visitor_id":"bench-' .. prefix .. '-' .. counter ..
    '","utm_source":"bench","utm_medium":"cpc","landing_page":"https://shop.example.ru/landing?x=1",' ..
    '"referrer":"https://yandex.ru/search/?text=buy+glasses","new":true}'
  return wrk.format("POST", "/v/start", {["Content-Type"] = "text/plain;charset=UTF-8",
    ["User-Agent"] = "__UA__", ["Origin"] = "https://shop.example.ru"}, body)
end
"""

LUA_PING = LUA_COMMON + r"""
local sessions = {}
local counter = 0
function init(args)
  for line in io.lines(args[1]) do
    local key, sid = line:match("([^ ]+) ([^ ]+)")
    table.insert(sessions, {key, sid})
  end
  counter = tid * 7919
end
function request()
  counter = counter + 1
  local s = sessions[(counter % #sessions) + 1]
  local body = '{"k":"' .. s[1] .. '","sid":"' .. s[2] .. '","page":"https://shop.example.ru/landing?x=1"}'
  return wrk.format("POST", "/v/ping", {["Content-Type"] = "text/plain;charset=UTF-8",
    ["User-Agent"] = "__UA__", ["Origin"] = "https://shop.example.ru"}, body)
end
"""

LUA_CEILING = LUA_COMMON + r"""
function request()
  return wrk.format("POST", "/ok", {["Content-Type"] = "text/plain;charset=UTF-8"}, '{"k":"x"}')
end
"""


def ceiling_app():
    """The trivial endpoint: same framework, same server, no database."""
    from flask import Flask, Response

    app = Flask("ceiling")

    @app.route("/ok", methods=["GET", "POST"])
    def ok():
        return Response('{"ok":true}', mimetype="application/json")

    return app


def floor_app():
    """The tracker with ``allocation.start_with`` and its database connection replaced by a fixed
    pool-number answer: same guards, JSON, routing and answer, no database (phase 4)."""
    import contextlib
    import datetime as dt

    import tracker.api as api
    from astertrack.dni import allocation
    from astertrack.dni.sources import route_visit
    from tracker import create_app

    def canned_start(ex, site, visit, now, **_options):
        return allocation.Offer(allocation.new_uid(), "+74990000001", "pool", now + dt.timedelta(seconds=600),
                                route_visit(site, visit).source)

    def no_database(_self):
        yield None

    allocation.start_with = canned_start
    api.TrackerApi._connection = contextlib.contextmanager(no_database)
    return create_app()


def gunicorn(app: str, port: int, env: dict[str, str], chdir: Path) -> subprocess.Popen:
    """The tracker's gunicorn settings as astertrack-tracker.service gets them, on a bench port."""
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "--config", "python:astertrack.ops.gunicorn_conf",
           "--workers", str(WORKERS), "--threads", str(THREADS), "--bind", f"127.0.0.1:{port}",
           "--log-level", "warning", "--chdir", str(chdir), app]
    env = {**env, "ASTERTRACK_GUNICORN_APP": "tracker", "ASTERTRACK_GUNICORN_WORKER": WORKER}
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def wrk(port: int, script: Path, seconds: int, arg: Path | None = None, *more: str) -> dict:
    """One wrk run; the script's ``init(args)`` gets ``arg`` and ``more``.  Returns its summary."""
    cmd = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--timeout", "5s", "-s", str(script),
           f"http://127.0.0.1:{port}"]
    if arg is not None:
        cmd += ["--", str(arg), *more]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    for line in out.stdout.splitlines():
        if line.startswith("WRK "):
            data = json.loads(line[4:])
            data["per_s"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _worker_pids(proc: subprocess.Popen) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def _backend_pids(db_url: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark's database (the tracker's pooled connections)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"))]
    finally:
        engine.dispose()


def measured(run, server: subprocess.Popen, db_url: str | None = None) -> dict:
    """Run one wrk phase and add the CPU milliseconds per request of gunicorn and PostgreSQL."""
    workers = _worker_pids(server)
    backends = _backend_pids(db_url) if db_url is not None else []
    py0, pg0 = _cpu_seconds(workers), _cpu_seconds(backends)
    load0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run()
    load1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, the only child that ended meanwhile
    py1, pg1 = _cpu_seconds(workers), _cpu_seconds(backends)
    requests = max(1, result["requests"])
    result["py_cpu_ms"] = round((py1 - py0) * 1000 / requests, 3)
    result["pg_cpu_ms"] = round((pg1 - pg0) * 1000 / requests, 3)
    result["wrk_cpu_ms"] = round((load1.ru_utime + load1.ru_stime - load0.ru_utime - load0.ru_stime) * 1000 / requests, 3)
    return result


def seed(url: str) -> list[str]:
    """SITES sites, each with a POOL_SIZE-number pool and 2-second holds; returns their public keys."""
    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Base
    from astertrack.samples.factories import pooled_site

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as db:
        keys = [pooled_site(db, POOL_SIZE, name=f"bench {s}", first_number=f"+7499{s:03d}0000",
                            domains=["shop.example.ru"], hold=2, commit=False).public_key for s in range(SITES)]
        db.commit()
    engine.dispose()
    return keys


def counts(url: str) -> tuple[int, int, int]:
    """(sessions, pool holds handed out, overflow events) so far."""
    from sqlalchemy import func, select

    from astertrack.db.engine import make_engine
    from astertrack.db.models import NumberAssignment, OverflowEvent, VisitorSession

    engine = make_engine(url)
    with engine.connect() as conn:
        result = tuple(conn.execute(select(func.count()).select_from(model)).scalar_one()
                       for model in (VisitorSession, NumberAssignment, OverflowEvent))
    engine.dispose()
    return result


def holders_list(url: str, path: Path) -> int:
    """Give every live hold a normal 10-minute hold again and write "key sid" of its session."""
    from sqlalchemy import select, text

    from astertrack.db.engine import make_engine
    from astertrack.db.models import NumberAssignment, Site, VisitorSession

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE sites SET hold_seconds = 600"))
        conn.execute(text("UPDATE number_assignments SET expires_at = now() + interval '10 minutes', "
                          "hard_expires_at = now() + interval '1 hour' WHERE released_at IS NULL"))
        rows = conn.execute(select(Site.public_key, VisitorSession.public_id)
                            .join(Site, Site.id == VisitorSession.site_id)
                            .join(NumberAssignment, NumberAssignment.session_id == VisitorSession.id)
                            .where(NumberAssignment.released_at.is_(None))).all()
    engine.dispose()
    path.write_text("".join(f"{key} {sid}\n" for key, sid in rows))
    return len(rows)


def main() -> None:
    if shutil.which("wrk") is None and shutil.which("apt-get"):
        print("installing wrk (Debian package) for the load generator ...", flush=True)
        subprocess.run([str(REPO / "scripts" / "apt-install"), "wrk"], check=False)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    load_before = os.getloadavg()[0]
    scratch = contextlib.ExitStack()  # the throw-away PostgreSQL database, dropped at the end
    url = scratch.enter_context(throwaway_postgres(PG_ADMIN))
    work = Path(tempfile.mkdtemp(prefix="astertrack-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        keys = seed(url)
        (work / "keys.txt").write_text("\n".join(keys) + "\n")
        config = work / "astertrack.conf"
        config.write_text(textwrap.dedent(f"""\
            [database]
            url = {url}
            pool_size = {THREADS}
            [tracker]
            rate_limit_per_minute = 0
            maintenance_seconds = 30
            # every visitor of this bench comes from 127.0.0.1, and its 2-second holds are the point:
            # no per-address cap, no long first hold under pool pressure
            max_holds_per_ip = 0
            max_holds_per_visitor = 0
            pool_pressure = 0
            """))
        config.chmod(0o600)
        env = {**os.environ, "ASTERTRACK_CONFIG": str(config), "PYTHONPATH": str(REPO)}
        for script, body in (("start.lua", LUA_START), ("ping.lua", LUA_PING), ("ceiling.lua", LUA_CEILING)):
            (work / script).write_text(body.replace("__UA__", UA))

        # The ceiling runs before and after the tracker phases: this machine is shared, and
        # the mean of the two brackets the load the tracker saw.
        cport = free_port()
        ceiling_proc = gunicorn("tracker_load:ceiling_app()", cport, env, REPO / "bench")
        procs.append(ceiling_proc)
        wait_for_http(f"http://127.0.0.1:{cport}/ok", ceiling_proc, timeout=20)
        wrk(cport, work / "ceiling.lua", 1)
        ceilings = [measured(lambda: wrk(cport, work / "ceiling.lua", CEILING_SECONDS), ceiling_proc)]

        port = free_port()
        tracker = gunicorn("tracker:create_app()", port, env, REPO)
        procs.append(tracker)
        wait_for_http(f"http://127.0.0.1:{port}/v.js", tracker, timeout=20)
        print(f"tracker: gunicorn {WORKER} {WORKERS} workers x {THREADS} threads, PostgreSQL, "
              f"{SITES} sites x {POOL_SIZE}-number pools; wrk 2 threads, {CONNECTIONS} connections", flush=True)
        wrk(port, work / "start.lua", 2, work / "keys.txt")  # warm-up: connections, caches
        before = counts(url)
        starts = measured(lambda: wrk(port, work / "start.lua", PHASE_SECONDS, work / "keys.txt"), tracker, url)
        sessions, holders, overflows = (after - first for after, first in zip(counts(url), before, strict=True))
        print(f"session creates: {starts['per_s']:.0f}/s  p50 {starts['p50_us'] / 1000:.2f} ms  "
              f"p99 {starts['p99_us'] / 1000:.2f} ms  non-2xx {starts['status_errors']}  "
              f"({sessions} sessions: {holders} took a pool number, {overflows} got the fallback)  "
              f"CPU/request: gunicorn {starts['py_cpu_ms']:.3f} ms, PostgreSQL {starts['pg_cpu_ms']:.3f} ms",
              flush=True)
        live = holders_list(url, work / "sessions.txt")
        stop_process(tracker, 15, group=True)  # a fresh tracker, so its site cache sees the 10-minute hold
        procs.remove(tracker)
        port = free_port()
        tracker = gunicorn("tracker:create_app()", port, env, REPO)
        procs.append(tracker)
        wait_for_http(f"http://127.0.0.1:{port}/v.js", tracker, timeout=20)
        wrk(port, work / "ping.lua", 1, work / "sessions.txt")  # warm-up
        pings = measured(lambda: wrk(port, work / "ping.lua", PHASE_SECONDS, work / "sessions.txt"), tracker, url)
        print(f"heartbeats:      {pings['per_s']:.0f}/s  p50 {pings['p50_us'] / 1000:.2f} ms  "
              f"p99 {pings['p99_us'] / 1000:.2f} ms  non-2xx {pings['status_errors']}  "
              f"(from {live} visitors holding a pool number)", flush=True)
        stop_process(tracker, 15, group=True)
        procs.remove(tracker)
        floor = None
        if FLOOR:
            port = free_port()
            floor_proc = gunicorn("tracker_load:floor_app()", port, env, REPO / "bench")
            procs.append(floor_proc)
            wait_for_http(f"http://127.0.0.1:{port}/v.js", floor_proc, timeout=20)
            wrk(port, work / "start.lua", 2, work / "keys.txt")  # warm-up
            floor = measured(lambda: wrk(port, work / "start.lua", PHASE_SECONDS, work / "keys.txt"), floor_proc)
            print(f"floor (session creates, database work replaced by a fixed answer): {floor['per_s']:.0f}/s  "
                  f"p50 {floor['p50_us'] / 1000:.2f} ms  p99 {floor['p99_us'] / 1000:.2f} ms  "
                  f"CPU/request: gunicorn {floor['py_cpu_ms']:.3f} ms", flush=True)
            stop_process(floor_proc, 15, group=True)
            procs.remove(floor_proc)

        ceilings.append(measured(lambda: wrk(cport, work / "ceiling.lua", CEILING_SECONDS), ceiling_proc))
        ceiling = {"per_s": sum(c["per_s"] for c in ceilings) / 2,
                   "p50_us": max(c["p50_us"] for c in ceilings), "p99_us": max(c["p99_us"] for c in ceilings)}
        print(f"ceiling (trivial Flask endpoint, same gunicorn): {ceiling['per_s']:.0f}/s "
              f"(before {ceilings[0]['per_s']:.0f}/s, after {ceilings[1]['per_s']:.0f}/s)  "
              f"p50 {ceiling['p50_us'] / 1000:.2f} ms  p99 {ceiling['p99_us'] / 1000:.2f} ms", flush=True)
        result = {
            "session_creates_per_s": round(starts["per_s"], 1),
            "heartbeats_per_s": round(pings["per_s"], 1),
            "p50_ms": round(starts["p50_us"] / 1000, 2),
            "p99_ms": round(starts["p99_us"] / 1000, 2),
            "heartbeat_p99_ms": round(pings["p99_us"] / 1000, 2),
            "ceiling_per_s": round(ceiling["per_s"], 1),
            "ratio_to_ceiling": round(starts["per_s"] / ceiling["per_s"], 3) if ceiling["per_s"] else None,
            "non_2xx": starts["status_errors"] + pings["status_errors"],
            "sessions": sessions,
            "pool_assignments": holders,
            "overflow_events": overflows,
            "heartbeat_sessions": live,
            # CPU milliseconds per request (gunicorn workers; PostgreSQL backends of the bench database)
            "create_py_cpu_ms": starts["py_cpu_ms"],
            "create_pg_cpu_ms": starts["pg_cpu_ms"],
            "create_wrk_cpu_ms": starts["wrk_cpu_ms"],
            "heartbeat_py_cpu_ms": pings["py_cpu_ms"],
            "heartbeat_pg_cpu_ms": pings["pg_cpu_ms"],
            "ceiling_py_cpu_ms": round(sum(c["py_cpu_ms"] for c in ceilings) / 2, 3),
            "floor_per_s": round(floor["per_s"], 1) if floor else None,
            "floor_py_cpu_ms": floor["py_cpu_ms"] if floor else None,
            "gunicorn": f"{WORKER} {WORKERS}x{THREADS}",
            "load_before": round(load_before, 2),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result))
    finally:
        for proc in procs:
            stop_process(proc, 15, group=True)
        scratch.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
