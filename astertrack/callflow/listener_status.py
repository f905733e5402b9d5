"""Is Asterisk followed now, since when, on which nodes: the rule behind the admin's banner and board.

Each node's AMI listener keeps one ``ami_listener_status`` row (state, since, heartbeat).  A node is
followed only while its listener is logged in and its heartbeat is fresh: a listener killed with
SIGKILL writes nothing, so a stale heartbeat is the only sign of it.  No row at all means no
listener ever ran, which is not followed either.  Pure functions over rows and a clock, so the
web admin, the live board and the tests (with a fake clock) all share one answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import AmiListenerStatus

CONNECTED, LOGGED_IN, DISCONNECTED, STOPPED = "connected", "logged_in", "disconnected", "stopped"
STATES = (CONNECTED, LOGGED_IN, DISCONNECTED, STOPPED)
STALE = "stale"  # a problem, not a stored state: the listener stopped writing its heartbeat
NEVER = "never"  # a problem of the whole fleet: no listener ever wrote a row

HEARTBEAT_SECONDS = 2.0  # the listener's reconcile tick writes the heartbeat this often
STALE_AFTER = dt.timedelta(seconds=15)  # a few missed ticks, a slow database and clock skew between nodes
RESYNC_SETTLE = dt.timedelta(seconds=10)  # after a login, calls from before it are closed or adopted by then
ACTIVE_CALL_STATES = ("ringing", "up")


@dataclass(frozen=True)
class NodeRow:
    """One stored row, as read (``astertrack.db.models.AmiListenerStatus``)."""

    node: str
    state: str
    since: dt.datetime
    heartbeat_at: dt.datetime
    last_error: str | None = None


@dataclass(frozen=True)
class NodeStatus:
    node: str
    state: str
    problem: str | None  # None when followed; else the stored state or STALE
    down_since: dt.datetime | None  # when the node stopped being followed (None when followed)
    logged_in_since: dt.datetime | None  # start of the current session (None when not logged in)
    last_error: str | None

    @property
    def followed(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class AmiStatus:
    nodes: tuple[NodeStatus, ...]
    now: dt.datetime

    @property
    def followed(self) -> bool:
        return bool(self.nodes) and all(n.followed for n in self.nodes)

    @property
    def never_ran(self) -> bool:
        return not self.nodes

    @property
    def down(self) -> list[NodeStatus]:
        return [n for n in self.nodes if not n.followed]

    @property
    def down_since(self) -> dt.datetime | None:
        times = [n.down_since for n in self.down if n.down_since is not None]
        return min(times) if times else None

    def node(self, name: str | None) -> NodeStatus | None:
        return next((n for n in self.nodes if n.node == name), None)

    def call_followed(self, node: str | None, state: str, started_at: dt.datetime | None) -> bool:
        """Can the listener still see this call's events?  Finished calls are not in question.

        Not followed: a ringing/up call of a node that is down (or has no listener), and, for a few
        seconds after a login, one that started before it (the resync closes or adopts it)."""
        if state not in ACTIVE_CALL_STATES:
            return True
        status = self.node(node)
        if status is None or not status.followed:
            return False
        since = status.logged_in_since
        if started_at is not None and since is not None and started_at < since:
            return self.now - since >= RESYNC_SETTLE
        return True

    def as_dict(self) -> dict[str, Any]:
        """JSON for the live board's stream (times as ISO UTC)."""
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"followed": self.followed, "never_ran": self.never_ran, "since": iso(self.down_since),
                "nodes": [{"node": n.node, "state": n.state, "problem": n.problem, "since": iso(n.down_since),
                           "last_error": n.last_error} for n in self.nodes]}


def node_status(row: NodeRow, now: dt.datetime, stale_after: dt.timedelta = STALE_AFTER) -> NodeStatus:
    if row.state == STOPPED:
        return NodeStatus(row.node, row.state, STOPPED, row.since, None, row.last_error)
    if now - row.heartbeat_at > stale_after:
        # the process died (or cannot reach the database): followed at most until its last sign of life
        down = row.heartbeat_at if row.state == LOGGED_IN else row.since
        return NodeStatus(row.node, row.state, STALE, down, None, row.last_error)
    if row.state == LOGGED_IN:
        return NodeStatus(row.node, row.state, None, None, row.since, None)
    return NodeStatus(row.node, row.state, row.state, row.since, None, row.last_error)


def assess(rows: Iterable[NodeRow], now: dt.datetime, stale_after: dt.timedelta = STALE_AFTER) -> AmiStatus:
    """Every node's status at ``now``, nodes in name order."""
    return AmiStatus(tuple(node_status(r, now, stale_after) for r in sorted(rows, key=lambda r: r.node)), now)


def read(session: Session, now: dt.datetime | None = None) -> AmiStatus:
    """Every node's status from the database (one read of a table of one row per node)."""
    row = AmiListenerStatus
    rows = session.execute(select(row.node, row.state, row.since, row.heartbeat_at, row.last_error)).all()
    return assess([NodeRow(*r) for r in rows], now or dt.datetime.now(dt.UTC))


def next_since(previous: NodeRow | None, state: str, when: dt.datetime, *, restarted: bool = False) -> dt.datetime:
    """The ``since`` to store when a listener reports ``state`` at ``when``.

    ``since`` says when the node became followed (logged in) or stopped being followed, so it moves
    only when that changes: a listener that restarts while Asterisk stays unreachable keeps the
    first moment of the outage.  A listener that finds its own row still logged in at start was
    killed: the outage began at its last heartbeat, not now."""
    if previous is None:
        return when
    if state == LOGGED_IN:
        return previous.since if previous.state == LOGGED_IN and not restarted else when
    if previous.state != LOGGED_IN:
        return previous.since
    if restarted:
        return min(previous.heartbeat_at, when)
    return when
