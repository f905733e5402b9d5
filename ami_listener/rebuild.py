"""``astertrack-ami rebuild --since DATE``: re-derive call outcomes from the stored raw events.

Each call's stored events are replayed, in the order they were received, through a fresh state machine
built with the live settings, and the finished record overwrites the derived columns of the row
(outcome, timings, manager, recording...).  Attribution written by the AGI is never touched, and
running it twice gives the same rows (idempotent).  Calls a gap touched were finished from
Asterisk's CDR: their stored CDR lines are applied again instead.  Calls whose events do not
reach an end (they were closed by the sweeper) are left as they are and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from astertrack.callflow.state_machine import OP_FINISH, CallStateMachine
from astertrack.db.models import Call, CallEvent

from .reconcile import DONE, apply_facts, facts_for
from .writer import CallWriter

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    calls: int = 0
    rebuilt: int = 0
    changed: int = 0
    incomplete: int = 0
    without_events: int = 0


_COMPARED = ("outcome", "missed_reason", "wait_seconds", "talk_seconds", "answered_by", "hangup_side",
             "recording_path", "recording_state", "transferred")


def rebuild(session_factory: sessionmaker[Session], node: str, since: dt.datetime,
            make_machine: Callable[[], CallStateMachine], *, region: str = "RU", chunk: int = 500) -> RebuildReport:
    report = RebuildReport()
    writer = CallWriter(session_factory, node, store_raw_events=False, region=region)
    last_id = 0
    while True:
        with session_factory() as session:
            calls = session.execute(
                select(Call.id, *[getattr(Call, name) for name in _COMPARED], Call.reconcile_state, Call.linkedid)
                .where(Call.node == node, Call.started_at >= since, Call.id > last_id)
                .order_by(Call.id).limit(chunk)).all()
            if not calls:
                break
            last_id = calls[-1][0]
            ops = []
            for full in calls:
                row, reconcile_state, linkedid = full[:-2], full[-2], full[-1]
                report.calls += 1
                if reconcile_state == DONE and linkedid:
                    facts = facts_for(session, node, linkedid)
                    if facts is not None:
                        call = session.get(Call, row[0])
                        before = tuple(row[1:])
                        apply_facts(call, facts, writer.manager_id(session, facts.answered_by))
                        if _differs(before, tuple(getattr(call, name) for name in _COMPARED)):
                            report.changed += 1
                        report.rebuilt += 1
                        continue
                events = session.scalars(select(CallEvent.headers).where(CallEvent.call_id == row[0])
                                         .order_by(CallEvent.id)).all()
                if not events:
                    report.without_events += 1
                    continue
                record = replay(events, make_machine())
                if record is None:
                    report.incomplete += 1
                    continue
                report.rebuilt += 1
                before = tuple(row[1:])
                after = tuple(record.get(name) for name in _COMPARED)
                if _differs(before, after):
                    report.changed += 1
                writer.row_ids[record["key"]] = row[0]
                ops.append((OP_FINISH, record["key"], record))
            session.commit()
        writer.apply(ops)
    log.info("rebuild since %s: %s", since.isoformat(), report)
    return report


def replay(events: list[dict], machine: CallStateMachine) -> dict | None:
    """Feed one call's stored events; return its finished record, or None if it never ended."""
    for headers in events:
        machine.feed(dict(headers))
    finished = [op[2] for op in machine.drain() if op[0] == OP_FINISH]
    return finished[-1] if finished else None


def _differs(before: tuple, after: tuple) -> bool:
    for old, new in zip(before, after, strict=True):
        if isinstance(old, float) or isinstance(new, float):
            if old is None or new is None or abs(old - new) > 0.001:
                return True
        elif old != new:
            return True
    return False
