"""Serving a Flask (WSGI) app so that slow or idle clients cost a socket, not a thread.

Under gunicorn's gthread worker a thread reads each request, so a handful of clients that send
half a request and wait (issue #20: 20 of them against 8 threads) stopped every page view.
Here gunicorn stays the process manager, and each worker runs an asyncio event loop (uvicorn,
h11 parser) that reads the request head and the whole body itself; only a complete request
reaches one of the worker's ``threads`` threads, which run the unchanged WSGI app through
asgiref's ``WsgiToAsgi``.  Bounds on what a client may hold:

* the request head (request line and headers) must arrive within ``header_timeout`` of the
  connection opening or of the previous answer on it, else the connection is closed; it may not
  exceed ``max_head`` bytes (h11 answers 400; 32 KiB, what nginx's default buffers pass on: a
  first-party tracker receives the customer site's cookies);
* the body must arrive within ``body_timeout`` of the head (else 408) and may not exceed
  ``max_body`` bytes (413, refused from ``Content-Length`` before a byte is read);
* an idle keep-alive connection is closed after gunicorn's ``keepalive`` seconds;
* past ``max_connections`` open connections per worker, requests are answered 503 at once.

The same worker serves either app (``astertrack.ops.gunicorn_conf`` picks it per app); the app
is still given to gunicorn as WSGI (``tracker:create_app()``), so ``--worker-class gthread``
serves it the old way with nothing else changed.  Client addresses are the TCP peer's, as
under gthread: the apps decide themselves whether to trust X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from asgiref.wsgi import WsgiToAsgi
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BufferedWsgi:
    """ASGI app around a WSGI app: the body is read whole in the event loop, within its deadline
    and size, then the app runs on one of ``threads`` threads (each request waits for a free one
    without holding anything but its buffered body).

    The body is held in memory: ``max_body`` must stay small (the tracker's is 16 KiB).
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], *, threads: int, max_body: int,
                 body_timeout: float):
        self.adapter = WsgiToAsgi(wsgi_app)
        self.threads = max(1, threads)
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._idle: asyncio.Queue[ThreadPoolExecutor] | None = None
        self._executors: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        scope = _with_length(scope, len(body))
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive_buffered() -> Message:
            return replay.pop() if replay else await receive()

        idle = self._pool()
        executor = await idle.get()
        try:
            # WsgiToAsgi runs the app "thread-sensitive": without a context of our own, every
            # request of the process would queue for one shared thread.
            async with ThreadSensitiveContext(executor=executor):
                await self.adapter(scope, receive_buffered, send)
        finally:
            idle.put_nowait(executor)

    def _pool(self) -> asyncio.Queue[ThreadPoolExecutor]:
        """The threads, made in the worker's own event loop (after gunicorn forked it)."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            for i in range(self.threads):
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wsgi-{i}")
                self._executors.append(executor)
                self._idle.put_nowait(executor)
        return self._idle

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once a refusal went out (or the client left)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _refuse(send, 413, f"request body too large (limit {self.max_body} bytes)")
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        await _refuse(send, 413, f"request body too large (limit {self.max_body} bytes)")
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        return b"".join(chunks)
        except TimeoutError:
            await _refuse(send, 408, f"request body not received within {self.body_timeout:g} s")
            return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for executor in self._executors:
                    executor.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1").strip()
    return None


def _with_length(scope: Scope, length: int) -> Scope:
    """A chunked body is whole now: the WSGI app sees its length (gunicorn's gthread said
    ``wsgi.input_terminated`` instead, which WsgiToAsgi does not)."""
    if _header(scope, b"content-length") is not None or not length:
        return scope
    headers = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 connection with a deadline for each request head.

    uvicorn waits without limit for a request line and headers (its keep-alive timer stops at the
    first byte), so a client sending a byte now and then would hold the socket for ever.  The
    deadline runs from the connection opening, and again from each answer, until the app is
    called with a complete head; data arriving does not restart it.
    """

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        app = self.app

        async def app_with_deadline(scope: Scope, receive: Receive, send: Send) -> None:
            self._disarm()
            try:
                await app(scope, receive, send)
            finally:
                self._arm()

        self.app = app_with_deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class BufferingWorker(UvicornWorker):
    """gunicorn worker class: an event loop in front of the WSGI app gunicorn loaded.

    Use :func:`worker_class` to get one with the bounds filled in; ``threads`` is gunicorn's own
    setting (the threads that run the app, as under gthread).
    """

    max_body = 16384
    body_timeout = 10.0

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = BufferedWsgi(self.wsgi, threads=self.cfg.threads, max_body=self.max_body,
                                 body_timeout=self.body_timeout)


def worker_class(*, max_body: int, header_timeout: float = 10.0, body_timeout: float = 10.0,
                 max_head: int = 32768, max_connections: int = 10000,
                 graceful_timeout: float = 20.0) -> type[BufferingWorker]:
    """A :class:`BufferingWorker` subclass with these bounds, for gunicorn's ``worker_class``."""
    protocol = type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"header_timeout": header_timeout})
    config = {
        "loop": "auto", "http": protocol, "lifespan": "on",
        "proxy_headers": False,  # REMOTE_ADDR is the TCP peer; the apps read X-Forwarded-For themselves
        "server_header": False,
        "h11_max_incomplete_event_size": max_head,
        "limit_concurrency": max_connections,
        "timeout_graceful_shutdown": max(1, int(graceful_timeout) - 1),  # before gunicorn's SIGKILL
    }
    return type("BufferingWorker", (BufferingWorker,),
                {"CONFIG_KWARGS": config, "max_body": max_body, "body_timeout": body_timeout,
                 "__module__": __name__})
