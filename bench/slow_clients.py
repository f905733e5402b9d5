"""Page views while 500 slow or idle clients hang on the tracker (issue #20).

    python bench/slow_clients.py            (from the repo root; about 40 s)

Creates a throwaway database on the local PostgreSQL (``ASTERTRACK_BENCH_PG``, default
postgres@127.0.0.1:5432) with 10 sites of 200 numbers, starts the tracker under gunicorn exactly
as astertrack-tracker.service does (``--config python:astertrack.ops.gunicorn_conf``, 2 workers x
8 threads; ``BENCH_WORKER=gthread`` for gunicorn's gthread worker, how it was served before), and
measures page views (``POST /v/start`` on a new connection, ``BENCH_VISITORS`` at a time, 5 s
client timeout) twice for ``BENCH_SECONDS`` each:

1. quiet: nothing else on the server;
2. hostile: ``BENCH_HOSTILE`` (500) connections held open meanwhile, a quarter each idle after a
   finished keep-alive request, connected and silent, stalled in the request headers (a byte every
   2 s), stalled in the body (half sent, then a byte every 2 s).  Each one the server closes
   (its deadlines) is opened again at once, so the 500 stay there for the whole phase.

Prints page views per second, p50 / p99 / max latency and failures for each phase, how many
hostile connections were open at the end and how many the server had cut off; the last line is
one JSON object with the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from astertrack.samples.processes import BIN, free_port, stop_process, throwaway_postgres, wait_for_http  # noqa: E402

PG_ADMIN = os.environ.get("ASTERTRACK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WORKER = os.environ.get("BENCH_WORKER", "event")
HOSTILE = int(os.environ.get("BENCH_HOSTILE", "500"))
VISITORS = int(os.environ.get("BENCH_VISITORS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
TIMEOUT = 5.0
SITES, POOL_SIZE = 10, 200
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
ORIGIN = "https://shop.example.ru"


def seed(url: str) -> list[str]:
    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Base
    from astertrack.samples.factories import pooled_site

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as db:
        keys = [pooled_site(db, POOL_SIZE, name=f"slow {s}", first_number=f"+7499{s:03d}0000",
                            domains=["shop.example.ru"], commit=False).public_key for s in range(SITES)]
        db.commit()
    engine.dispose()
    return keys


def start_body(key: str) -> bytes:
    return json.dumps({"k": key, "visitor_id": uuid.uuid4().hex, "new": True,
                       "landing_page": "https://shop.example.ru/landing?utm_source=bench"}).encode()


def request(method: str, path: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: shop.example.ru", f"User-Agent: {UA}", f"Origin: {ORIGIN}"]
    if body:
        head += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def page_view(port: int, key: str) -> tuple[int, float]:
    """(status, or 0 when it failed or took over TIMEOUT; seconds)."""
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request("POST", "/v/start", start_body(key)))
            status = await read_response(reader)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    return status, time.monotonic() - started


async def visitors(port: int, keys: list[str], seconds: float) -> list[tuple[int, float]]:
    """VISITORS closed loops of page views for ``seconds``."""
    results: list[tuple[int, float]] = []
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < deadline:
            results.append(await page_view(port, random.choice(keys)))

    await asyncio.gather(*(loop() for _ in range(VISITORS)))
    return results


class Hostile:
    """HOSTILE connections that hang; each one the server closes is opened again."""

    KINDS = ("keepalive", "silent", "headers", "body")

    def __init__(self, port: int, key: str):
        self.port, self.key = port, key
        self.open = 0
        self.cut_off = 0
        self.stopping = False
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self.hold(self.KINDS[i % 4])) for i in range(HOSTILE)]
        while self.open < HOSTILE and not all(t.done() for t in self.tasks):
            await asyncio.sleep(0.05)

    async def hold(self, kind: str) -> None:
        while not self.stopping:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            self.open += 1
            try:
                await self.hang(kind, reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self.open -= 1
                writer.close()
            if not self.stopping:
                self.cut_off += 1

    async def hang(self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Return when the server closed the connection."""
        trickle = b""
        if kind == "keepalive":
            writer.write(request("GET", "/v.js"))
            await read_response(reader)
        elif kind == "headers":
            writer.write(f"POST /v/start HTTP/1.1\r\nHost: shop.example.ru\r\nUser-Agent: {UA}\r\n".encode())
            trickle = b"X-Slow: " + b"a" * 10_000
        elif kind == "body":
            body = start_body(self.key)
            whole = request("POST", "/v/start", body)
            writer.write(whole[: -len(body) // 2])
            trickle = whole[-len(body) // 2:]
        await writer.drain()
        for byte in trickle:
            if self.stopping:
                return
            # reading detects the close; a stalled request gets no answer before it
            try:
                async with asyncio.timeout(2):
                    if not await reader.read(65536):
                        return
            except TimeoutError:
                pass
            writer.write(bytes([byte]))
            await writer.drain()
        while not self.stopping and await reader.read(65536):
            pass

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def summary(results: list[tuple[int, float]], seconds: float) -> dict:
    latencies = sorted(t for _, t in results)
    ok = [t for status, t in results if status == 200]

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0.0

    return {"page_views": len(results), "ok": len(ok), "failed": len(results) - len(ok),
            "ok_per_s": round(len(ok) / seconds, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": round(latencies[-1] * 1000, 1) if latencies else 0.0}


def line(name: str, s: dict) -> str:
    return (f"{name}: {s['ok_per_s']:.0f} page views/s answered  p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  "
            f"max {s['max_ms']:.1f} ms  failed {s['failed']} of {s['page_views']}")


async def measure(port: int, keys: list[str]) -> dict:
    await visitors(port, keys, 2)  # warm-up: connections, caches
    quiet = summary(await visitors(port, keys, SECONDS), SECONDS)
    print(line("quiet  ", quiet), flush=True)
    hostile = Hostile(port, keys[0])
    await hostile.start()
    opened = hostile.open
    try:
        under = summary(await visitors(port, keys, SECONDS), SECONDS)
        held_at_end = hostile.open
    finally:
        await hostile.stop()
    print(line(f"{HOSTILE} hostile", under) + f"  (hostile open: {opened} at start, {held_at_end} at the end; "
          f"{hostile.cut_off} cut off by the server and reopened)", flush=True)
    return {"quiet": quiet, "under_hostile": under, "hostile_open_start": opened, "hostile_open_end": held_at_end,
            "hostile_cut_off": hostile.cut_off}


def main() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * HOSTILE + 1024)), hard))
    load_before = os.getloadavg()[0]
    database = contextlib.ExitStack()
    url = database.enter_context(throwaway_postgres(PG_ADMIN))
    work = Path(tempfile.mkdtemp(prefix="astertrack-slow-"))
    proc = None
    try:
        keys = seed(url)
        port = free_port()
        config = work / "astertrack.conf"
        config.write_text(textwrap.dedent(f"""\
            [database]
            url = {url}
            [tracker]
            listen_port = {port}
            rate_limit_per_minute = 0
            """))
        config.chmod(0o600)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASTERTRACK_")},
               "ASTERTRACK_CONFIG": str(config), "ASTERTRACK_GUNICORN_APP": "tracker",
               "ASTERTRACK_GUNICORN_WORKER": WORKER, "PYTHONPATH": str(REPO)}
        log = work / "gunicorn.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(BIN / "gunicorn"), "--config", "python:astertrack.ops.gunicorn_conf",
                                     "tracker:create_app()"], cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc, log=log, timeout=30)
        print(f"tracker: gunicorn as deployed, worker {WORKER}, 2 workers x 8 threads, PostgreSQL; "
              f"{VISITORS} visitors at a time, {SECONDS:g} s per phase", flush=True)
        result = asyncio.run(measure(port, keys))
        result.update({"worker": WORKER, "hostile": HOSTILE, "visitors": VISITORS, "seconds": SECONDS,
                       "load_before": round(load_before, 2), "cpus": os.cpu_count()})
        print(json.dumps(result))
    finally:
        if proc is not None:
            stop_process(proc, 30, group=True)
        database.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
