"""Load test of the visitor journey's ingestion: batched page views through the tracker under its
production server settings with PostgreSQL, side by side with the trivial endpoint.

    python bench/journey_load.py            (from the repo root; about 30 s)

Creates a throwaway database on the local PostgreSQL (``ASTERTRACK_BENCH_PG``, as the other
benches), seeds 10 sites with 5,000 visitor sessions, starts the tracker under gunicorn as
deployed (``astertrack.ops.gunicorn_conf``: the event-loop worker, 2 workers x 8 threads) and drives
``POST /v/j`` with ``wrk``: each request one session's batch of ``BENCH_BATCH`` (5) page views with
new page-load ids, as the snippet flushes them.  The trivial Flask endpoint of ``tracker_load`` under
the same gunicorn is measured before and after (the machine may be shared; the mean is the
ceiling).  The helpers (gunicorn command, wrk runner and Lua reporting, CPU per request) are
``bench/tracker_load.py``'s.

The last printed line is one JSON object: ``pageviews_per_s``, ``p99_ms``, ``ratio_to_ceiling``
(requests per second against the ceiling's), and the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import tracker_load as tl  # noqa: E402

from astertrack.samples.processes import free_port, stop_process, throwaway_postgres, wait_for_http  # noqa: E402

SITES, SESSIONS = 10, 5000
BATCH = int(os.environ.get("BENCH_BATCH", "5"))
GOAL_PAGEVIEWS = 3000  # the goal: this many page views a second with p99 <= 50 ms
PACE_MARGIN = 1.05  # the paced phase offers a little more than the goal (its first and last moments send less)
WRK_THREADS = 2  # tl.wrk's: the paced schedule is per wrk thread

LUA_JOURNEY = tl.LUA_COMMON + r"""
-- The paced phase is an open loop: each wrk thread sends on a fixed schedule (one request every
-- ``interval`` ms, on whichever of its connections is free), so a slow answer does not lower the
-- load offered after it (a think time after each answer would: the server's slowness would pace
-- its own test).  The schedule's clock is CLOCK_MONOTONIC through LuaJIT's ffi.
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
           int clock_gettime(int clock, bench_timespec *ts); ]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local sessions = {}
local counter = 0
local prefix
local interval = 0
local next_at
local slots, first, last = {}, 1, 0
-- how late the generator itself sent, against its schedule (read by done() through thread:get)
lag_n, lag_sum, lag_max, lag_over_1ms, late = 0, 0, 0, 0, 0
function init(args)
  interval = tonumber(args[2] or "0")
  for line in io.lines(args[1]) do
    local key, sid = line:match("([^ ]+) ([^ ]+)")
    table.insert(sessions, {key, sid})
  end
  counter = tid * 7919
  math.randomseed(os.time() * 2 + tid)  -- the warm-up's page-load ids are not the measured run's
  prefix = tostring(tid) .. string.format("%x", math.random(1, 1000000))
end
function delay()
  -- the next free slot of this thread's schedule; a connection free only after its slot sends at
  -- once and counts as late (then the load offered was not kept: the reading says so)
  if interval == 0 then return 0 end
  local now = now_ms()
  next_at = (next_at or now) + interval
  last = last + 1
  slots[last] = next_at
  if next_at < now then
    late = late + 1
    return 0
  end
  return next_at - now
end
function request()
  if first <= last then  -- wrk starts the clock of this request now: how far behind its slot?
    local lag = math.max(0, now_ms() - slots[first])
    slots[first] = nil
    first = first + 1
    lag_n, lag_sum = lag_n + 1, lag_sum + lag
    if lag > lag_max then lag_max = lag end
    if lag > 1 then lag_over_1ms = lag_over_1ms + 1 end
  end
  counter = counter + 1
  local s = sessions[(counter % #sessions) + 1]
  local ev = {}
  for i = 1, __BATCH__ do
    ev[i] = '{"t":"p","id":"' .. prefix .. counter .. 'x' .. i .. '","d":' .. (i * 15000) ..
      ',"u":"https://shop.example.ru/catalog/item-' .. i .. '?utm_source=yandex&session=SECRET",' ..
      '"ti":"Каталог: товар ' .. i .. '","r":"https://shop.example.ru/catalog","s":' .. (10 + i) .. '}'
  end
  local body = '{"k":"' .. s[1] .. '","sid":"' .. s[2] .. '","ev":[' .. table.concat(ev, ",") .. ']}'
  return wrk.format("POST", "/v/j", {["Content-Type"] = "text/plain;charset=UTF-8",
    ["User-Agent"] = "__UA__", ["Origin"] = "https://shop.example.ru"}, body)
end
local common_done = done
function done(summary, latency, requests)
  common_done(summary, latency, requests)
  local n, sum, max, over, slow = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    n, sum = n + thread:get("lag_n"), sum + thread:get("lag_sum")
    max = math.max(max, thread:get("lag_max"))
    over, slow = over + thread:get("lag_over_1ms"), slow + thread:get("late")
  end
  local out = io.open("__EXTRA_FILE__", "w")
  out:write(string.format('{"p95_us":%d,"sent_on_schedule":%d,"send_lag_mean_ms":%.3f,"send_lag_max_ms":%.2f,' ..
    '"send_lag_over_1ms":%d,"late_slots":%d}\n', latency:percentile(95), n, n > 0 and sum / n or 0, max, over,
    slow))
  out:close()
end
"""


def seed(url: str, path: Path) -> None:
    """SITES sites and SESSIONS sessions among them; "key sid" of each written to ``path``."""
    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Base, VisitorSession
    from astertrack.samples.factories import pooled_site

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    lines = []
    with make_session_factory(engine)() as db:
        sites = [pooled_site(db, 2, name=f"bench {s}", first_number=f"+7498{s:03d}0000", domains=["shop.example.ru"],
                             commit=False) for s in range(SITES)]
        db.flush()
        for i in range(SESSIONS):
            site = sites[i % SITES]
            visit = VisitorSession(site_id=site.id, visitor_id=f"bench-{i}", landing_page="https://shop.example.ru/")
            db.add(visit)
            lines.append((site.public_key, visit))
        db.commit()
        path.write_text("".join(f"{key} {visit.public_id}\n" for key, visit in lines))
    engine.dispose()


def stored(url: str) -> int:
    from sqlalchemy import func, select

    from astertrack.db.engine import make_engine
    from astertrack.db.models import PageView

    engine = make_engine(url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(PageView)).scalar_one()
    engine.dispose()
    return count


def _machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, every core (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def phase(port: int, work: Path, tracker: subprocess.Popen, url: str, interval_ms: float = 0) -> dict:
    """One measured wrk run of journey batches (``interval_ms``: the paced schedule of each wrk
    thread, 0 as fast as they go), with what the client cost and what the rest of the machine took.

    ``others_cores``: the CPU the machine spent meanwhile on anything but the tracker's workers,
    its PostgreSQL backends and wrk (other people's test suites on a shared VM): a latency read
    while it is high was read on fewer than two cores."""
    busy0, all0 = _machine_cpu()
    result = tl.measured(lambda: tl.wrk(port, work / "journey.lua", tl.PHASE_SECONDS, work / "sessions.txt",
                                        f"{interval_ms:.4f}"), tracker, url)
    busy1, all1 = _machine_cpu()
    result.update(json.loads((work / "extra.json").read_text()))
    seconds = result["duration_us"] / 1e6
    ours = (result["py_cpu_ms"] + result["pg_cpu_ms"] + result["wrk_cpu_ms"]) * result["requests"] / 1000 / seconds
    result["busy_cores"] = round((busy1 - busy0) / ((all1 - all0) / (os.cpu_count() or 1)), 2)
    result["others_cores"] = round(max(0.0, result["busy_cores"] - ours), 2)
    return result


def _line(run: dict) -> str:
    return (f"{run['per_s']:.0f}/s = {run['per_s'] * BATCH:.0f} page views/s  p50 {run['p50_us'] / 1000:.2f} ms  "
            f"p95 {run['p95_us'] / 1000:.2f} ms  p99 {run['p99_us'] / 1000:.2f} ms  non-2xx {run['status_errors']}  "
            f"CPU/request: gunicorn {run['py_cpu_ms']:.3f} ms, PostgreSQL {run['pg_cpu_ms']:.3f} ms, "
            f"wrk {run['wrk_cpu_ms']:.3f} ms; other processes {run['others_cores']:.2f} of {os.cpu_count()} cores")


def main() -> None:
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    load_before = os.getloadavg()[0]
    scratch = contextlib.ExitStack()
    url = scratch.enter_context(throwaway_postgres(tl.PG_ADMIN))
    work = Path(tempfile.mkdtemp(prefix="astertrack-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        seed(url, work / "sessions.txt")
        config = work / "astertrack.conf"
        config.write_text(textwrap.dedent(f"""\
            [database]
            url = {url}
            pool_size = {tl.THREADS}
            [tracker]
            rate_limit_per_minute = 0
            maintenance_seconds = 30
            """))
        config.chmod(0o600)
        env = {**os.environ, "ASTERTRACK_CONFIG": str(config), "PYTHONPATH": str(BENCH.parent)}
        (work / "journey.lua").write_text(LUA_JOURNEY.replace("__UA__", tl.UA).replace("__BATCH__", str(BATCH))
                                          .replace("__EXTRA_FILE__", str(work / "extra.json")))
        (work / "ceiling.lua").write_text(tl.LUA_CEILING)

        cport = free_port()
        ceiling_proc = tl.gunicorn("tracker_load:ceiling_app()", cport, env, BENCH)
        procs.append(ceiling_proc)
        wait_for_http(f"http://127.0.0.1:{cport}/ok", ceiling_proc, timeout=20)
        tl.wrk(cport, work / "ceiling.lua", 1)
        ceilings = [tl.measured(lambda: tl.wrk(cport, work / "ceiling.lua", tl.CEILING_SECONDS), ceiling_proc)]

        port = free_port()
        tracker = tl.gunicorn("tracker:create_app()", port, env, BENCH.parent)
        procs.append(tracker)
        wait_for_http(f"http://127.0.0.1:{port}/v.js", tracker, timeout=20)
        print(f"tracker: gunicorn {tl.WORKER} {tl.WORKERS} workers x {tl.THREADS} threads, PostgreSQL, "
              f"{SESSIONS} sessions on {SITES} sites; wrk 2 threads, {tl.CONNECTIONS} connections, "
              f"batches of {BATCH} page views", flush=True)
        tl.wrk(port, work / "journey.lua", 2, work / "sessions.txt")  # warm-up: connections, caches, plans
        before = stored(url)
        run = phase(port, work, tracker, url)
        rows = stored(url) - before
        print(f"journey batches, as fast as they go: {_line(run)}  ({rows} page views stored)", flush=True)
        # The goal's reading: the p99 while the site sends the goal's page views a second, on an
        # open-loop schedule (a slow answer does not delay the next request's slot).
        offered = GOAL_PAGEVIEWS * PACE_MARGIN / BATCH
        paced = phase(port, work, tracker, url, 1000 * WRK_THREADS / offered)
        print(f"journey batches at the goal's load ({offered:.0f} batches/s offered on a fixed schedule, "
              f"{tl.CONNECTIONS} connections): {_line(paced)}", flush=True)
        print(f"  the generator kept its schedule: {paced['late_slots']} of {paced['requests']} requests found no "
              f"free connection at their slot; sent {paced['send_lag_mean_ms']:.2f} ms after the slot on average "
              f"(max {paced['send_lag_max_ms']:.1f} ms, {paced['send_lag_over_1ms']} over 1 ms)", flush=True)
        stop_process(tracker, 15, group=True)
        procs.remove(tracker)

        ceilings.append(tl.measured(lambda: tl.wrk(cport, work / "ceiling.lua", tl.CEILING_SECONDS), ceiling_proc))
        ceiling = sum(c["per_s"] for c in ceilings) / len(ceilings)
        print(f"ceiling (trivial Flask endpoint, same gunicorn): {ceiling:.0f}/s "
              f"(before {ceilings[0]['per_s']:.0f}/s, after {ceilings[1]['per_s']:.0f}/s)  "
              f"p99 {max(c['p99_us'] for c in ceilings) / 1000:.2f} ms", flush=True)
        print(json.dumps({
            "pageviews_per_s": round(run["per_s"] * BATCH, 1),
            "batches_per_s": round(run["per_s"], 1),
            "batch": BATCH,
            "p50_ms": round(run["p50_us"] / 1000, 2),
            "p95_ms": round(run["p95_us"] / 1000, 2),
            "p99_ms": round(run["p99_us"] / 1000, 2),
            "paced_pageviews_per_s": round(paced["per_s"] * BATCH, 1),  # the goal's load offered on a schedule
            "paced_p50_ms": round(paced["p50_us"] / 1000, 2),
            "paced_p95_ms": round(paced["p95_us"] / 1000, 2),
            "paced_p99_ms": round(paced["p99_us"] / 1000, 2),
            "paced_non_2xx": paced["status_errors"],
            "paced_late_slots": paced["late_slots"],  # requests the generator could not send on time
            "paced_send_lag_max_ms": paced["send_lag_max_ms"],
            "wrk_cpu_ms": run["wrk_cpu_ms"],
            "others_cores": run["others_cores"],  # CPU other processes took during the saturated phase
            "paced_others_cores": paced["others_cores"],
            "ceiling_per_s": round(ceiling, 1),
            "ratio_to_ceiling": round(run["per_s"] / ceiling, 3) if ceiling else None,
            "non_2xx": run["status_errors"],
            "pageviews_stored": rows,
            "py_cpu_ms": run["py_cpu_ms"],
            "pg_cpu_ms": run["pg_cpu_ms"],
            "ceiling_py_cpu_ms": round(sum(c["py_cpu_ms"] for c in ceilings) / len(ceilings), 3),
            "gunicorn": f"{tl.WORKER} {tl.WORKERS}x{tl.THREADS}",
            "load_before": round(load_before, 2),
            "cpus": os.cpu_count(),
        }))
    finally:
        for proc in procs:
            stop_process(proc, 15, group=True)
        scratch.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
