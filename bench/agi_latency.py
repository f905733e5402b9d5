#!/usr/bin/env python3
"""AGI decision latency: the FastAGI daemon vs the process-per-call script, side by side.

Seeds a throw-away database (SQLite by default, ``--db-url`` for PostgreSQL), starts the real
``astertrack-agi`` daemon as its own process (with its default ``[agi] workers``: one process per
core, ``--workers`` to choose), and plays Asterisk's side of recorded ``inbound`` sessions with N
calls in flight at once.  Then it starts ``astertrack-agi-script`` once per call, N at a time, on
stdin/stdout.  Latency = from the first byte of the AGI environment to
the end of the AGI session (the server closes the socket, the script its stdout), counted only
if ``CT_STATUS=OK`` was set: what the caller waits for before anything rings.

Load patterns for the daemon:
  1-by-1       - one call at a time: the decision's own latency
  spaced       - one call at a time, ``--hold``/N apart (the in-progress arrival rate with no
                 overlap): what a decision costs when the CPU has gone idle between calls
  in-progress  - the headline: N concurrent calls, as on a PBX carrying N calls.  Each of N
                 callers talks for a random time (exponential, mean ``--hold`` s, seeded) and
                 calls again, so N calls are always up and new ones reach the AGI at N/hold
                 per second (100/s by default: time compressed ~180x against 3-minute calls)
  burst        - N calls reach the AGI at the same instant (stress: they queue on the CPU)
  reference    - the in-progress load against a stand-in server that only burns ``--reference-ms``
                 of CPU per call behind the same round trips, in as many processes as the daemon:
                 how this machine treats a server of known cost at this moment (the VM's speed
                 varies; read the daemon's figures next to it).  Several values (``1,2,3``) give the
                 curve: which CPU per decision a p99 budget leaves on this machine

Run from the repo root with the project installed:  python bench/agi_latency.py
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agi.server import resolve_workers, run_event_loop  # noqa: E402
from astertrack.db.engine import make_engine, make_session_factory  # noqa: E402
from astertrack.db.models import Base  # noqa: E402
from astertrack.samples.factories import add_group, add_managers, add_rule, add_site, add_static_source  # noqa: E402
from astertrack.samples.processes import (  # noqa: E402
    BIN,
    free_port,
    spawn,
    start_daemon,
    stop_process,
    throwaway_postgres,
    wait_for_port,
)

DIDS = ["74950000101", "74950000102", "74950000103", "74950000104"]
ENV_TEMPLATE = [
    ("agi_network", "yes"), ("agi_network_script", "inbound"), ("agi_request", "agi://127.0.0.1/inbound"),
    ("agi_channel", "PJSIP/trunk-{seq:08x}"), ("agi_language", "en"), ("agi_type", "PJSIP"),
    ("agi_uniqueid", "1795439737.{seq}"), ("agi_version", "20.20.1"), ("agi_callerid", "7916{seq:07d}"),
    ("agi_calleridname", "Caller {seq}"), ("agi_callingpres", "0"), ("agi_callingani2", "0"),
    ("agi_callington", "0"), ("agi_callingtns", "0"), ("agi_dnid", "{did}"), ("agi_rdnis", "unknown"),
    ("agi_context", "from-trunk"), ("agi_extension", "{did}"), ("agi_priority", "3"),
    ("agi_enhanced", "0.0"), ("agi_accountcode", ""), ("agi_threadid", "140303427196608"),
]


def environment(seq: int, classic: bool = False) -> bytes:
    did = DIDS[seq % len(DIDS)]
    lines = []
    for name, value in ENV_TEMPLATE:
        if classic and name.startswith("agi_network"):
            continue
        lines.append(f"{name}: {value.format(seq=seq, did=did)}\n")
    args = [did, f"1795439737.{seq}"]  # as extensions_astertrack.conf passes them: DID, linkedid
    if classic:
        args.insert(0, "inbound")
    lines += [f"agi_arg_{index}: {arg}\n" for index, arg in enumerate(args, start=1)]
    return ("".join(lines) + "\n").encode()


def reply_to(line: bytes) -> bytes:
    """Asterisk's answer: device states are free, other GETs are unset, everything else succeeds.

    Asterisk substitutes every ``${DEVICE_STATE(...)}`` of a GET FULL VARIABLE expression, so
    several devices asked at once come back comma-separated.
    """
    if line.startswith(b"GET FULL VARIABLE ${DEVICE_STATE("):
        return b"200 result=1 (" + b",".join([b"NOT_INUSE"] * line.count(b"${DEVICE_STATE(")) + b")\n"
    if line.startswith(b"GET"):
        return b"200 result=0\n"
    if line.startswith(b"EXEC"):
        return b"200 result=0\n"
    return b"200 result=1\n"


def status_set(line: bytes, decided: bool) -> bool:
    """Whether the call is decided once this command is done: CT_STATUS comes last, alone or at
    the end of the EXEC MSet batch; FAILED undoes it."""
    if line.startswith(b'SET VARIABLE CT_STATUS "OK"') or line.rstrip().endswith(b',CT_STATUS=OK"'):
        return True
    if b"CT_STATUS" in line and b"FAILED" in line:
        return False
    return decided


async def converse(reader, writer, env: bytes) -> float | None:
    """Play one session on a stream pair (the script's stdin and stdout); return seconds until the
    AGI ended (the script closed its stdout: the dialplan goes on), or None if it ended without
    CT_STATUS=OK (no decision)."""
    started = time.perf_counter()
    writer.write(env)
    await writer.drain()
    decided = False
    while True:
        line = await reader.readline()
        if not line:
            break
        decided = status_set(line, decided)
        writer.write(reply_to(line))
        await writer.drain()
    return time.perf_counter() - started if decided else None


class FakeAsterisk(asyncio.Protocol):
    """Asterisk's side of one FastAGI session, as ``converse`` plays it, answered straight from
    the transport's callbacks: no coroutine wakes up per line.  Asterisk is C; the load
    generator shares the cores with the daemon, so the less it costs, the more the figures
    are the daemon's."""

    def __init__(self, env: bytes, done: asyncio.Future):
        self.env, self.done = env, done
        self.buffer = b""
        self.decided = False
        self.started = 0.0
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.started = time.perf_counter()
        transport.write(self.env)

    def data_received(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        replies = []
        for line in lines:
            self.decided = status_set(line, self.decided)
            replies.append(reply_to(line))
        self.transport.write(b"".join(replies))

    def eof_received(self) -> None:  # the server ended the session: the dialplan goes on
        self._end()

    def connection_lost(self, exc) -> None:
        self._end()

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(time.perf_counter() - self.started if self.decided else None)


async def fastagi_call(port: int, seq: int, delay: float) -> float | None:
    """One FastAGI session; seconds from the first byte of the environment to the server's
    end of the session, or None without CT_STATUS=OK."""
    if delay:
        await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_connection(lambda: FakeAsterisk(environment(seq), done), "127.0.0.1", port)
    try:
        return await done
    finally:
        transport.close()


async def script_call(seq: int, env_vars: dict, gate: asyncio.Semaphore, log) -> float | None:
    async with gate:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "astertrack-agi-script"), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log, env=env_vars)
        decided = await converse(proc.stdout, proc.stdin, environment(seq, classic=True))
        proc.stdin.close()
        await proc.wait()
        # from process start: Asterisk forks the script when the call reaches AGI()
        return None if decided is None else time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(name: str, latencies: list[float | None], wall: float) -> dict:
    ok = [x for x in latencies if x is not None]
    return {
        "mode": name, "calls": len(latencies), "decided": len(ok),
        "p50_ms": round(pct(ok, 50) * 1000, 2), "p99_ms": round(pct(ok, 99) * 1000, 2),
        "max_ms": round(max(ok) * 1000, 2) if ok else float("nan"),
        "mean_ms": round(statistics.fmean(ok) * 1000, 2) if ok else float("nan"),
        "calls_per_s": round(len(ok) / wall, 1) if wall else float("nan"),
    }


def seed(db_url: str, managers: int) -> None:
    """One static source per DID, ``managers`` phones in one group, one sticky round-robin rule."""
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        site = add_site(session, "Bench", timezone="Europe/Moscow")
        for index, did in enumerate(DIDS):
            add_static_source(session, site, f"source-{index}", ["+" + did])
        phones = add_managers(session, [1000 + i for i in range(managers)], names=[f"M{i}" for i in range(managers)])
        add_rule(session, "sales", add_group(session, "sales", phones), site=site, strategy="round_robin", sticky=True)
        session.commit()
    engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process and its live children (the workers), from Linux /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += cpu_seconds(int(child))
    return total


def start_agi(config: Path, port: int, log: Path) -> subprocess.Popen:
    proc = start_daemon("astertrack-agi", config, "--port", str(port), log=log)
    wait_for_port(port, proc, name="astertrack-agi", log=log)
    return proc


async def run_fastagi(port: int, concurrency: int, rounds: int, seq0: int):
    """``rounds`` times: ``concurrency`` calls at the same instant."""
    latencies: list[float | None] = []
    wall = 0.0
    seq = seq0
    for _ in range(rounds):
        started = time.perf_counter()
        results = await asyncio.gather(*(fastagi_call(port, seq + i, 0) for i in range(concurrency)))
        wall += time.perf_counter() - started
        latencies += results
        seq += concurrency
    return latencies, wall, seq


async def run_spaced(port: int, calls: int, gap: float, seq0: int):
    """One call at a time, starting ``gap`` seconds apart: no overlap, but idle time between."""
    latencies: list[float | None] = []
    started = time.perf_counter()
    for index in range(calls):
        begun = time.perf_counter()
        latencies.append(await fastagi_call(port, seq0 + index, 0))
        await asyncio.sleep(max(0.0, gap - (time.perf_counter() - begun)))
    return latencies, time.perf_counter() - started, seq0 + calls


async def run_in_progress(port: int, callers: int, seconds: float, hold: float, seq0: int):
    """N callers, each: talk for a random time, then place the next call; for ``seconds``."""
    rng = random.Random(42)
    latencies: list[float | None] = []
    counter = [seq0]
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        await asyncio.sleep(rng.uniform(0, hold))  # calls already up when the bench starts
        while time.perf_counter() < deadline:
            counter[0] += 1
            latencies.append(await fastagi_call(port, counter[0], 0))
            await asyncio.sleep(rng.expovariate(1 / hold))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies, time.perf_counter() - started, counter[0] + 1


async def reference_session(reader, writer, work_ms: float) -> None:
    """The route's wire shape with no database and no Python logic: ask device states, burn
    ``work_ms`` of CPU, UserEvent, MSet with CT_STATUS=OK, close.  What this machine gives a
    server of known cost, at this moment: the yardstick for the daemon's figures."""
    try:
        while (await reader.readline()).strip():
            pass
        for index, line in enumerate((b"GET FULL VARIABLE ${DEVICE_STATE(PJSIP/1000)}\n",
                                      b'EXEC UserEvent "AstertrackRoute,call_id: x"\n',
                                      b'EXEC MSet "CT_DIAL=PJSIP/1000,CT_STATUS=OK"\n')):
            if index == 1:
                end = time.perf_counter() + work_ms / 1000
                while time.perf_counter() < end:
                    pass
            writer.write(line)
            await writer.drain()
            await reader.readline()
    except ConnectionError:  # the fake Asterisk hung up first: as the daemon, just end the session
        pass
    finally:
        writer.close()


async def serve_reference(sock: socket.socket, work_ms: float) -> None:
    server = await asyncio.start_server(lambda r, w: reference_session(r, w, work_ms), sock=sock)
    async with server:
        await server.serve_forever()


def reference_server(port: int, work_ms: float, workers: int) -> None:
    """Pre-forked like the daemon: ``workers`` processes accepting on one socket."""
    sock = socket.create_server(("127.0.0.1", port))
    sock.setblocking(False)
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    run_client(serve_reference(sock, work_ms))


def start_reference(port: int, work_ms: float, workers: int) -> subprocess.Popen:
    proc = spawn([sys.executable, __file__, "--reference-server", str(port), str(work_ms), str(workers)])
    wait_for_port(port, proc, name="the reference server")
    return proc


def run_client(coro):
    """The fake Asterisk on the daemon's own loop (uvloop when installed): Asterisk is C, our
    side of the wire should cost as little as we can make it so the figures are the daemon's."""
    return run_event_loop(coro)


async def run_script(concurrency: int, calls: int, env_vars: dict, seq0: int, log):
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    results = await asyncio.gather(*(script_call(seq0 + i, env_vars, gate, log) for i in range(calls)))
    return list(results), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--concurrency", type=int, default=100, help="calls in flight at once (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="burst: rounds of N simultaneous calls (default 5)")
    parser.add_argument("--script-calls", type=int, default=None, help="calls through the script (default N)")
    parser.add_argument("--script-single", type=int, default=10,
                        help="script calls made one at a time, for its unloaded latency (default 10)")
    parser.add_argument("--hold", type=float, default=1.0, help="in-progress: mean seconds a call stays up (default 1)")
    parser.add_argument("--seconds", type=float, default=15.0, help="in-progress: how long to run (default 15)")
    parser.add_argument("--managers", type=int, default=20)
    parser.add_argument("--db-threads", type=int, default=0, help="[agi] db_threads for the daemon (0 = default)")
    parser.add_argument("--max-parallel", type=int, default=8, help="[agi] max_parallel for the daemon (default 8)")
    parser.add_argument("--workers", type=int, default=0,
                        help="[agi] workers: daemon processes (default 0: the daemon's own default, one per core)")
    parser.add_argument("--db-url", default=None, help="an EMPTY database to seed and use (default: temp SQLite)")
    parser.add_argument("--reference-ms", default="1",
                        help="in-progress load against a server that only burns this much CPU per call; "
                             "a comma-separated list for the curve (default 1; 0 = skip)")
    parser.add_argument("--postgres", nargs="?", const="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        default=None, metavar="ADMIN_URL",
                        help="use a throw-away PostgreSQL database created through ADMIN_URL")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="astertrack-bench-"))
    db_url = args.db_url or f"sqlite:///{workdir / 'bench.db'}"
    scratch = contextlib.ExitStack()  # the throw-away PostgreSQL database, dropped at the end
    if args.postgres:
        db_url = scratch.enter_context(throwaway_postgres(args.postgres, "astertrack_agibench"))
    seed(db_url, args.managers)
    config = workdir / "astertrack.conf"
    # reservation_seconds = 0: every call takes the full path (ask, reserve, record) instead of
    # finding all managers held by the previous round and going straight to the fallback.
    config.write_text(f"[database]\nurl = {db_url}\npool_size = 10\n\n[agi]\nreservation_seconds = 0\n"
                      f"db_threads = {args.db_threads}\nmax_parallel = {args.max_parallel}\n"
                      f"workers = {args.workers}\n"
                      "metrics_port = 0\nrequest_timeout = 600\nfallback_dial = PJSIP/200\n\n"
                      "[general]\nlog_level = WARNING\n")
    env_vars = {**os.environ, "ASTERTRACK_CONFIG": str(config)}
    load = os.getloadavg()[0]  # before we add our own load
    port = free_port()
    daemon = start_agi(config, port, workdir / "agi.log")
    n = args.concurrency
    rows = []
    try:
        _, _, seq = run_client(run_fastagi(port, min(20, n), 2, 0))  # warm-up
        # one call at a time: the decision's own latency, no queueing behind other calls
        cpu_before, sequential = cpu_seconds(daemon.pid), []
        started = time.perf_counter()
        for _ in range(n):
            result, _, seq = run_client(run_fastagi(port, 1, 1, seq))
            sequential += result
        rows.append(summary("fastagi-1-by-1", sequential, time.perf_counter() - started))
        cpu_per_call_ms = (cpu_seconds(daemon.pid) - cpu_before) / n * 1000
        cpu_before = cpu_seconds(daemon.pid)
        latencies, wall, seq = run_client(run_spaced(port, n, args.hold / n, seq))
        rows.append(summary("fastagi-spaced", latencies, wall))
        cpu_spaced_ms = (cpu_seconds(daemon.pid) - cpu_before) / n * 1000
        cpu_before = cpu_seconds(daemon.pid)
        latencies, wall, seq = run_client(run_in_progress(port, n, args.seconds, args.hold, seq))
        rows.append(summary("fastagi-in-progress", latencies, wall))
        cpu_steady_ms = (cpu_seconds(daemon.pid) - cpu_before) / max(1, len(latencies)) * 1000
        latencies, wall, seq = run_client(run_fastagi(port, n, args.rounds, seq))
        rows.append(summary("fastagi-burst", latencies, wall))
    finally:
        stop_process(daemon)
    workers = resolve_workers(args.workers, db_url)
    references = []
    for work_ms in [float(value) for value in args.reference_ms.split(",") if float(value) > 0]:
        ref_port = free_port()
        ref_proc = start_reference(ref_port, work_ms, workers)
        try:
            latencies, wall, _ = run_client(run_in_progress(ref_port, n, args.seconds, args.hold, 0))
            references.append((work_ms, summary(f"reference-{work_ms:g}ms", latencies, wall)))
        finally:
            stop_process(ref_proc)
    reference_ms, reference = references[0] if references else (None, None)
    script_log = (workdir / "script.log").open("ab")  # the scripts' stderr: why a call got no decision
    if args.script_single:
        latencies, wall = run_client(run_script(1, args.script_single, env_vars, seq, script_log))
        rows.append(summary("script-1-by-1", latencies, wall))
        seq += args.script_single
    script_calls = args.script_calls or n
    latencies, wall = run_client(run_script(n, script_calls, env_vars, seq, script_log))
    rows.append(summary("script", latencies, wall))
    script_log.close()
    if any(row["calls"] != row["decided"] for row in rows):  # say why, before the work dir goes
        lines = [line for line in (workdir / "script.log").read_text(errors="replace").splitlines()
                 if " ERROR " in line or " WARNING " in line]
        lines += [line for line in (workdir / "agi.log").read_text(errors="replace").splitlines()
                  if " ERROR " in line or " WARNING " in line]
        print("calls without a decision; the logs say:", *lines[-10:], sep="\n  ")

    cores = os.cpu_count()
    print(f"AGI decision latency, {n} concurrent calls, {cores} CPU cores, load before start {load:.1f}, "
          f"DB {db_url.split(':')[0]}, {workers} daemon process(es); daemon CPU {cpu_per_call_ms:.2f} ms per decision "
          f"({cpu_spaced_ms:.2f} ms when spaced {args.hold / n * 1000:g} ms apart, "
          f"{cpu_steady_ms:.2f} ms in progress)")
    print(f"{'mode':<16}{'calls':>7}{'decided':>9}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'calls/s':>10}")
    for row in rows + [row for _, row in references]:
        print(f"{row['mode']:<16}{row['calls']:>7}{row['decided']:>9}{row['p50_ms']:>10}{row['p99_ms']:>10}"
              f"{row['max_ms']:>10}{row['calls_per_s']:>10}")
    if references:
        print(f"(reference-N ms: the in-progress load against a server of {workers} process(es) that only burns "
              f"N ms of CPU per call behind the same round trips - this machine, now)")
    single, spaced, steady, burst, script = rows[0], rows[1], rows[2], rows[3], rows[-1]
    script_single = rows[4] if args.script_single else None
    figures = {
        # the goal's figures: N concurrent calls (in-progress), script like for like (N at once)
        "fastagi_p50_ms": steady["p50_ms"], "fastagi_p99_ms": steady["p99_ms"],
        "fastagi_calls_per_s": steady["calls_per_s"], "fastagi_calls": steady["calls"],
        "fastagi_burst_p50_ms": burst["p50_ms"], "fastagi_burst_p99_ms": burst["p99_ms"],
        "fastagi_burst_calls_per_s": burst["calls_per_s"],
        "fastagi_single_p50_ms": single["p50_ms"], "fastagi_single_p99_ms": single["p99_ms"],
        "fastagi_cpu_ms_per_call": round(cpu_per_call_ms, 2),
        "fastagi_spaced_cpu_ms_per_call": round(cpu_spaced_ms, 2), "fastagi_spaced_p50_ms": spaced["p50_ms"],
        "fastagi_in_progress_cpu_ms_per_call": round(cpu_steady_ms, 2),
        "fastagi_spaced_p99_ms": spaced["p99_ms"],
        "script_p50_ms": script["p50_ms"], "script_p99_ms": script["p99_ms"],
        "script_calls_per_s": script["calls_per_s"],
        "script_single_p50_ms": script_single["p50_ms"] if script_single else None,
        "speedup_single_p50": round(script_single["p50_ms"] / single["p50_ms"], 1) if script_single else None,
        # like for like: N calls at once through each
        "speedup_p99": round(script["p99_ms"] / burst["p99_ms"], 1) if burst["p99_ms"] else None,
        "reference_work_ms": reference_ms,
        "reference_p50_ms": reference["p50_ms"] if reference else None,
        "reference_p99_ms": reference["p99_ms"] if reference else None,
        "reference_p99_ms_by_work_ms": {f"{ms:g}": row["p99_ms"] for ms, row in references},
        "concurrency": n, "hold_s": args.hold, "cores": cores, "workers": workers,
        "db": db_url.split(":")[0], "load_avg_1m": round(load, 1), "undecided": sum(r["calls"] - r["decided"] for r in rows),
    }
    scratch.close()
    if not args.db_url:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reference-server"]:
        reference_server(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
