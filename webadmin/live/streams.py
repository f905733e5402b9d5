"""The live board's and the manager pop-up's Server-Sent Events: the admin's feeds on the core's
event-loop stream component (``astertrack.ops.streams``).

Why: under gunicorn's gthread worker each open stream held one of the admin's request threads
for up to ``SSE_MAX_SECONDS`` and polled the database on its own; about 32 tabs stopped every
page, the login page included, and a call centre has dozens of managers with the pop-up open
all day (issue #21).  The website chat serves its streams on the same component (#25).

How: the admin runs on the event-loop worker of ``astertrack.ops.serving``; its stream paths
are in the app's ``asgi_paths`` and all go to the app's one :class:`StreamHub`
(:func:`stream_hub`; another blueprint adds its path and feed with :func:`add_stream`).  The
gate is the Flask view (``roles_required``, flask-login's ``load_user`` with the server-side
``web_sessions`` row, idle limit and password mark), which answers with a :class:`Subscription`
instead of a body.  The hub's one poller per process reads the admin's three feeds:

* :class:`BoardFeed`, each ``BOARD_SECONDS``: one board read for all board streams (encoded
  once, sent to those whose last board differs; a board of 400 managers is 80 KB, and a busy
  centre changes it at every tick);
* :class:`PopupFeed`, each ``SSE_POLL_SECONDS``: one query of the calls ringing now for all
  managers (``state.ringing_calls``, matched per manager by ``state.rings_at``); a pop-up card
  is built once per (call, kind of viewer), not per stream;
* :class:`SessionFeed`, each ``SESSION_CHECK_SECONDS``: one query re-checks every admin stream's
  session: a logout, a password change, a disabled account or a changed role or manager ends it.

The database work runs on the hub's own thread, off the event loop and away from the page
threads, so 500 streams cost the same 2-3 queries a tick as one.  EventSource reconnects through
the gate again (which also keeps an idle-limited session alive, as before).

Without the event worker (the test client, ``flask run``) the same views answer a one-shot
stream, the current board or the cards ringing now, read by the same functions; EventSource
reconnects every second, and the pop-up shows each call once (popup.js keys cards by call id).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Manager, User, WebSession
from astertrack.ops.streams import RETRY, Feed, Listener, StreamHub, sse
from webadmin.db import EXTENSION
from webadmin.live.state import board_state, popup_card, ringing_calls, rings_at
from webadmin.security import password_mark

HUB = "astertrack.streams"  # app.extensions key of the app's one StreamHub
KEEPALIVE_SECONDS = 15
SESSION_CHECK_SECONDS = 5  # a stream ends this soon after its session does (logout, password change)
BOARD_SECONDS = 1.0  # the board is read (and sent where it changed) at most this often


@dataclass(frozen=True)
class Subscription:
    """Who opened a stream and what it shows, as the gate view found them."""

    kind: str  # "board", "popup" (or a later admin stream's kind)
    sid: str  # the server-side session (web_sessions.id)
    user_id: int
    role: str
    manager_id: int | None
    only_manager_id: int | None  # a manager's card counts only their own earlier calls
    card_prefix: str  # the call card's URL without the id

    def card(self, card: dict[str, Any], call_id: int) -> dict[str, Any]:
        return {**card, "card_url": f"{self.card_prefix}{call_id}"}


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




# ---- the feeds (plan and deliver in the event loop, read on the hub's thread)

class BoardFeed:
    """The live board: one read for all board streams, sent where it differs from the last sent."""

    kinds = frozenset({"board"})

    def __init__(self, app: Flask):
        self.app = app
        self.now: tuple[str, bytes, float] | None = None  # the last board read: encoded, chunk, when

    def interval(self) -> float:
        return BOARD_SECONDS

    def plan(self, listeners: list[Listener], now: float) -> object | None:
        return True

    def read(self, plan: object) -> str:
        with self.app.extensions[EXTENSION]() as db:
            return json.dumps(board_state(db), ensure_ascii=False)

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        assert isinstance(reading, str)
        chunk = f"event: board\ndata: {reading}\n\n".encode()
        self.now = (reading, chunk, now)
        for lis in listeners:
            self._send(lis, reading, chunk)

    def opened(self, listener: Listener) -> None:
        """A new board stream gets the last board at once, if it is fresh (read while others watched)."""
        if self.now is not None and asyncio.get_running_loop().time() - self.now[2] < 2 * BOARD_SECONDS:
            self._send(listener, self.now[0], self.now[1])

    @staticmethod
    def _send(lis: Listener, encoded: str, chunk: bytes) -> None:
        if lis.state.get("board") != encoded:
            lis.state["board"] = encoded
            lis.replace("board", chunk)


@dataclass
class _PopupPlan:
    viewers: set[tuple[int, int | None]]  # (manager id, only_manager_id) of the pop-ups
    endpoints: dict[int, str]
    manager_ids: set[int] | None  # re-read these managers' endpoints
    known: frozenset[tuple[int, int | None]]  # cards already built


@dataclass
class _PopupReading:
    ringing: set[int] = field(default_factory=set)
    rings: dict[int, list[int]] = field(default_factory=dict)
    cards: dict[tuple[int, int | None], dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[int, str] | None = None


class PopupFeed:
    """The managers' pop-ups: one query of the calls ringing now for all of them, each card built once
    per (call, kind of viewer); a manager's phone is re-read each ``SESSION_CHECK_SECONDS``."""

    kinds = frozenset({"popup"})

    def __init__(self, app: Flask):
        self.app = app
        self.endpoints: dict[int, str] = {}
        self.endpoints_read_at: float | None = None
        self.card_cache: dict[tuple[int, int | None], dict[str, Any]] = {}

    def interval(self) -> float:
        return float(self.app.config["SSE_POLL_SECONDS"])

    def plan(self, listeners: list[Listener], now: float) -> _PopupPlan | None:
        viewers = {(lis.sub.manager_id, lis.sub.only_manager_id) for lis in listeners
                   if lis.sub.manager_id is not None}
        if not viewers:
            return None
        manager_ids = {mid for mid, _ in viewers}
        stale = self.endpoints_read_at is None or now - self.endpoints_read_at >= SESSION_CHECK_SECONDS
        return _PopupPlan(viewers=viewers, endpoints=dict(self.endpoints),
                          manager_ids=manager_ids if stale or not manager_ids <= self.endpoints.keys() else None,
                          known=frozenset(self.card_cache))

    def read(self, plan: object) -> _PopupReading:
        assert isinstance(plan, _PopupPlan)
        reading = _PopupReading()
        with self.app.extensions[EXTENSION]() as db:
            endpoints = plan.endpoints
            if plan.manager_ids is not None:
                endpoints = reading.endpoints = manager_endpoints(db, plan.manager_ids)
            reading.ringing, reading.rings = rings_by_manager(db, endpoints)
            wanted = {(call_id, only) for mid, only in plan.viewers for call_id in reading.rings.get(mid, ())}
            reading.cards = cards(db, wanted - plan.known)
        return reading

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        assert isinstance(plan, _PopupPlan) and isinstance(reading, _PopupReading)
        if reading.endpoints is not None:
            self.endpoints, self.endpoints_read_at = reading.endpoints, now
            for lis in listeners:  # the manager was deleted
                if lis.sub.manager_id in plan.manager_ids and lis.sub.manager_id not in self.endpoints:
                    lis.end()
        self.card_cache.update(reading.cards)
        for key in [key for key in self.card_cache if key[0] not in reading.ringing]:
            del self.card_cache[key]
        for lis in listeners:
            sub = lis.sub
            rung = lis.state.setdefault("rung", set())
            for call_id in reading.rings.get(sub.manager_id, ()):
                card = self.card_cache.get((call_id, sub.only_manager_id))
                if call_id not in rung and card is not None:
                    rung.add(call_id)
                    lis.push(sse("ring", sub.card(card, call_id)).encode())

    def opened(self, listener: Listener) -> None:
        pass


class SessionFeed:
    """Every ``SESSION_CHECK_SECONDS`` one query re-checks the session of every admin stream (a
    subscription with ``sid``, ``user_id``, ``role``, ``manager_id``); a logout, a password change,
    a disabled account or a changed role or manager ends the stream.  :func:`add_stream` adds the
    kinds of later admin streams."""

    def __init__(self, app: Flask, kinds: Iterable[str] = ("board", "popup")):
        self.app = app
        self.kinds = frozenset(kinds)

    def interval(self) -> float:
        return SESSION_CHECK_SECONDS

    def plan(self, listeners: list[Listener], now: float) -> set[str] | None:
        return {lis.sub.sid for lis in listeners} or None

    def read(self, plan: object) -> dict[str, tuple[int, str, int | None]]:
        assert isinstance(plan, set)
        with self.app.extensions[EXTENSION]() as db:
            return open_sessions(db, plan)

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        assert isinstance(plan, set) and isinstance(reading, dict)
        for lis in listeners:
            sub = lis.sub
            if sub.sid in plan and reading.get(sub.sid) != (sub.user_id, sub.role, sub.manager_id):
                lis.end()

    def opened(self, listener: Listener) -> None:
        pass


# ---- the app's one hub

def stream_hub(app: Flask) -> StreamHub:
    """The app's one stream hub (created at the first call) with the admin's three feeds."""
    hub = app.extensions.get(HUB)
    if hub is None:
        hub = app.extensions[HUB] = StreamHub(
            app, [SessionFeed(app), BoardFeed(app), PopupFeed(app)],
            max_seconds=lambda: float(app.config["SSE_MAX_SECONDS"]), keepalive=KEEPALIVE_SECONDS)
    return hub


def add_stream(app: Flask, path: str, feed: Feed | None, *, kinds: Iterable[str] = ()) -> StreamHub:
    """Serve ``path`` (the full path, blueprint prefix included) on the app's hub, with ``feed`` if
    it brings a new one; the session check covers the feed's kinds and ``kinds``."""
    hub = stream_hub(app)
    if feed is not None and all(feed is not known for known in hub.feeds):
        hub.add_feed(feed)
    covered = set(kinds) | (set(feed.kinds) if feed is not None else set())
    for known in hub.feeds:
        if isinstance(known, SessionFeed):
            known.kinds = known.kinds | covered
    paths = dict(getattr(app, "asgi_paths", None) or {})
    paths[path] = hub
    app.asgi_paths = paths
    return hub
