"""500 live streams against the web admin as deployed, with calls ringing and pages loading (issue #21).

    python bench/live_load.py            (from the repo root; about a minute)

Creates a throwaway database on the local PostgreSQL (``ASTERTRACK_BENCH_PG``, default
postgres@127.0.0.1:5432) with one site, ``BENCH_MANAGERS`` (400) managers each with a manager
login, 10 supervisors and ``BENCH_HISTORY`` (20,000) past calls over 30 days; starts the admin
exactly as astertrack-web.service does (``gunicorn --config python:astertrack.ops.gunicorn_conf
'webadmin:create_app()'``: the event worker, 2 workers x 8 threads); then

1. opens ``BENCH_STREAMS`` (500) streams at once: every manager's pop-up
   (``/live/popup/stream``), the rest live boards (``/live/board/stream``) spread over the
   supervisors, each on its own connection with its user's session cookie;
2. for ``BENCH_SECONDS`` (30) inserts ``BENCH_RINGS`` (5) ringing calls a second, each routed
   to a random manager, and measures from the INSERT's commit to the ``ring`` event at that
   manager's pop-up (a ring at any other pop-up counts as wrong); a ringing call is answered 3 s
   later, as a call centre's are, so the board changes at every tick;
3. meanwhile 2 supervisors load ordinary pages in a loop (calls log, sources report, managers
   report, missed calls), each on a new connection, and their latency is measured;
4. reads the stream server's RSS (gunicorn master and workers, summed) at the end.

Sessions are made as the login page makes them (a ``web_sessions`` row and the token in the
signed cookie) without 410 argon2 password checks.  Prints the figures; the last line is one
JSON object (``streams``, ``popup_p99_ms``, ``page_p99_ms``, ``rss_mb`` and more).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from astertrack.samples.processes import BIN, free_port, stop_process, throwaway_postgres, wait_for_http  # noqa: E402

PG_ADMIN = os.environ.get("ASTERTRACK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
STREAMS = int(os.environ.get("BENCH_STREAMS", "500"))
MANAGERS = int(os.environ.get("BENCH_MANAGERS", "400"))
SUPERVISORS = 10
HISTORY = int(os.environ.get("BENCH_HISTORY", "20000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
RINGS = float(os.environ.get("BENCH_RINGS", "5"))
PAGE_CLIENTS = 2
PAGES = ["/calls/", "/reports/sources", "/reports/managers", "/reports/missed"]
SECRET = "live-load-secret"
RING_SECONDS = 3.0


def seed(url: str) -> tuple[list[int], list[int], list[int], int]:
    """(manager ids, their users' ids, supervisors' user ids, site id)."""
    from sqlalchemy import insert

    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Base, Call, User
    from astertrack.db.types import utcnow
    from astertrack.passwords import hash_password
    from astertrack.samples.factories import add_managers, add_site, add_static_source

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    password = hash_password("bench-password-1")  # one hash for every login: nobody logs in here
    with make_session_factory(engine)() as db:
        site = add_site(db, "Live load")
        sources = [add_static_source(db, site, f"Source {i}", [f"+7495100{i:04d}"]) for i in range(5)]
        managers = add_managers(db, [str(1000 + i) for i in range(MANAGERS)], device_state="NOT_INUSE")
        users = [User(login=f"m{m.id}", password_hash=password, role="manager", manager_id=m.id, locale="en")
                 for m in managers]
        supervisors = [User(login=f"super{i}", password_hash=password, role="supervisor", locale="en")
                       for i in range(SUPERVISORS)]
        db.add_all(users + supervisors)
        now = utcnow()
        rng = random.Random(21)
        rows = []
        for _ in range(HISTORY):
            started = now - dt.timedelta(seconds=rng.uniform(600, 30 * 86400))
            answered = rng.random() < 0.8
            rows.append(dict(site_id=site.id, source_id=rng.choice(sources).id, did=f"+7495100{rng.randrange(5):04d}",
                        caller_number=f"+7916{rng.randrange(10**7):07d}", started_at=started,
                        ended_at=started + dt.timedelta(seconds=100), state="finished",
                        outcome="answered" if answered else "missed",
                        missed_reason=None if answered else "no_answer", wait_seconds=rng.uniform(2, 20),
                        talk_seconds=rng.uniform(20, 300) if answered else 0, total_seconds=120,
                        manager_id=rng.choice(managers).id if answered else None,
                             routed_manager_id=rng.choice(managers).id, is_first_call=rng.random() < 0.6))
        db.execute(insert(Call), rows)
        db.commit()
        out = ([m.id for m in managers], [u.id for u in users], [u.id for u in supervisors], site.id)
    engine.dispose()
    return out


def cookies(url: str, user_ids: list[int]) -> dict[int, str]:
    """A session cookie per user, made as ``security.start_session`` makes it."""
    from flask import Flask
    from sqlalchemy import select

    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import User, WebSession
    from astertrack.db.types import utcnow

    signer = Flask("bench")
    signer.secret_key = SECRET
    serializer = signer.session_interface.get_signing_serializer(signer)
    engine = make_engine(url)
    out = {}
    with make_session_factory(engine)() as db:
        hashes = dict(db.execute(select(User.id, User.password_hash).where(User.id.in_(user_ids))).all())
        now = utcnow()
        for user_id in user_ids:
            token = secrets.token_urlsafe(32)
            db.add(WebSession(id=hashlib.sha256(token.encode()).hexdigest(), user_id=user_id,
                              password_mark=hashlib.sha256(hashes[user_id].encode()).hexdigest(),
                              created_at=now, last_seen_at=now))
            out[user_id] = "session=" + serializer.dumps({"_user_id": str(user_id), "_fresh": True, "sid": token})
        db.commit()
    engine.dispose()
    return out


# ---- the client side (asyncio, raw HTTP/1.1)

def request(path: str, cookie: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n".encode()


class Streams:
    def __init__(self, port: int):
        self.port = port
        self.open = 0
        self.failed: list[str] = []
        self.rings: dict[int, tuple[int, float]] = {}  # call id -> (manager id, arrival)
        self.wrong = 0
        self.boards = 0
        self.board_bytes = 0
        self.ended = 0
        self.stopping = False

    async def hold(self, path: str, cookie: str, manager_id: int | None) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        except OSError as exc:
            self.failed.append(f"connect: {exc}")
            return
        try:
            writer.write(request(path, cookie))
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            if status != b"200":
                self.failed.append(f"{path}: {status.decode()}")
                return
            self.open += 1
            buffer = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                buffer += (await reader.readexactly(size + 2))[:-2]  # a chunk ends with CRLF
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    self.event(block, manager_id)
            self.ended += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if not self.stopping:
                self.failed.append(f"{path}: {type(exc).__name__}")
        finally:
            writer.close()

    def event(self, block: bytes, manager_id: int | None) -> None:
        if block.startswith(b"event: board"):
            self.boards += 1
            self.board_bytes += len(block)
        elif block.startswith(b"event: ring"):
            arrival = time.monotonic()
            card = json.loads(block.split(b"data: ", 1)[1])
            self.rings.setdefault(card["id"], (manager_id, arrival))
            if card["id"] in self.rings and self.rings[card["id"]][0] != manager_id:
                self.wrong += 1


async def pages(port: int, cookie: str, until: float, results: list[tuple[int, float, str]]) -> None:
    i = 0
    while time.monotonic() < until:
        path = PAGES[i % len(PAGES)]
        i += 1
        started = time.monotonic()
        status = 0
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request(path, cookie))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                await reader.read()  # Connection: close
                writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        results.append((status, time.monotonic() - started, path))


def ring_all(url: str, site_id: int, manager_ids: list[int], until: float, sent: dict[int, tuple[int, float]]) -> None:
    """In a thread: insert ringing calls, answer each RING_SECONDS later."""
    from sqlalchemy import update

    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Call
    from astertrack.db.types import utcnow

    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = random.Random(2121)
    ringing: list[tuple[float, int]] = []
    next_at = time.monotonic()
    with factory() as db:
        while time.monotonic() < until:
            manager = rng.choice(manager_ids)
            call = Call(site_id=site_id, caller_number=f"+7926{rng.randrange(10**7):07d}", did="+74951000000",
                        state="ringing", started_at=utcnow(), routed_manager_id=manager)
            db.add(call)
            db.commit()
            sent[call.id] = (manager, time.monotonic())
            ringing.append((time.monotonic(), call.id))
            due = [cid for at, cid in ringing if time.monotonic() - at >= RING_SECONDS]
            if due:
                db.execute(update(Call).where(Call.id.in_(due)).values(state="up", answered_at=utcnow()))
                db.commit()
                ringing = [(at, cid) for at, cid in ringing if cid not in due]
            next_at += 1 / RINGS
            time.sleep(max(0.0, next_at - time.monotonic()))
    engine.dispose()


def rss_mb(master_pid: int) -> float:
    """Resident memory of the gunicorn master and its workers, summed."""
    pids = [master_pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master_pid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1) if values else 0.0


async def measure(port: int, master_pid: int, url: str, site_id: int, manager_ids: list[int],
                  manager_cookies: list[str], super_cookies: list[str]) -> dict:
    streams = Streams(port)
    popups = min(len(manager_ids), STREAMS)
    plan = [("/live/popup/stream", manager_cookies[i], manager_ids[i]) for i in range(popups)]
    plan += [("/live/board/stream", super_cookies[i % len(super_cookies)], None) for i in range(STREAMS - popups)]
    started = time.monotonic()
    tasks = [asyncio.create_task(streams.hold(path, cookie, mid)) for path, cookie, mid in plan]
    while streams.open + len(streams.failed) < len(plan) and time.monotonic() - started < 60:
        await asyncio.sleep(0.05)
    opened_in = time.monotonic() - started
    print(f"{streams.open} streams open in {opened_in:.1f} s ({popups} pop-ups, {STREAMS - popups} boards), "
          f"{len(streams.failed)} failed", flush=True)
    rss_idle = rss_mb(master_pid)
    await asyncio.sleep(2)
    until = time.monotonic() + SECONDS
    sent: dict[int, tuple[int, float]] = {}
    page_results: list[tuple[int, float, str]] = []
    ringer = asyncio.to_thread(ring_all, url, site_id, manager_ids, until, sent)
    await asyncio.gather(ringer, *(pages(port, super_cookies[i], until, page_results) for i in range(PAGE_CLIENTS)))
    await asyncio.sleep(2)  # the last rings arrive
    rss = rss_mb(master_pid)
    still_open = sum(1 for t in tasks if not t.done())
    latencies = [streams.rings[cid][1] - at for cid, (mid, at) in sent.items() if cid in streams.rings]
    streams.stopping = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ok_pages = [t for status, t, _ in page_results if status == 200]
    return {
        "streams": still_open, "streams_opened": streams.open, "stream_failures": len(streams.failed),
        "open_seconds": round(opened_in, 1),
        "rings": len(sent), "rings_delivered": len(latencies), "rings_wrong_manager": streams.wrong,
        "popup_p50_ms": pct(latencies, 0.5), "popup_p99_ms": pct(latencies, 0.99),
        "popup_max_ms": pct(latencies, 1.0),
        "pages": len(page_results), "pages_failed": len(page_results) - len(ok_pages),
        "page_p50_ms": pct([t for _, t, _ in page_results], 0.5),
        "page_p99_ms": pct([t for _, t, _ in page_results], 0.99),
        "page_max_ms": pct([t for _, t, _ in page_results], 1.0),
        "page_p50_ms_by_path": {path: pct([t for _, t, p in page_results if p == path], 0.5) for path in PAGES},
        "board_events": streams.boards, "board_mb_sent": round(streams.board_bytes / 1e6, 1),
        "rss_mb": rss, "rss_mb_streams_idle": rss_idle, "seconds": SECONDS,
    }


def main() -> None:
    with throwaway_postgres(PG_ADMIN, prefix="astertrack_live") as url:
        print(f"seeding {MANAGERS} managers, {SUPERVISORS} supervisors, {HISTORY:,} past calls ...", flush=True)
        manager_ids, user_ids, super_ids, site_id = seed(url)
        cookie_of = cookies(url, user_ids + super_ids)
        work = Path(tempfile.mkdtemp(prefix="astertrack-live-"))
        port = free_port()
        conf = work / "astertrack.conf"
        conf.write_text(textwrap.dedent(f"""\
            [database]
            url = {url}

            [web]
            listen_port = {port}
            secret_key = {SECRET}
            secure_cookies = no

            [recordings]
            dir = {work}
            """))
        log = work / "web.log"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASTERTRACK_")},
               "ASTERTRACK_CONFIG": str(conf), "ASTERTRACK_GUNICORN_APP": "web"}
        with log.open("wb") as out:
            proc = subprocess.Popen([str(BIN / "gunicorn"), "--config", "python:astertrack.ops.gunicorn_conf",
                                     "--access-logfile", "/dev/null", "webadmin:create_app()"],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=REPO)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", proc, name="the web admin", log=log, timeout=60)
            print(f"web admin on :{port} (gunicorn, event worker, 2 workers x 8 threads); "
                  f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
            result = asyncio.run(measure(port, proc.pid, url, site_id, manager_ids,
                                         [cookie_of[u] for u in user_ids], [cookie_of[u] for u in super_ids]))
        finally:
            stop_process(proc, 20, group=True)
            shutil.rmtree(work, ignore_errors=True)
    print(f"rings: {result['rings']} inserted, {result['rings_delivered']} shown, "
          f"{result['rings_wrong_manager']} at a wrong pop-up; INSERT to pop-up p50 {result['popup_p50_ms']} ms, "
          f"p99 {result['popup_p99_ms']} ms, max {result['popup_max_ms']} ms")
    print(f"pages: {result['pages']} ({result['pages_failed']} failed); p50 {result['page_p50_ms']} ms, "
          f"p99 {result['page_p99_ms']} ms, max {result['page_max_ms']} ms; p50 by page: "
          + ", ".join(f"{path} {ms} ms" for path, ms in result["page_p50_ms_by_path"].items()))
    print(f"board events: {result['board_events']:,} ({result['board_mb_sent']} MB); streams open at the end: "
          f"{result['streams']}; RSS (gunicorn master + workers): {result['rss_mb']} MB "
          f"({result['rss_mb_streams_idle']} MB before the load)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
