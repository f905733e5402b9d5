"""The core's event-loop stream component (``astertrack.ops.streams.StreamHub``) over real HTTP,
with a tiny Flask app as the gate and toy feeds: what a feed delivers reaches the listeners of
its kinds only, a latest-wins slot drops what was not sent, ``wake()`` does not wait for the
interval, a failing read leaves the streams open, the gate's refusal and first bytes go out as
given, a client that does not read is ended, and the poller stops with the last listener.

A real uvicorn server in a thread (``served``, the admin's stream tests' helper: the event
worker's own pieces) serves the app; the toy feeds stand for the database.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from flask import Flask, Response, abort, request

from astertrack.ops import streams
from astertrack.ops.streams import SUBSCRIBE, Listener, StreamHub, sse
from tests.webadmin.live_client import Stream
from tests.webadmin.test_live_streams import served


@dataclass(frozen=True)
class Sub:
    kind: str
    first: bytes | None = None


class Toy:
    """A feed whose read counts (and fails ``fail`` times first); ``deliver`` is what it does."""

    def __init__(self, name: str, kinds: set[str], interval: float = 0.1, fail: int = 0, deliver=None):
        self.name, self.kinds, self.every, self.fail = name, frozenset(kinds), interval, fail
        self.reads = 0
        self.plans: list[int] = []
        self.opened_kinds: list[str] = []
        self.opened_listeners: list[Listener] = []
        self._deliver = deliver or self.push_each

    def interval(self) -> float:
        return self.every

    def plan(self, listeners: list[Listener], now: float) -> int:
        self.plans.append(len(listeners))
        return len(listeners)

    def read(self, plan: object) -> int:
        assert threading.current_thread().name.startswith("stream-poll")  # off the event loop
        self.reads += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database hiccup")
        return self.reads

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        self._deliver(self, reading, listeners)

    def opened(self, listener: Listener) -> None:
        self.opened_kinds.append(listener.sub.kind)
        self.opened_listeners.append(listener)

    @staticmethod
    def push_each(feed: Toy, reading: object, listeners: list[Listener]) -> None:
        for lis in listeners:
            lis.push(sse(feed.name, {"n": reading, "kind": lis.sub.kind}).encode())


def _app(feeds: list, *, keepalive: float = 15.0, max_seconds: float = 60.0) -> tuple[Flask, StreamHub]:
    app = Flask(__name__)
    hub = StreamHub(app, feeds, max_seconds=lambda: max_seconds, keepalive=keepalive)

    @app.get("/s")
    def gate():
        if request.args.get("deny"):
            abort(403)
        first = request.args.get("first")
        request.environ[SUBSCRIBE].append(
            Sub(request.args["kind"], sse("history", {"text": first}, id=7).encode() if first else None))
        response = Response("", mimetype="text/event-stream")
        response.headers["X-Gate"] = "passed"
        return response

    app.asgi_paths = {"/s": hub}
    return app, hub


def _open(port: int, query: str) -> Stream:
    return Stream(port, f"/s?{query}", "")


def _wait(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_feed_reaches_only_listeners_of_its_kinds_and_an_unwatched_feed_is_not_read():
    a, b, idle = Toy("a", {"chat"}), Toy("b", {"board", "popup"}), Toy("idle", {"nobody"})
    app, hub = _app([a, b, idle], keepalive=0.3)
    with served(app) as (_, port, _):
        chat, board, popup = _open(port, "kind=chat"), _open(port, "kind=board"), _open(port, "kind=popup")
        quiet = _open(port, "kind=other")  # no feed serves it: keepalives only
        try:
            assert chat.status == 200 and chat.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert chat.headers["x-gate"] == "passed"  # the gate's headers start the stream
            assert {name for name, _ in chat.events(1.0)} == {"a"}
            got = board.events(1.0) + popup.events(0.5)
            assert got and {name for name, _ in got} == {"b"}
            assert {data["kind"] for _, data in got} == {"board", "popup"}
            assert quiet.events(0.8) == [] and ": keepalive" in quiet.comments
            assert idle.reads == 0 and idle.opened_kinds == []
            assert sorted(b.opened_kinds) == ["board", "popup"] and a.opened_kinds == ["chat"]
            assert max(b.plans) == 2  # one read a tick for both of its listeners
        finally:
            for s in (chat, board, popup, quiet):
                s.close()


def test_replace_keeps_only_the_latest_unsent_value_and_push_keeps_order():
    def deliver(feed, reading, listeners):
        for lis in listeners:
            lis.push(sse("q", {"n": reading, "i": 1}).encode())
            lis.replace("board", sse("board", {"n": reading, "v": "stale"}).encode())
            lis.replace("board", sse("board", {"n": reading, "v": "latest"}).encode())
            lis.push(sse("q", {"n": reading, "i": 2}).encode())

    app, _ = _app([Toy("t", {"board"}, interval=0.2, deliver=deliver)])
    with served(app) as (_, port, _):
        stream = _open(port, "kind=board")
        try:
            events = stream.events(1.0)
            first = [(name, data.get("v", data.get("i"))) for name, data in events if data["n"] == 1]
            assert first == [("board", "latest"), ("q", 1), ("q", 2)]
            assert all(data.get("v") != "stale" for _, data in events)
        finally:
            stream.close()


def test_wake_runs_the_feeds_before_their_interval():
    feed = Toy("t", {"chat"}, interval=30.0)
    app, hub = _app([feed])
    with served(app) as (_, port, _):
        stream = _open(port, "kind=chat")
        try:
            assert [data["n"] for _, data in stream.events(2, until="t")] == [1]  # due at once
            assert stream.events(0.8) == []  # the interval is 30 s
            started = time.monotonic()
            hub.wake()  # from another thread than the loop's
            assert [data["n"] for _, data in stream.events(2, until="t")] == [2]
            assert time.monotonic() - started < 5.0  # not the 30 s interval, even on a loaded machine
            assert stream.events(0.5) == []
        finally:
            stream.close()


def test_a_failing_read_keeps_the_streams_open_and_the_next_tick_delivers(caplog):
    feed = Toy("t", {"chat"}, interval=0.3, fail=2)
    app, _ = _app([feed])
    with caplog.at_level(logging.ERROR, logger="astertrack.streams"), served(app) as (_, port, _):
        stream = _open(port, "kind=chat")
        try:
            events = stream.events(3, until="t")
            assert [data["n"] for _, data in events] == [3]  # reads 1 and 2 failed
            assert not stream.ended_within(0.2)
            assert sum("reading Toy failed" in r.getMessage() for r in caplog.records) == 2
        finally:
            stream.close()


def test_the_gates_refusal_is_passed_through():
    feed = Toy("t", {"chat"})
    app, hub = _app([feed])
    with served(app) as (_, port, _):
        refused = _open(port, "kind=chat&deny=1")
        try:
            assert refused.status == 403 and refused.headers["content-type"].startswith("text/html")
            assert "Forbidden" in refused.buffer + refused.raw.decode()
            assert refused.ended_within(1.0) or "content-length" in refused.headers
            assert hub.listeners == set() and feed.reads == 0
        finally:
            refused.close()


def test_the_first_bytes_follow_retry():
    app, _ = _app([Toy("t", {"chat"}, interval=30.0, deliver=lambda *_: None)])
    with served(app) as (_, port, _):
        stream = _open(port, "kind=chat&first=" + quote("привет"))
        try:
            deadline = time.monotonic() + 3
            while "event: history" not in stream.buffer and stream._read(deadline):
                pass
            assert stream.buffer.startswith('retry: 1000\n\nid: 7\nevent: history\ndata: {"text": "привет"}\n\n')
        finally:
            stream.close()


def test_a_client_that_does_not_read_is_ended_past_max_pending():
    blob = "x" * 32768

    def deliver(feed, reading, listeners):
        for lis in listeners:
            for i in range(40):
                lis.push(sse("blob", {"n": reading, "i": i, "blob": blob}).encode())

    app, hub = _app([Toy("t", {"chat"}, interval=0.02, deliver=deliver)])
    with served(app) as (_, port, _):
        stream = _open(port, "kind=chat")  # and then reads nothing
        try:
            assert _wait(lambda: any(lis.ended for lis in hub.listeners), 20)
            queued = [len(lis._queue) for lis in hub.listeners]
            assert queued and queued[0] > streams.MAX_PENDING
            assert stream.ended_within(20)  # once it reads, what was sent comes, then the end
            assert _wait(lambda: not hub.listeners)
        finally:
            stream.close()


def test_the_poller_stops_when_the_last_listener_leaves():
    feed = Toy("t", {"chat"}, interval=0.05)
    app, hub = _app([feed])
    with served(app) as (_, port, _):
        one, two = _open(port, "kind=chat"), _open(port, "kind=chat")
        assert one.events(2, until="t") and two.events(2, until="t")
        poller = hub.poller
        one.close()
        assert two.events(0.3)  # the other goes on
        assert poller is hub.poller and not poller.done()
        two.close()
        assert _wait(lambda: poller.done() and not hub.listeners, 2)
        reads = feed.reads
        time.sleep(0.3)
        assert feed.reads == reads  # nobody listens, nothing is read
        again = _open(port, "kind=chat")  # a new listener starts a new poller
        try:
            assert again.events(2, until="t") and hub.poller is not poller
        finally:
            again.close()


def test_a_stream_ends_at_its_lifetime_a_tenth_less_at_random():
    """The deadline is checked against the clock read around the open, not against how long a busy
    machine took to open and close the stream: only the lower bound is a matter of time."""
    feed = Toy("t", {"chat"}, interval=30.0)
    app, _ = _app([feed], max_seconds=1.0)
    slack = 0.05  # the event loop's clock may be cached per loop turn, in milliseconds
    with served(app) as (_, port, _):
        before = time.monotonic()
        stream = _open(port, "kind=chat")
        try:
            assert _wait(lambda: feed.opened_listeners, 5)
            after = time.monotonic()
            (listener,) = feed.opened_listeners
            assert before + 0.9 - slack <= listener.deadline <= after + 1.0 + slack
            assert stream.ended_within(10)  # the server ends it, with no event and no keepalive due
            assert time.monotonic() >= listener.deadline - slack  # and not before its time
        finally:
            stream.close()
