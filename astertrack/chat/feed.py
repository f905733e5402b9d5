"""What the stream servers read of the chats each tick, for every listener of a process at once,
and the visitor's stream (``VisitorChatFeed``, served by the tracker on ``ops.streams``).

One read per tick: the chats changed since the last read (``Chat.updated_at``, an index; the
window reaches ``MARGIN`` further back, so a transaction that committed late is still seen), and
the messages of those chats above what the listeners were sent.  Duplicates are impossible by
construction: a listener is sent a message only when its number is above the last one it got.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from astertrack.chat.views import changed_since, manager_names, message_view, messages_after, state_view
from astertrack.ops.streams import Listener, sse

MARGIN = dt.timedelta(seconds=5)
VISITOR_KIND = "chat-visitor"


@dataclass
class ChatChange:
    """One changed chat as both sides may see it (plain data: built on the poller's thread)."""

    chat_id: int
    rev: int
    seq: int
    site_id: int
    status: str
    manager_id: int | None
    state: dict[str, Any]  # the manager's view (state_view for_visitor=False)
    visitor_state: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)  # manager's views, by seq
    visitor_messages: list[dict[str, Any]] = field(default_factory=list)


def read_changes(db: Session, since: dt.datetime, seqs: dict[int, int] | None,
                 unseen_after: Callable[[int], int] | None = None) -> dict[int, ChatChange]:
    """Chats changed since ``since``, with their messages above ``seqs[chat_id]``.  A chat not in
    ``seqs`` is left out when ``seqs`` is given, unless ``unseen_after`` says from which number to
    read it (it gets the chat's last number); with ``seqs`` None every chat is read from 0."""
    chats = [c for c in changed_since(db, since)
             if seqs is None or c.id in seqs or unseen_after is not None]

    def after(chat) -> int:
        if seqs is None:
            return 0
        return seqs[chat.id] if chat.id in seqs else unseen_after(chat.seq)

    wanted = {c.id: after(c) for c in chats}
    found = messages_after(db, {cid: after for cid, after in wanted.items()
                                if next(c for c in chats if c.id == cid).seq > after})
    names = manager_names(db, {c.manager_id for c in chats if c.manager_id})
    out = {}
    for chat in chats:
        name = names.get(chat.manager_id) if chat.manager_id else None
        rows = found.get(chat.id, [])
        out[chat.id] = ChatChange(
            chat_id=chat.id, rev=chat.rev, seq=chat.seq, site_id=chat.site_id, status=chat.status,
            manager_id=chat.manager_id, state=state_view(chat, name, for_visitor=False),
            visitor_state=state_view(chat, name, for_visitor=True),
            messages=[message_view(m, for_visitor=False) for m in rows],
            visitor_messages=[message_view(m, for_visitor=True) for m in rows])
    return out


@dataclass(frozen=True)
class VisitorSubscription:
    """A visitor's stream of one chat, as the tracker's gate view found it."""

    chat_id: int
    seq: int  # the last message the client has (Last-Event-ID or ``after``)
    rev: int  # the chat's rev the ``first`` bytes showed
    first: bytes = b""  # the messages after ``seq`` and the state, read by the gate
    kind: str = VISITOR_KIND


@dataclass
class _Plan:
    since: dt.datetime
    seqs: dict[int, int]
    started: dt.datetime


class VisitorChatFeed:
    """The visitors' chat streams of one process: every ``interval`` seconds one read of what
    changed, each change sent to the listeners of that chat (messages as ``message`` events whose
    id is their number, then the ``state``)."""

    kinds = frozenset({VISITOR_KIND})

    def __init__(self, sessions: Callable[[], Session], interval: Callable[[], float],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)):
        self.sessions = sessions
        self._interval = interval
        self.clock = clock
        self.read_at: dt.datetime | None = None

    def interval(self) -> float:
        return float(self._interval())

    def plan(self, listeners: list[Listener], now: float) -> _Plan | None:
        seqs: dict[int, int] = {}
        for lis in listeners:
            sent = lis.state.setdefault("seq", lis.sub.seq)
            lis.state.setdefault("rev", lis.sub.rev)
            seqs[lis.sub.chat_id] = min(sent, seqs.get(lis.sub.chat_id, sent))
        if not seqs:
            return None
        started = self.clock()
        since = (self.read_at or started) - MARGIN
        return _Plan(since=since, seqs=seqs, started=started)

    def read(self, plan: object) -> dict[int, ChatChange]:
        assert isinstance(plan, _Plan)
        with self.sessions() as db:
            return read_changes(db, plan.since, plan.seqs)

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        assert isinstance(plan, _Plan) and isinstance(reading, dict)
        self.read_at = plan.started
        for lis in listeners:
            change = reading.get(lis.sub.chat_id)
            if change is None or change.rev <= lis.state["rev"]:
                continue
            fresh = [m for m in change.visitor_messages if m["seq"] > lis.state["seq"]]
            chunks = [sse("message", m, id=m["seq"]) for m in fresh]
            chunks.append(sse("state", change.visitor_state))
            lis.push("".join(chunks).encode())
            # the numbers really sent (a message committed between the two reads may be newer than
            # the chat row read: it went out, and the next tick does not send it again)
            lis.state["seq"] = max([lis.state["seq"], *(m["seq"] for m in fresh)])
            lis.state["rev"] = change.rev

    def opened(self, listener: Listener) -> None:
        pass
