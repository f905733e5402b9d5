"""AMI ingest benchmark: recorded calls multiplied to thousands of concurrent calls.

Run from the repo root:  python bench/ami_ingest.py [--copies N] [--spacing S]

1. State machine: the recorded streams (every recording in tests/fixtures/asterisk, real event mix incl. VarSet,
   CEL, Newexten noise) are copied under fresh ids and interleaved in time, then pushed through
   the parser and the call state machine in 64 KiB reads on one core.  Reported per *stream* event
   (everything Asterisk sent, including what the parser drops early).
2. Listener: the same stream is served over loopback TCP by the fake AMI server to the real
   ``astertrack-ami`` daemon (a subprocess) writing to SQLite with raw-event storage on; timed
   from login until every call is finished in the database.  Peak RSS is the daemon's VmHWM.

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ami_listener.replay import multiply  # noqa: E402
from astertrack.callflow.ami_parse import AmiStreamParser  # noqa: E402
from astertrack.callflow.state_machine import OP_FINISH, CallStateMachine  # noqa: E402
from astertrack.db.engine import make_engine  # noqa: E402
from astertrack.db.models import Base  # noqa: E402
from astertrack.samples.processes import spawn, stop_process  # noqa: E402
from tests.ami.fake_ami import FakeAmiServer  # noqa: E402
from tests.ami.fake_ami import Session as Script  # noqa: E402

RECORDED = ROOT / "tests" / "fixtures" / "asterisk"  # the recordings the suite replays


def build_stream(copies: int, spacing: float) -> tuple[bytes, int, int]:
    captures = sorted((RECORDED / "ami").glob("*.ami.txt"))
    data = [p.read_bytes() for p in captures]
    stream = multiply(data, copies, spacing)
    tracked = sum(1 for n in range(copies) if "_z_" not in captures[n % len(captures)].name)
    return stream, stream.count(b"\r\n\r\n"), tracked


def bench_state_machine(stream: bytes) -> dict:
    parser = AmiStreamParser()
    machine = CallStateMachine()
    finished = peak = 0
    chunk = 65536
    started = time.process_time()
    for n, pos in enumerate(range(0, len(stream), chunk)):
        for msg in parser.feed(stream[pos:pos + chunk]):
            machine.feed(msg)
        finished += sum(1 for op in machine.drain() if op[0] == OP_FINISH)
        if n % 16 == 0:
            peak = max(peak, machine.calls_in_progress)
    elapsed = time.process_time() - started
    return {"seconds": elapsed, "finished": finished, "peak": peak, "kept": parser.parsed,
            "dropped": parser.dropped, "tracked": machine.events_seen}


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("select count(*) from calls where state = 'finished'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


async def bench_listener(stream: bytes, expected_calls: int, workdir: Path) -> dict:
    db = workdir / "bench.db"
    engine = make_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    engine.dispose()
    server = FakeAmiServer([Script(stream=stream)], secret="bench")
    port = await server.start()
    config = workdir / "astertrack.conf"
    config.write_text(f"[general]\nnode = bench\nlog_level = WARNING\n[database]\nurl = sqlite:///{db}\n"
                      f"[ami]\nport = {port}\nsecret = bench\nmetrics_port = 0\nping_interval = 30\n")
    config.chmod(0o600)
    proc = spawn([sys.executable, "-m", "ami_listener.daemon", "-c", str(config)], cwd=ROOT,
                 env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while server.logins == 0:
            if proc.poll() is not None:
                raise SystemExit(f"daemon exited with {proc.returncode}")
            await asyncio.sleep(0.01)
        started = time.monotonic()
        cpu_before = _cpu_seconds(proc.pid)
        rss = 0.0
        while (done := await asyncio.to_thread(_finished, db)) < expected_calls:
            rss = max(rss, _vm_hwm_mb(proc.pid))
            if time.monotonic() - started > 600:
                raise SystemExit(f"only {done} of {expected_calls} calls finished in 600 s")
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(proc.pid) - cpu_before
        rss = max(rss, _vm_hwm_mb(proc.pid))
    finally:
        stop_process(proc)
        await server.close()
    with sqlite3.connect(db) as conn:
        events = conn.execute("select count(*) from call_events").fetchone()[0]
        calls = conn.execute("select count(*) from calls").fetchone()[0]
    return {"seconds": elapsed, "cpu": cpu, "rss_mb": rss, "calls": calls, "raw_events_stored": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1500, help="calls to replay (default 1500)")
    parser.add_argument("--spacing", type=float, default=0.004, help="seconds between call starts")
    args = parser.parse_args()

    stream, events, tracked_calls = build_stream(args.copies, args.spacing)
    print(f"stream: {args.copies} recorded calls interleaved, {events:,} events, {len(stream) / 1e6:.1f} MB, "
          f"{tracked_calls} inbound calls to track")

    machine = bench_state_machine(stream)
    tracker_rate = events / machine["seconds"]
    print(f"call state machine (parse + track, one core): {machine['seconds']:.2f} s CPU, {tracker_rate:,.0f} stream events/s; "
          f"kept {machine['kept']:,}, dropped early {machine['dropped']:,}, state-machine events "
          f"{machine['tracked']:,} ({machine['tracked'] / machine['seconds']:,.0f}/s); calls finished "
          f"{machine['finished']}, peak calls in progress {machine['peak']}")
    if machine["finished"] != tracked_calls:
        raise SystemExit(f"state machine finished {machine['finished']} calls, expected {tracked_calls}")

    with tempfile.TemporaryDirectory(prefix="astertrack-bench-") as tmp:
        listener = asyncio.run(bench_listener(stream, tracked_calls, Path(tmp)))
    listener_rate = events / listener["seconds"]
    print(f"listener (TCP + parse + track + SQLite writes, raw events stored): {listener['seconds']:.2f} s wall, "
          f"{listener_rate:,.0f} stream events/s; daemon CPU {listener['cpu']:.2f} s "
          f"({events / max(listener['cpu'], 1e-9):,.0f} events per CPU second); {listener['calls']} call rows, "
          f"{listener['raw_events_stored']:,} raw events stored; daemon peak RSS {listener['rss_mb']:.1f} MB")
    if listener["calls"] != tracked_calls:
        raise SystemExit(f"listener wrote {listener['calls']} calls, expected {tracked_calls}")
    print(f"(bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"holds the generated stream)")
    print(json.dumps({"tracker_events_per_s": round(tracker_rate), "listener_events_per_s": round(listener_rate),
                      "peak_rss_mb": round(listener["rss_mb"], 1), "calls_in_progress": machine["peak"],
                      "listener_events_per_cpu_s": round(events / max(listener["cpu"], 1e-9)),
                      "stream_events": events, "calls": tracked_calls}))


if __name__ == "__main__":
    main()
