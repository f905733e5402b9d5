"""The live board's and the manager pop-up's Server-Sent Events, answered in the event loop.

Why: under gunicorn's gthread worker each open stream held one of the admin's request threads
for up to ``SSE_MAX_SECONDS`` and polled the database on its own; about 32 tabs stopped every
page, the login page included, and a call centre has dozens of managers with the pop-up open
all day (issue #21).

How: the admin runs on the event-loop worker of ``astertrack.ops.serving``, and the two stream
paths are in the app's ``asgi_paths``, so they reach :class:`LiveStreams` in the event loop,
not a thread.  A stream costs a socket, a small queue and nothing else:

* **The gate is the Flask view.**  Opening a stream runs the app once, on a thread, with a slot
  in the environ (:data:`SUBSCRIBE`): ``roles_required``, flask-login's ``load_user`` (the
  server-side ``web_sessions`` row, idle limit, password mark) and the view's own checks decide
  exactly as for any page, and the view answers with a :class:`Subscription` instead of a body.
  A refusal (the login redirect, 403, 404) goes back to the client as Flask made it; an
  admission's headers (security headers, a refreshed cookie) start the stream.
* **One poller per process**, running while anybody listens: each ``BOARD_SECONDS`` one board
  read for all board streams (encoded once, sent to those whose last board differs; a board of
  400 managers is 80 KB, and a busy centre changes it at every tick) and each
  ``SSE_POLL_SECONDS`` one query of the calls ringing now for all managers (``state.ringing_calls``, matched per
  manager by ``state.rings_at``); a pop-up card is built once per (call, kind of viewer), not per
  stream.  Every ``SESSION_CHECK_SECONDS`` one query re-checks every stream's session: a logout,
  a password change, a disabled account or a changed role or manager ends the stream.  The
  database work runs on the poller's own thread, off the event loop and away from the page
  threads, so 500 streams cost the same 2-3 queries a tick as one.
* A stream lives ``SSE_MAX_SECONDS`` (a tenth less at random, so streams opened together do not
  all come back together); EventSource reconnects after ``retry: 1000``, through the gate again
  (which also keeps an idle-limited session alive, as before).  A stopping worker closes these
  connections at once (``serving.ENDLESS_STREAM``).

Without the event worker (the test client, ``flask run``) the same views answer a one-shot
stream, the current board or the cards ringing now, read by the same functions; EventSource
reconnects every second, and the pop-up shows each call once (popup.js keys cards by call id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Manager, User, WebSession
from astertrack.ops.serving import ENDLESS_STREAM, wsgi_environ
from webadmin.db import EXTENSION
from webadmin.live.state import board_state, popup_card, ringing_calls, rings_at
from webadmin.security import password_mark

log = logging.getLogger("webadmin.live")

SUBSCRIBE = "astertrack.live.subscribe"  # environ key: the list the gate view appends its Subscription to
KEEPALIVE_SECONDS = 15
SESSION_CHECK_SECONDS = 5  # a stream ends this soon after its session does (logout, password change)
BOARD_SECONDS = 1.0  # the board is read (and sent where it changed) at most this often
RETRY = b"retry: 1000\n\n"
MAX_PENDING = 200  # events queued for a client that does not read; past this its stream ends


@dataclass(frozen=True)
class Subscription:
    """Who opened a stream and what it shows, as the gate view found them."""

    kind: str  # "board" or "popup"
    sid: str  # the server-side session (web_sessions.id)
    user_id: int
    role: str
    manager_id: int | None
    only_manager_id: int | None  # a manager's card counts only their own earlier calls
    card_prefix: str  # the call card's URL without the id

    def card(self, card: dict[str, Any], call_id: int) -> dict[str, Any]:
        return {**card, "card_url": f"{self.card_prefix}{call_id}"}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# ---- database reads (a thread's), shared by the poller and the one-shot stream

def manager_endpoints(db: Session, manager_ids: set[int]) -> dict[int, str]:
    return dict(db.execute(select(Manager.id, Manager.endpoint).where(Manager.id.in_(manager_ids))).all())


def rings_by_manager(db: Session, endpoints: dict[int, str]) -> tuple[set[int], dict[int, list[int]]]:
    """(every ringing call's id, the ids ringing at each of these managers' phones), one query."""
    calls = ringing_calls(db)
    rings = {mid: [c.id for c in calls if rings_at(c.ringing_endpoint, c.routed_manager_id, mid, endpoint)]
             for mid, endpoint in endpoints.items()}
    return {c.id for c in calls}, rings


def cards(db: Session, wanted: set[tuple[int, int | None]]) -> dict[tuple[int, int | None], dict[str, Any]]:
    """Pop-up cards (without ``card_url``) for (call id, ``only_manager_id``) pairs."""
    out = {}
    for call_id, only in sorted(wanted, key=lambda key: (key[0], key[1] or 0)):
        call = db.get(Call, call_id)
        if call is not None:
            out[(call_id, only)] = popup_card(db, call, "", only_manager_id=only)
    return out


def open_sessions(db: Session, sids: set[str]) -> dict[str, tuple[int, str, int | None]]:
    """(user id, role, manager id) of each session that still holds: its row is there, the user
    is active and has the password the session was opened with (``security.load_user``'s rule)."""
    rows = db.execute(select(WebSession.id, WebSession.password_mark, User.id.label("user_id"), User.password_hash,
                             User.active, User.role, User.manager_id)
                      .join(User, User.id == WebSession.user_id).where(WebSession.id.in_(sids))).all()
    return {r.id: (r.user_id, r.role, r.manager_id) for r in rows
            if r.active and r.password_mark == password_mark(r.password_hash)}


def snapshot(db: Session, sub: Subscription) -> str:
    """The one-shot stream (no event worker): the board now, or the cards ringing now."""
    if sub.kind == "board":
        return RETRY.decode() + sse("board", board_state(db))
    assert sub.manager_id is not None
    endpoints = manager_endpoints(db, {sub.manager_id})
    if sub.manager_id not in endpoints:
        return RETRY.decode()
    _, rings = rings_by_manager(db, endpoints)
    ringing = rings[sub.manager_id]
    found = cards(db, {(call_id, sub.only_manager_id) for call_id in ringing})
    return RETRY.decode() + "".join(sse("ring", sub.card(found[(call_id, sub.only_manager_id)], call_id))
                                    for call_id in ringing if (call_id, sub.only_manager_id) in found)


# ---- the event loop's side

class Listener:
    """One open stream: what is waiting to be sent to it, and what it has been sent."""

    def __init__(self, sub: Subscription, deadline: float):
        self.sub = sub
        self.deadline = deadline
        self.board: bytes | None = None  # the newest board not sent yet (older ones are dropped)
        self.board_sent: str | None = None
        self.rings: list[bytes] = []
        self.rung: set[int] = set()
        self.wake = asyncio.Event()
        self.ended = False  # the server ends it (session over, client not reading, worker stopping)
        self.gone = False  # the client left

    def push_board(self, encoded: str, chunk: bytes) -> None:
        self.board_sent = encoded
        self.board = chunk
        self.wake.set()

    def push_ring(self, chunk: bytes) -> None:
        self.rings.append(chunk)
        if len(self.rings) > MAX_PENDING:
            self.end()
        self.wake.set()

    def take(self) -> bytes:
        chunks = ([self.board] if self.board else []) + self.rings
        self.board, self.rings = None, []
        return b"".join(chunks)

    def end(self) -> None:
        self.ended = True
        self.wake.set()


@dataclass
class _Plan:
    """What one tick reads (made in the loop, read in the poller's thread)."""

    board: bool
    viewers: set[tuple[int, int | None]]  # (manager id, only_manager_id) of the pop-ups
    endpoints: dict[int, str]
    manager_ids: set[int] | None  # re-read these managers' endpoints
    known: frozenset[tuple[int, int | None]]  # cards already built
    sids: set[str] | None  # sessions to re-check


@dataclass
class _Reading:
    board: str | None = None
    ringing: set[int] | None = None
    rings: dict[int, list[int]] = field(default_factory=dict)
    cards: dict[tuple[int, int | None], dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[int, str] | None = None
    sessions: dict[str, tuple[int, str, int | None]] | None = None


class LiveStreams:
    """ASGI handler of the two stream paths, with the process's one shared poller."""

    def __init__(self, app: Flask):
        self.app = app
        self.listeners: set[Listener] = set()
        self.poller: asyncio.Task[None] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-poll")
        self.endpoints: dict[int, str] = {}
        self.card_cache: dict[tuple[int, int | None], dict[str, Any]] = {}
        self.checked = 0.0
        self.board_read_at = 0.0
        self.ticks = 0

    # ---- one stream

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http":
            return
        sub, status, headers, body = await asyncio.to_thread(self._gate, scope)
        if sub is None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope[ENDLESS_STREAM] = True
        loop = asyncio.get_running_loop()
        lifetime = float(self.app.config["SSE_MAX_SECONDS"])
        listener = Listener(sub, loop.time() + lifetime * random.uniform(0.9, 1.0))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": RETRY, "more_body": True})
        watcher = asyncio.create_task(self._watch(receive, listener))
        self._add(listener)
        try:
            last_sent = loop.time()
            while not listener.ended:
                now = loop.time()
                if now >= listener.deadline:
                    break
                try:
                    async with asyncio.timeout(min(listener.deadline, last_sent + KEEPALIVE_SECONDS) - now):
                        await listener.wake.wait()
                except TimeoutError:
                    pass
                listener.wake.clear()
                if listener.gone:
                    break
                chunk = listener.take()
                if not chunk and loop.time() - last_sent >= KEEPALIVE_SECONDS:
                    chunk = b": keepalive\n\n"
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    last_sent = loop.time()
            if not listener.gone:
                await send({"type": "http.response.body", "body": b""})
        finally:
            self.listeners.discard(listener)
            watcher.cancel()

    def _gate(self, scope: dict[str, Any]) -> tuple[Subscription | None, int, list[tuple[bytes, bytes]], bytes]:
        """Run the Flask view (in a thread): a Subscription and the stream's headers, or its refusal."""
        slot: list[Subscription] = []
        environ = wsgi_environ(scope, b"")
        environ[SUBSCRIBE] = slot
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            answer["status"], answer["headers"] = int(status.split(" ", 1)[0]), headers
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer["headers"]]
        if not slot or answer["status"] != 200:
            return None, answer["status"], headers, body
        headers = [(k, v) for k, v in headers if k not in (b"content-length", b"content-type")]
        return slot[0], 200, [(b"content-type", b"text/event-stream; charset=utf-8"), *headers], b""

    async def _watch(self, receive, listener: Listener) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        listener.gone = True
        listener.wake.set()

    def _add(self, listener: Listener) -> None:
        self.listeners.add(listener)
        if self.board_now is not None and listener.sub.kind == "board":
            listener.push_board(*self.board_now)
        if self.poller is None or self.poller.done():
            self.poller = asyncio.create_task(self._poll())

    board_now: tuple[str, bytes] | None = None  # the last board read, for a board stream that opens

    # ---- the shared poller

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while self.listeners:
            started = loop.time()
            plan = self._plan(started)
            try:
                reading = await loop.run_in_executor(self.executor, self._read, plan)
            except Exception:  # a database hiccup: the streams stay open, the next tick tries again
                log.exception("live streams: reading the database failed")
            else:
                self.ticks += 1
                self._fan_out(plan, reading, started)
            await asyncio.sleep(max(0.0, float(self.app.config["SSE_POLL_SECONDS"]) - (loop.time() - started)))
        self.board_now = None  # nobody watches: it would be stale when the next one comes

    def _plan(self, now: float) -> _Plan:
        popups = [lis.sub for lis in self.listeners if lis.sub.kind == "popup"]
        manager_ids = {sub.manager_id for sub in popups if sub.manager_id is not None}
        check = now - self.checked >= SESSION_CHECK_SECONDS
        board_due = self.board_now is None or now - self.board_read_at >= BOARD_SECONDS - 0.05
        return _Plan(board=board_due and any(lis.sub.kind == "board" for lis in self.listeners),
                     viewers={(sub.manager_id, sub.only_manager_id) for sub in popups if sub.manager_id is not None},
                     endpoints=dict(self.endpoints),
                     manager_ids=manager_ids if check or not manager_ids <= self.endpoints.keys() else None,
                     known=frozenset(self.card_cache),
                     sids={lis.sub.sid for lis in self.listeners} if check else None)

    def _read(self, plan: _Plan) -> _Reading:
        reading = _Reading()
        with self.app.extensions[EXTENSION]() as db:
            if plan.sids:
                reading.sessions = open_sessions(db, plan.sids)
            endpoints = plan.endpoints
            if plan.manager_ids is not None:
                endpoints = reading.endpoints = manager_endpoints(db, plan.manager_ids) if plan.manager_ids else {}
            if plan.board:
                reading.board = json.dumps(board_state(db), ensure_ascii=False)
            if plan.viewers:
                reading.ringing, reading.rings = rings_by_manager(db, endpoints)
                wanted = {(call_id, only) for mid, only in plan.viewers for call_id in reading.rings.get(mid, ())}
                reading.cards = cards(db, wanted - plan.known)
        return reading

    def _fan_out(self, plan: _Plan, reading: _Reading, now: float) -> None:
        if reading.sessions is not None:
            self.checked = now
            for lis in self.listeners:
                sub = lis.sub
                if sub.sid in plan.sids and reading.sessions.get(sub.sid) != (sub.user_id, sub.role, sub.manager_id):
                    lis.end()
        if reading.endpoints is not None:
            self.endpoints = reading.endpoints
            for lis in self.listeners:  # the manager was deleted
                if lis.sub.kind == "popup" and lis.sub.manager_id in plan.manager_ids \
                        and lis.sub.manager_id not in self.endpoints:
                    lis.end()
        if reading.board is not None:
            chunk = f"event: board\ndata: {reading.board}\n\n".encode()
            self.board_read_at = now
            self.board_now = (reading.board, chunk)
            for lis in self.listeners:
                if lis.sub.kind == "board" and lis.board_sent != reading.board:
                    lis.push_board(reading.board, chunk)
        if reading.ringing is not None:
            self.card_cache.update(reading.cards)
            for key in [key for key in self.card_cache if key[0] not in reading.ringing]:
                del self.card_cache[key]
            for lis in self.listeners:
                sub = lis.sub
                if sub.kind != "popup":
                    continue
                for call_id in reading.rings.get(sub.manager_id, ()):
                    card = self.card_cache.get((call_id, sub.only_manager_id))
                    if call_id not in lis.rung and card is not None:
                        lis.rung.add(call_id)
                        lis.push_ring(sse("ring", sub.card(card, call_id)).encode())

    async def aclose(self) -> None:
        for lis in list(self.listeners):
            lis.end()
        self.executor.shutdown(wait=False)
