"""Serving a Flask (WSGI) app so that slow or idle clients cost a socket, not a thread.

Under gunicorn's gthread worker a thread reads each request, so a handful of clients that send
half a request and wait (issue #20: 20 of them against 8 threads) stopped every page view.
Here gunicorn stays the process manager, and each worker runs an asyncio event loop (uvicorn,
h11 parser) that reads the request head and the whole body itself; only a complete request
reaches one of the worker's ``threads`` threads, which run the unchanged WSGI app
(:class:`BufferedWsgi`).  Bounds on what a client may hold:

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

An app may answer some paths natively, in the event loop, without a thread (the admin's live
streams: hundreds of Server-Sent Events connections open all day): it lists them in an
``asgi_paths`` attribute (exact path to ASGI callable), and :class:`PathDispatch` sends those
paths there, everything else to :class:`BufferedWsgi`.  A native handler that never ends on its
own (a stream) marks its scope with :data:`ENDLESS_STREAM`; on a stop the worker closes those
connections at once instead of waiting out the graceful timeout for them (the browser's
EventSource reconnects to the next worker), while ordinary answers in progress still finish.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A native handler sets this key of its scope to True: its answer never ends on its own, so a
# stopping worker closes the connection rather than waiting for it.
ENDLESS_STREAM = "astertrack.endless_stream"


class BufferedWsgi:
    """ASGI app around a WSGI app: the body is read whole in the event loop, within its deadline
    and size, then the app runs on one of ``threads`` threads (a request waiting for a free one
    holds nothing but its buffered body).

    One hand-over per request: the thread runs the app and, when the answer declares its
    Content-Length (every answer of the tracker, every ordinary Flask page), collects it and
    gives it back whole when done.  An answer without one (a stream: Server-Sent Events, a large
    export) is passed on chunk by chunk as the app yields it, at most ``_STREAM_WINDOW`` chunks
    ahead of the client, and its thread stops iterating once the client has gone.  asgiref's
    WsgiToAsgi, tried first, waited on the event loop for every message it sent (four thread
    round trips per request): about 0.4 ms more CPU per page view on the development VM.

    The body is held in memory: ``max_body`` must stay small (the tracker's is 16 KiB).
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], *, threads: int, max_body: int,
                 body_timeout: float, multiprocess: bool = True):
        self.app = wsgi_app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.multiprocess = multiprocess
        # threads start on first use, in the worker (gunicorn loads the app after forking it)
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="wsgi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        exchange = _Exchange(loop)
        environ = wsgi_environ(scope, body, multiprocess=self.multiprocess)
        answer = loop.run_in_executor(self.executor, exchange.run, self.app, environ)
        answer.add_done_callback(lambda _: exchange.outbox.put_nowait(None))
        watcher: asyncio.Task[None] | None = None
        try:
            while (messages := await exchange.outbox.get()) is not None:  # a stream's chunks
                if watcher is None:
                    watcher = asyncio.create_task(exchange.watch(receive))
                for message in messages:
                    await send(message)
                exchange.room.release()
            for message in answer.result():  # the whole answer, or a stream's end
                await send(message)
        finally:
            exchange.left.set()  # if we leave early (client gone, error), the thread stops too
            exchange.room.release(_STREAM_WINDOW)
            if watcher is not None:
                watcher.cancel()

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
                self.executor.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return


class PathDispatch:
    """ASGI app: the app's native paths (``routes``: exact path to an ASGI callable) are answered
    in the event loop; every other request goes to ``fallback`` (the WSGI app on its threads).

    Lifespan events go to ``fallback``; a route with an ``aclose()`` coroutine is closed at the
    lifespan's shutdown."""

    def __init__(self, routes: dict[str, AsgiApp], fallback: AsgiApp):
        self.routes = dict(routes)
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            handler = self.routes.get(path)
            if handler is not None:
                await handler(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self.fallback(scope, receive, self._closing_routes(send))
            return
        await self.fallback(scope, receive, send)

    def _closing_routes(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                for handler in {id(h): h for h in self.routes.values()}.values():
                    close = getattr(handler, "aclose", None)
                    if close is not None:
                        await close()
            await send(message)
        return wrapped


def with_native_paths(wsgi_app: Any, fallback: AsgiApp) -> AsgiApp:
    """``fallback``, behind a :class:`PathDispatch` if the WSGI app lists native ``asgi_paths``."""
    routes = getattr(wsgi_app, "asgi_paths", None)
    return PathDispatch(routes, fallback) if routes else fallback


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1").strip()
    return None


def wsgi_environ(scope: Scope, body: bytes, *, multiprocess: bool = True) -> dict[str, Any]:
    """PEP 3333's environ for an ASGI HTTP scope whose body has been read whole.

    As gunicorn builds it: the path percent-decoded to bytes shown as latin-1, repeated headers
    joined with commas, headers whose names hold an underscore dropped (``X_Forwarded_For`` must
    not pass for ``X-Forwarded-For``), and a chunked body given its length.
    """
    root = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    path = unquote_to_bytes(scope.get("raw_path") or scope["path"].encode("utf-8")).decode("latin-1")
    if root and path.startswith(root):
        path = path[len(root):]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    server = scope.get("server") or ("localhost", 80)
    environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1] or 80)
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = scope["client"][0], str(scope["client"][1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name or name == "transfer-encoding":
            continue
        key = _SPECIAL_HEADERS.get(name) or "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


_SPECIAL_HEADERS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
_STREAM_WINDOW = 16  # chunks of a stream handed to the event loop and not yet sent


class ClientDisconnected(OSError):
    """Raised in the app's thread by ``write()`` once the client of a stream has gone."""


class _Exchange:
    """One request's hand-over between the event loop and the thread that runs the app."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.outbox: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        self.left = threading.Event()  # the client went away, or the loop stopped listening
        self.room = threading.Semaphore(_STREAM_WINDOW)
        self.start: Message | None = None
        self.started = False  # the start message went to the loop
        self.streaming = False
        self.chunks: list[bytes] = []

    # ---- in the app's thread

    def run(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> list[Message]:
        """Run the app; return what is left to send: the whole answer, or a stream's end."""
        result = app(environ, self.start_response)
        try:
            for chunk in result:
                if chunk:
                    self.write(chunk)
                if self.left.is_set():
                    break
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if self.start is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
        messages = [] if self.started else [self.start]
        messages.append({"type": "http.response.body", "body": b"".join(self.chunks)})
        return messages

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        if exc_info is not None and self.started:
            raise exc_info[1].with_traceback(exc_info[2])
        if self.start is not None and exc_info is None:
            raise RuntimeError("start_response called a second time without exc_info")
        self.start = {"type": "http.response.start", "status": int(status.split(" ", 1)[0]),
                      "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]}
        self.streaming = not any(k.lower() == "content-length" for k, _ in headers)
        self.chunks = []
        return self.write

    def write(self, data: bytes) -> None:
        if self.start is None:
            raise RuntimeError("the WSGI app wrote a body before calling start_response")
        if not self.streaming:
            self.chunks.append(data)
            return
        messages = [] if self.started else [self.start]
        self.started = True
        messages.append({"type": "http.response.body", "body": data, "more_body": True})
        while not self.room.acquire(timeout=1.0):  # the client reads slowly: wait, unless it left
            if self.left.is_set():
                raise ClientDisconnected("the client has gone")
        if self.left.is_set():
            raise ClientDisconnected("the client has gone")
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, messages)

    # ---- in the event loop

    async def watch(self, receive: Receive) -> None:
        """A stream stops being produced once its client disconnects."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.left.set()


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

    def shutdown(self) -> None:
        """On a stop, a request still waiting for its body is dropped rather than waited for (up to
        ``body_timeout``, a restart under a flood of stalled bodies would take that long)."""
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.scope.get(ENDLESS_STREAM):
            self.transport.close()  # a live stream: its handler sees the disconnect and ends
            return
        super().shutdown()

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
        buffered = BufferedWsgi(self.wsgi, threads=self.cfg.threads, max_body=self.max_body,
                                body_timeout=self.body_timeout, multiprocess=self.cfg.workers > 1)
        self.wsgi = with_native_paths(self.wsgi, buffered)


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
