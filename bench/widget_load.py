"""1,000 visitors chatting at once against the tracker and the admin as deployed (issue #25).

    python bench/widget_load.py          (from the repo root; about a minute and a half)

Creates a throwaway database on the local PostgreSQL (``ASTERTRACK_BENCH_PG``, default
postgres@127.0.0.1:5432) with one site whose widget has the chat on, 10 managers in its routing
rule and a supervisor; starts the tracker and the web admin exactly as their systemd units do
(``gunicorn --config python:astertrack.ops.gunicorn_conf``: the event worker, 2 workers x 8 threads
each); then

1. ``BENCH_CHATS`` (1,000) visitors start a chat (``POST /v/chat/start``, each from its own address
   in X-Forwarded-For, as a reverse proxy passes them) and each holds the chat's stream open
   (``GET /v/chat/stream``) on its own connection; a supervisor holds the admin's chats stream
   (``/chats/stream``: a supervisor is sent every chat);
2. for ``BENCH_SECONDS`` (30) managers reply ``BENCH_REPLIES`` (40) times a second to random chats
   through the chat core, as the admin's reply view does (``conversations.post``), and the time
   from the reply's commit to its ``message`` event on that visitor's stream is measured; meanwhile
   visitors send ``BENCH_SENDS`` (20) messages a second (``POST /v/chat/send``) and the time from
   the request to the ``message`` event on the supervisor's stream is measured;
3. counts what was lost (never arrived within 5 s of the end) and what arrived twice, and reads
   the tracker's RSS (gunicorn master and workers, summed) with the streams open.

The client (one asyncio process, raw HTTP/1.1) shares the machine's two cores with both servers
and PostgreSQL; its own lateness (how late its loop woke up) is printed beside the figures.
Prints the figures; the last line is one JSON object (``chat_connections``,
``chat_delivery_p99_ms``, ``rss_mb`` and more).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import live_load  # noqa: E402  (its session cookies, RSS reading and percentiles)

from astertrack.samples.processes import BIN, free_port, stop_process, throwaway_postgres, wait_for_http  # noqa: E402

PG_ADMIN = os.environ.get("ASTERTRACK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CHATS = int(os.environ.get("BENCH_CHATS", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
REPLIES = float(os.environ.get("BENCH_REPLIES", "40"))
SENDS = float(os.environ.get("BENCH_SENDS", "20"))
MANAGERS = 10
SECRET = live_load.SECRET
GRACE = 5.0  # seconds after the load for the last messages to arrive


def seed(url: str) -> tuple[str, list[int], int]:
    """(the site's public key, manager ids, the supervisor's user id)."""
    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Base, SiteWidget, User
    from astertrack.passwords import hash_password
    from astertrack.samples.factories import add_group, add_managers, add_rule, add_site

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as db:
        site = add_site(db, "Chat load", timezone="UTC")
        managers = add_managers(db, [str(2000 + i) for i in range(MANAGERS)], device_state="NOT_INUSE")
        add_rule(db, "all", add_group(db, "chat", managers), site=site)
        db.add(SiteWidget(site_id=site.id, chat_enabled=True, chat_wait_seconds=3600))
        supervisor = User(login="super", password_hash=hash_password("bench-password-1"), role="supervisor",
                          locale="en")
        db.add(supervisor)
        db.commit()
        out = (site.public_key, [m.id for m in managers], supervisor.id)
    engine.dispose()
    return out


# ---- the client side (asyncio, raw HTTP/1.1)

async def post(port: int, path: str, body: dict, ip: str) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                     f"X-Forwarded-For: {ip}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                     .encode() + data)
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(payload or b"{}")
    except ValueError:
        return status, {}


class Stream:
    """One open SSE stream: calls ``on_event(event, data)`` for each frame."""

    def __init__(self, port: int, path: str, headers: str, on_event):
        self.port, self.path, self.headers, self.on_event = port, path, headers, on_event
        self.opened = asyncio.Event()
        self.status = 0
        self.error: str | None = None

    async def hold(self) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
            writer.write(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.headers}"
                         f"Connection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            self.opened.set()
            if self.status != 200:
                return
            buffer = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                buffer += (await reader.readexactly(size + 2))[:-2]
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
                    if b"event" in fields:
                        self.on_event(fields[b"event"].decode(), fields.get(b"data", b"{}"))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.error = type(exc).__name__
            self.opened.set()
        finally:
            if writer is not None:
                writer.close()


class Ledger:
    """What was sent (stamp -> send time) and what arrived (stamp -> arrival times)."""

    def __init__(self):
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def send(self, stamp: str, at: float) -> None:
        with self.lock:
            self.sent[stamp] = at

    def arrive(self, data: bytes) -> None:
        at = time.monotonic()
        message = json.loads(data)
        text = message.get("text") or ""
        if text.startswith("bench "):
            self.arrived.setdefault(text, []).append(at)

    def latencies(self) -> list[float]:
        return [self.arrived[s][0] - t for s, t in self.sent.items() if s in self.arrived]

    def lost(self) -> int:
        return sum(1 for s in self.sent if s not in self.arrived)

    def twice(self) -> int:
        return sum(1 for times in self.arrived.values() if len(times) > 1)


def reply_all(url: str, chat_ids: list[int], manager_ids: list[int], until: float, ledger: Ledger) -> int:
    """In a thread: managers' replies through the chat core at REPLIES a second, each chat's by its
    manager (the first reply claims it, as the admin's view does)."""
    from astertrack.chat import conversations as chats
    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Chat, Manager
    from astertrack.db.types import utcnow

    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = random.Random(2525)
    owner = {chat_id: manager_ids[i % len(manager_ids)] for i, chat_id in enumerate(chat_ids)}
    n = 0
    next_at = time.monotonic()
    with factory() as db:
        managers = {m.id: m for m in db.query(Manager).filter(Manager.id.in_(manager_ids))}
        while time.monotonic() < until:
            chat_id = rng.choice(chat_ids)
            stamp = f"bench r{n}"
            chat = db.get(Chat, chat_id, populate_existing=True)
            chats.post(db, chat, "manager", stamp, at=utcnow(), manager=managers[owner[chat_id]])
            db.commit()
            ledger.send(stamp, time.monotonic())
            n += 1
            next_at += 1 / REPLIES
            time.sleep(max(0.0, next_at - time.monotonic()))
    engine.dispose()
    return n


async def visitors_send(port: int, key: str, tokens: list[tuple[str, str]], until: float, ledger: Ledger,
                        refused: list[int]) -> None:
    rng = random.Random(77)
    n = 0
    next_at = time.monotonic()
    pending = set()
    while time.monotonic() < until:
        ip, token = rng.choice(tokens)
        stamp = f"bench v{n}"
        n += 1

        async def one(ip=ip, token=token, stamp=stamp):
            started = time.monotonic()
            status, _ = await post(port, "/v/chat/send", {"k": key, "token": token, "text": stamp,
                                                          "client_id": stamp.replace(" ", "-")}, ip)
            if status == 200:
                ledger.send(stamp, started)
            else:
                refused.append(status)

        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += 1 / SENDS
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending, return_exceptions=True)


async def lateness(until: float, out: list[float]) -> None:
    """How late the client's own loop wakes (its share of the CPU): a 10 ms sleep, measured."""
    while time.monotonic() < until:
        started = time.monotonic()
        await asyncio.sleep(0.01)
        out.append(time.monotonic() - started - 0.01)


async def measure(tport: int, wport: int, tracker_pid: int, url: str, key: str, manager_ids: list[int],
                  super_cookie: str) -> dict:
    ips = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(1, CHATS + 1)]
    started = time.monotonic()
    sem = asyncio.Semaphore(50)

    async def start(i: int):
        async with sem:
            return await post(tport, "/v/chat/start", {"k": key, "text": f"hello {i}", "client_id": f"s{i}",
                                                       "lang": "en"}, ips[i])

    answers = await asyncio.gather(*(start(i) for i in range(CHATS)))
    tokens = [(ips[i], body["token"]) for i, (status, body) in enumerate(answers) if status == 200]
    print(f"{len(tokens)} chats started in {time.monotonic() - started:.1f} s "
          f"({CHATS - len(tokens)} refused: {sorted({s for s, _ in answers if s != 200})})", flush=True)

    to_visitors, to_manager = Ledger(), Ledger()
    visitor_streams = [Stream(tport, f"/v/chat/stream?k={key}&token={token}&after=1",
                              f"X-Forwarded-For: {ip}\r\n",
                              lambda event, data: to_visitors.arrive(data) if event == "message" else None)
                       for ip, token in tokens]
    manager_stream = Stream(wport, "/chats/stream", f"Cookie: {super_cookie}\r\n",
                            lambda event, data: to_manager.arrive(data) if event == "message" else None)
    opening = time.monotonic()
    tasks = [asyncio.create_task(s.hold()) for s in [manager_stream, *visitor_streams]]
    await asyncio.gather(*(s.opened.wait() for s in [manager_stream, *visitor_streams]))
    open_now = sum(1 for s in visitor_streams if s.status == 200 and s.error is None)
    print(f"{open_now} visitor streams open in {time.monotonic() - opening:.1f} s; supervisor's stream: "
          f"{manager_stream.status}", flush=True)
    rss_idle = live_load.rss_mb(tracker_pid)
    await asyncio.sleep(2)

    chat_ids = await asyncio.to_thread(_chat_ids, url)
    until = time.monotonic() + SECONDS
    late: list[float] = []
    refused: list[int] = []
    replies = asyncio.to_thread(reply_all, url, chat_ids, manager_ids, until, to_visitors)
    _, sent_replies, _ = await asyncio.gather(visitors_send(tport, key, tokens, until, to_manager, refused),
                                              replies, lateness(until, late))
    rss = live_load.rss_mb(tracker_pid)
    await asyncio.sleep(GRACE)
    still_open = sum(1 for s, t in zip(visitor_streams, tasks[1:], strict=True) if not t.done() and s.status == 200)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    down, up = to_visitors.latencies(), to_manager.latencies()
    both = down + up
    return {
        "chat_connections": still_open, "chats_started": len(tokens), "seconds": SECONDS,
        "replies": sent_replies, "replies_delivered": len(down), "replies_lost": to_visitors.lost(),
        "replies_twice": to_visitors.twice(),
        "to_visitor_p50_ms": live_load.pct(down, 0.5), "to_visitor_p99_ms": live_load.pct(down, 0.99),
        "to_visitor_max_ms": live_load.pct(down, 1.0),
        "visitor_messages": len(to_manager.sent), "visitor_messages_refused": len(refused),
        "visitor_messages_lost": to_manager.lost(), "visitor_messages_twice": to_manager.twice(),
        "to_manager_p50_ms": live_load.pct(up, 0.5), "to_manager_p99_ms": live_load.pct(up, 0.99),
        "to_manager_max_ms": live_load.pct(up, 1.0),
        "chat_delivery_p99_ms": live_load.pct(both, 0.99),
        "client_late_p99_ms": live_load.pct(late, 0.99),
        "rss_mb": rss, "rss_mb_streams_idle": rss_idle,
    }


def _chat_ids(url: str) -> list[int]:
    from sqlalchemy import select

    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Chat

    engine = make_engine(url)
    with make_session_factory(engine)() as db:
        ids = list(db.scalars(select(Chat.id)))
    engine.dispose()
    return ids


def _gunicorn(app: str, which: str, conf: Path, log: Path) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASTERTRACK_")},
           "ASTERTRACK_CONFIG": str(conf), "ASTERTRACK_GUNICORN_APP": which}
    with log.open("wb") as out:
        return subprocess.Popen([str(BIN / "gunicorn"), "--config", "python:astertrack.ops.gunicorn_conf",
                                 "--access-logfile", "/dev/null", app],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=REPO)


def main() -> None:
    with throwaway_postgres(PG_ADMIN, prefix="astertrack_chat") as url:
        key, manager_ids, super_id = seed(url)
        super_cookie = live_load.cookies(url, [super_id])[super_id]
        work = Path(tempfile.mkdtemp(prefix="astertrack-chat-"))
        tport, wport = free_port(), free_port()
        conf = work / "astertrack.conf"
        conf.write_text(textwrap.dedent(f"""\
            [database]
            url = {url}

            [tracker]
            listen_port = {tport}
            rate_limit_per_minute = 0
            trust_forwarded_for = yes

            [web]
            listen_port = {wport}
            secret_key = {SECRET}
            secure_cookies = no

            [recordings]
            dir = {work}
            """))
        procs = []
        try:
            tracker = _gunicorn("tracker:create_app()", "tracker", conf, work / "tracker.log")
            procs.append(tracker)
            web = _gunicorn("webadmin:create_app()", "web", conf, work / "web.log")
            procs.append(web)
            wait_for_http(f"http://127.0.0.1:{tport}/healthz", tracker, name="the tracker", log=work / "tracker.log",
                          timeout=60)
            wait_for_http(f"http://127.0.0.1:{wport}/healthz", web, name="the web admin", log=work / "web.log",
                          timeout=60)
            print(f"tracker on :{tport}, web admin on :{wport} (gunicorn, event worker, 2 workers x 8 threads "
                  f"each), PostgreSQL; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
            result = asyncio.run(measure(tport, wport, tracker.pid, url, key, manager_ids, super_cookie))
        finally:
            for proc in procs:
                stop_process(proc, 20, group=True)
            shutil.rmtree(work, ignore_errors=True)
    print(f"manager -> visitor: {result['replies']} replies, {result['replies_delivered']} delivered, "
          f"{result['replies_lost']} lost, {result['replies_twice']} twice; commit to the visitor's stream "
          f"p50 {result['to_visitor_p50_ms']} ms, p99 {result['to_visitor_p99_ms']} ms, max {result['to_visitor_max_ms']} ms")
    print(f"visitor -> manager: {result['visitor_messages']} messages ({result['visitor_messages_refused']} refused), "
          f"{result['visitor_messages_lost']} lost, {result['visitor_messages_twice']} twice; request to the "
          f"supervisor's stream p50 {result['to_manager_p50_ms']} ms, p99 {result['to_manager_p99_ms']} ms, "
          f"max {result['to_manager_max_ms']} ms")
    print(f"{result['chat_connections']} chat streams open at the end; tracker RSS (gunicorn master + workers) "
          f"{result['rss_mb']} MB ({result['rss_mb_streams_idle']} MB with the streams open, before the load); "
          f"the client's own loop woke up to {result['client_late_p99_ms']} ms late (p99)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
