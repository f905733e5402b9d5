"""The managers' chat stream (kind ``chats``) on the admin's one stream hub.

One read per tick for every chats stream of the process (``chat.feed.read_changes``: the chats
changed since the last read, with their messages above what this feed has already read), then
each listener gets only what it may see (``access.visible``): a ``chat`` event per changed chat
(its summary: the list updates — a new chat, claimed, transferred, closed, typing, read marks)
and a ``message`` event per new message (id = its number).  A chat that left a listener's view
(taken by another manager) gets one last ``chat`` event with ``visible: false``.  The page loads
the state by a normal GET; a client that sees a chat's ``seq`` above its last message fetches
the gap, so a message is never lost between the page and the stream."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from astertrack.chat.feed import MARGIN, ChatChange, read_changes
from astertrack.ops.streams import RETRY, Listener, sse
from webadmin.chat.access import visible
from webadmin.chat.data import for_viewer, open_chats, summaries

KIND = "chats"
RECENT = 20  # messages read of a chat the feed has not seen before (the page GETs older ones)
LOOKBACK = dt.timedelta(seconds=60)  # after an idle spell the first read goes no further back


@dataclass(frozen=True)
class ChatSubscription:
    """A chats stream as its gate view found it (the fields ``SessionFeed`` re-checks, too)."""

    sid: str
    user_id: int
    role: str
    manager_id: int | None
    staff: bool
    kind: str = KIND
    first: bytes = b""


@dataclass
class _Plan:
    since: dt.datetime
    seqs: dict[int, int]  # the messages already read per chat (read above these)
    started: dt.datetime


@dataclass
class _Reading:
    changes: dict[int, ChatChange] = field(default_factory=dict)
    summaries: dict[int, dict[str, Any]] = field(default_factory=dict)


class ManagerChatFeed:
    """Every ``interval`` seconds (``[web] chat_poll_seconds``, 0.1 by default) one read for all chats streams."""

    kinds = frozenset({KIND})

    def __init__(self, sessions: Callable[[], Session], interval: Callable[[], float],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)):
        self.sessions = sessions
        self._interval = interval
        self.clock = clock
        self.read_at: dt.datetime | None = None
        self.seqs: dict[int, int] = {}  # chat id -> the last message number read

    def interval(self) -> float:
        return float(self._interval())

    def plan(self, listeners: list[Listener], now: float) -> _Plan | None:
        if not listeners:
            return None
        started = self.clock()
        since = max(self.read_at or started, started - LOOKBACK) - MARGIN
        return _Plan(since=since, seqs=dict(self.seqs), started=started)

    def read(self, plan: object) -> _Reading:
        assert isinstance(plan, _Plan)
        with self.sessions() as db:
            changes = read_changes(db, plan.since, plan.seqs, unseen_after=lambda seq: max(0, seq - RECENT))
            if not changes:
                return _Reading()
            return _Reading(changes=changes, summaries=summaries(db, list(changes)))

    def deliver(self, plan: object, reading: object, listeners: list[Listener], now: float) -> None:
        assert isinstance(plan, _Plan) and isinstance(reading, _Reading)
        self.read_at = plan.started
        for chat_id, change in reading.changes.items():
            if change.messages:
                self.seqs[chat_id] = max(self.seqs.get(chat_id, 0), change.messages[-1]["seq"])
            else:
                self.seqs.setdefault(chat_id, change.seq)
            if change.status == "closed":
                self.seqs.pop(chat_id, None)  # nothing more will be written to it
        wall = self.clock()
        for lis in listeners:
            sub = lis.sub
            revs: dict[int, int] = lis.state.setdefault("rev", {})
            sent: dict[int, int] = lis.state.setdefault("seq", {})
            chunks = []
            for chat_id, change in sorted(reading.changes.items()):
                summary = reading.summaries.get(chat_id)
                if summary is None:
                    continue
                seen = visible(summary["offered_to"], change.manager_id, staff=sub.staff, manager_id=sub.manager_id)
                known = revs.get(chat_id)
                if not seen and known is None:
                    continue
                if known is not None and change.rev <= known:
                    continue
                if seen:
                    fresh = [m for m in change.messages if m["seq"] > sent.get(chat_id, 0)]
                    chunks += [sse("message", {**m, "chat_id": chat_id}, id=m["seq"]) for m in fresh]
                    if fresh:
                        sent[chat_id] = fresh[-1]["seq"]
                    revs[chat_id] = change.rev
                else:
                    revs.pop(chat_id, None)
                    sent.pop(chat_id, None)
                chunks.append(sse("chat", for_viewer(summary, staff=sub.staff, manager_id=sub.manager_id, now=wall)))
            if chunks:
                lis.push("".join(chunks).encode())

    def opened(self, listener: Listener) -> None:
        pass


def snapshot(db: Session, sub: ChatSubscription, now: dt.datetime) -> str:
    """The one-shot stream (no event worker): a ``chat`` event per open chat the viewer sees."""
    return RETRY.decode() + "".join(sse("chat", summary) for summary in
                                    open_chats(db, staff=sub.staff, manager_id=sub.manager_id, now=now))
