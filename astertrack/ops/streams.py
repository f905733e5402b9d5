"""Server-Sent Events answered in the event loop: one stream component for every app.

Why: a stream held open by a request thread costs that thread for minutes, and each one polling
the database on its own multiplies the queries by the tabs open (issue #21).  The admin's live
pages and the public tracker's website chat serve their streams on this one component (#25).

How: an app lists its stream paths in ``asgi_paths`` (read by ``astertrack.ops.serving``), all
pointing at its :class:`StreamHub`, so they are answered in the event loop, not on a thread.
A stream costs a socket, a small queue and nothing else:

* **The gate is the Flask view.**  Opening a stream runs the app once, on a thread, with a slot
  in the environ (:data:`SUBSCRIBE`): the app's login, roles, sessions and the view's own checks
  decide exactly as for any page, and the view appends a subscription (any object with a
  ``kind``, and optionally ``first``: bytes sent right after :data:`RETRY`) instead of
  answering a body.  A refusal (a redirect, 403, 404) goes back to the client as Flask made it;
  an admission's headers (security headers, a refreshed cookie) start the stream.
* **One poller per process**, running while anybody listens.  Each :class:`Feed` is one kind of
  content, read once per tick for all of the process's listeners of its kinds: ``plan`` in the
  loop, ``read`` (the database work) on the hub's single worker thread, ``deliver`` in the loop,
  pushing to each :class:`Listener`.  So 500 streams cost the same few queries a tick as one.
  A feed nobody listens to is not read; a read that fails is logged and tried again at the next
  tick, the streams stay open.  :meth:`StreamHub.wake` runs the feeds at once (a new chat
  message need not wait for the interval).
* A stream lives ``max_seconds()`` (a tenth less at random, so streams opened together do not
  all come back together); EventSource reconnects after ``retry: 1000``, through the gate
  again.  A stopping worker closes these connections at once (``serving.ENDLESS_STREAM``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from astertrack.ops.serving import ENDLESS_STREAM, wsgi_environ

log = logging.getLogger("astertrack.streams")

SUBSCRIBE = "astertrack.stream.subscribe"  # environ key: the list a gate view appends its subscription to
RETRY = b"retry: 1000\n\n"
KEEPALIVE = b": keepalive\n\n"
MAX_PENDING = 200  # chunks queued for a client that does not read; past this its stream ends


def sse(event: str, data: dict[str, Any], id: str | int | None = None) -> str:
    """One Server-Sent Events frame; ``id`` becomes the client's Last-Event-ID on a reconnect."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class Listener:
    """One open stream: its subscription, what is waiting to be sent to it, its feeds' notes."""

    def __init__(self, sub: Any, deadline: float):
        self.sub = sub
        self.deadline = deadline
        self.state: dict[str, Any] = {}  # per-listener scratch space of the feeds (what it was sent)
        self._queue: list[bytes] = []
        self._slots: dict[str, bytes] = {}
        self.wake = asyncio.Event()
        self.ended = False  # the server ends it (session over, client not reading, worker stopping)
        self.gone = False  # the client left

    def push(self, chunk: bytes) -> None:
        """Queue ``chunk`` after the others; a client that lets MAX_PENDING pile up is ended."""
        self._queue.append(chunk)
        if len(self._queue) > MAX_PENDING:
            self.end()
        self.wake.set()

    def replace(self, slot: str, chunk: bytes) -> None:
        """Latest wins: an older chunk in ``slot`` not sent yet is dropped (a whole board, say)."""
        self._slots[slot] = chunk
        self.wake.set()

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def take(self) -> bytes:
        chunks = [*self._slots.values(), *self._queue]
        self._slots, self._queue = {}, []
        return b"".join(chunks)


class Feed(Protocol):
    """One kind of content, read once per tick for all of a process's listeners of its kinds."""

    kinds: frozenset[str]

    def interval(self) -> float:
        """Seconds between reads while it has listeners (may read the app's config)."""
        ...

    def plan(self, listeners: list[Listener], now: float) -> object | None:
        """In the loop: what to read this tick; None if nothing."""
        ...

    def read(self, plan: object) -> object:
        """On the poller's thread: the database work."""
        ...

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        """In the loop: push, replace or end."""
        ...

    def opened(self, listener: Listener) -> None:
        """In the loop: a new listener of its kinds (send it the last board read, say)."""
        ...


class StreamHub:
    """ASGI handler of an app's stream paths, with the process's one shared poller."""

    def __init__(self, app: Any, feeds: list[Feed], *, max_seconds: Callable[[], float],
                 keepalive: float = 15.0):
        self.app = app
        self.feeds: list[Feed] = list(feeds)
        self.max_seconds = max_seconds
        self.keepalive = keepalive
        self.listeners: set[Listener] = set()
        self.poller: asyncio.Task[None] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-poll")
        self.reads = 0  # feed reads done (a measure for tests and benchmarks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nudge: asyncio.Event | None = None  # the poller looks again (a listener came or left, wake())
        self._forced = False  # wake(): every feed with listeners runs, due or not
        self._due: dict[int, float] = {}  # id(feed) -> loop time of its next read

    def add_feed(self, feed: Feed) -> None:
        self.feeds.append(feed)

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
        listener = Listener(sub, loop.time() + float(self.max_seconds()) * random.uniform(0.9, 1.0))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": RETRY + (getattr(sub, "first", None) or b""),
                    "more_body": True})
        watcher = asyncio.create_task(self._watch(receive, listener))
        self._add(listener)
        try:
            last_sent = loop.time()
            while not listener.ended:
                now = loop.time()
                if now >= listener.deadline:
                    break
                try:
                    async with asyncio.timeout(min(listener.deadline, last_sent + self.keepalive) - now):
                        await listener.wake.wait()
                except TimeoutError:
                    pass
                listener.wake.clear()
                if listener.gone:
                    break
                chunk = listener.take()
                if not chunk and loop.time() - last_sent >= self.keepalive:
                    chunk = KEEPALIVE
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    last_sent = loop.time()
            if not listener.gone:
                await send({"type": "http.response.body", "body": b""})
        finally:
            self._remove(listener)
            watcher.cancel()

    def _gate(self, scope: dict[str, Any]) -> tuple[Any, int, list[tuple[bytes, bytes]], bytes]:
        """Run the Flask view (in a thread): a subscription and the stream's headers, or its refusal."""
        slot: list[Any] = []
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
        self._loop = asyncio.get_running_loop()
        if self._nudge is None:
            self._nudge = asyncio.Event()
        self.listeners.add(listener)
        for feed in list(self.feeds):
            if listener.sub.kind in feed.kinds:
                feed.opened(listener)
        if self.poller is None or self.poller.done():
            self.poller = asyncio.create_task(self._poll())
        else:
            self._nudge.set()  # a feed nobody listened to may be due now

    def _remove(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners and self._nudge is not None:
            self._nudge.set()  # the poller stops now, not at its next read

    # ---- the shared poller

    def wake(self) -> None:
        """Run every feed with listeners at the poller's next turn; safe from any thread."""
        self._forced = True
        loop, nudge = self._loop, self._nudge
        if loop is None or nudge is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            nudge.set()
        else:
            try:
                loop.call_soon_threadsafe(nudge.set)
            except RuntimeError:  # the loop has stopped
                pass

    def _of(self, feed: Feed) -> list[Listener]:
        return [lis for lis in self.listeners if lis.sub.kind in feed.kinds and not lis.ended]

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._nudge is not None
        while self.listeners:
            self._nudge.clear()
            forced, self._forced = self._forced, False
            for feed in list(self.feeds):
                if not self.listeners:
                    break
                now = loop.time()
                if self._of(feed) and (forced or now >= self._due.get(id(feed), 0.0)):
                    await self._run(feed, now)
            due = [self._due.get(id(feed), 0.0) for feed in self.feeds if self._of(feed)]
            if not self.listeners:
                break
            try:
                async with asyncio.timeout(max(0.0, min(due) - loop.time()) if due else None):
                    await self._nudge.wait()
            except TimeoutError:
                pass

    async def _run(self, feed: Feed, now: float) -> None:
        self._due[id(feed)] = now + float(feed.interval())
        plan = feed.plan(self._of(feed), now)
        if plan is None:
            return
        try:
            reading = await asyncio.get_running_loop().run_in_executor(self.executor, feed.read, plan)
        except Exception:  # a database hiccup: the streams stay open, the next tick tries again
            log.exception("streams: reading %s failed", type(feed).__name__)
            return
        self.reads += 1
        feed.deliver(plan, reading, self._of(feed), now)

    async def aclose(self) -> None:
        for lis in list(self.listeners):
            lis.end()
        self.executor.shutdown(wait=False)
