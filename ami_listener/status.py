"""The listener's own row in ``ami_listener_status``: its state on each change, a heartbeat each tick.

Runs in the writer thread, inside its batched transactions, so recording the status never
waits on the event path; ``callflow/listener_status`` decides what the row means.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.orm import Session

from astertrack.callflow.listener_status import NodeRow, next_since
from astertrack.db.models import AmiListenerStatus

ERROR_MAX = 500


class StatusRecorder:
    def __init__(self, node: str):
        self.node = node
        self.last: NodeRow | None = None  # what this process last stored (to put the row back if removed)

    def record(self, session: Session, state: str, when: dt.datetime, error: str | None, restarted: bool) -> None:
        row = session.get(AmiListenerStatus, self.node)
        previous = None if row is None else NodeRow(row.node, row.state, row.since, row.heartbeat_at, row.last_error)
        since = next_since(previous, state, when, restarted=restarted)
        error = error[:ERROR_MAX] if error else None
        if row is None:
            session.add(AmiListenerStatus(node=self.node, state=state, since=since, heartbeat_at=when, last_error=error))
        else:
            row.state, row.since, row.heartbeat_at, row.last_error = state, since, max(row.heartbeat_at, when), error
        session.flush()
        self.last = NodeRow(self.node, state, since, when, error)

    def heartbeat(self, session: Session, when: dt.datetime) -> None:
        result = session.execute(update(AmiListenerStatus).where(AmiListenerStatus.node == self.node)
                                 .values(heartbeat_at=when).execution_options(synchronize_session=False))
        if not result.rowcount and self.last is not None:  # someone removed the row: say it again
            last = self.last
            session.add(AmiListenerStatus(node=self.node, state=last.state, since=last.since, heartbeat_at=when,
                                          last_error=last.last_error))
            session.flush()
