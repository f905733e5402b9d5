"""Calls a gap in the AMI stream touched: marked at every (re)login, finished from Asterisk's CDR.

Runs in the writer thread, inside its transactions (ops keep their order, so a call's live finish
is stored before the reconciliation that corrects it).  Each pass reads the CDR lines written
since the last pass into ``cdr_records`` (with the file position, atomically), then gives every
pending call that is over - not live in Asterisk, its row finished, its CDR settled - the facts
of ``astertrack.callflow.cdr.reconcile``; ``closed_by = "cdr"`` says where they came from.
A call whose CDR never comes keeps the listener's best guess after ``[ami] cdr_wait`` seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from astertrack.callflow.cdr import CdrFacts, CdrFormatError, CdrLine, parse_line, reconcile
from astertrack.db.models import Call, CdrCursor, CdrRecord

from .cdr_file import Position, read_new_lines

log = logging.getLogger(__name__)

PENDING, DONE, NO_CDR = "pending", "done", "no_cdr"
SETTLE_SECONDS = 2.0  # after a call is over, before its CDR lines count as complete
BATCH = 500  # pending calls looked at per pass


def to_datetime(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


def cdr_line(record: CdrRecord) -> CdrLine:
    return CdrLine(linkedid=record.linkedid, uniqueid=record.uniqueid, channel=record.channel,
                   dstchannel=record.dstchannel or "", lastapp=record.lastapp or "", lastdata=record.lastdata or "",
                   disposition=record.disposition, start=record.start, answer=record.answer, end=record.end,
                   sequence=record.sequence)


def facts_for(session: Session, node: str, linkedid: str) -> CdrFacts | None:
    """What the stored CDR lines of one call say (None without a line of its caller channel)."""
    records = session.scalars(select(CdrRecord).where(CdrRecord.node == node, CdrRecord.linkedid == linkedid)
                              .order_by(CdrRecord.id)).all()
    lines = [cdr_line(r) for r in records]
    if not any(line.uniqueid == linkedid for line in lines):
        return None
    return reconcile(lines)


def apply_facts(call: Call, facts: CdrFacts, manager_id: int | None) -> None:
    """Put Asterisk's account on the row; what the events saw after the gap refines only the reason."""
    keep_reason = (call.closed_by == "events" and call.outcome == facts.outcome and call.missed_reason
                   and facts.outcome != "answered")
    call.outcome = facts.outcome
    call.missed_reason = call.missed_reason if keep_reason else facts.missed_reason
    call.answered_at = to_datetime(facts.answered_at)
    call.ended_at = to_datetime(facts.ended)
    call.wait_seconds = facts.wait_seconds
    call.talk_seconds = facts.talk_seconds
    call.total_seconds = round(facts.ended - facts.started, 3)
    call.answered_by = facts.answered_by
    call.manager_id = manager_id
    call.transferred = bool(call.transferred or facts.transferred_to)
    call.transferred_to = facts.transferred_to or call.transferred_to
    if call.recording_path and call.recording_state not in ("deleted", "missing"):
        call.recording_state = "kept" if facts.outcome == "answered" else "empty"
    call.state = "finished"
    call.ringing_endpoint = None
    call.closed_by = "cdr"
    call.reconcile_state = DONE


class Reconciler:
    def __init__(self, node: str, cdr_path: str, wait_seconds: float,
                 manager_id: Callable[[Session, str | None], int | None]):
        self.node = node
        self.cdr_path = cdr_path
        self.wait_seconds = wait_seconds
        self.manager_id = manager_id
        self.lines_read = 0
        self.bad_lines = 0
        self.reconciled = 0
        self.without_cdr = 0
        # call id -> when (our clock) it was first over and still without CDR: Asterisk's clock and
        # ours may differ, and a call closed long after its end (a long outage) still gets its wait
        self._waiting_since: dict[int, float] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.cdr_path)

    def mark_gap(self, session: Session, until: dt.datetime) -> int:
        """Every call of this node still open at a (re)login missed events: its facts will come from the CDR."""
        if not self.enabled:
            return 0
        result = session.execute(update(Call).where(Call.node == self.node, Call.state != "finished",
                                                    Call.started_at <= until, Call.reconcile_state.is_(None))
                                 .values(reconcile_state=PENDING).execution_options(synchronize_session=False))
        return result.rowcount or 0

    def mark_swept(self, call: Call) -> None:
        """A call closed by a guess (sweeper, resync) waits for its CDR too."""
        if self.enabled and call.reconcile_state is None:
            call.reconcile_state = PENDING

    def run(self, session: Session, live: set[str], now: float) -> dict[str, int]:
        """One pass; returns how many calls it finished from the CDR and how many gave up waiting."""
        done = {"cdr": 0, "no_cdr": 0}
        if not self.enabled:
            return done
        self._read_file(session)
        pending = session.scalars(select(Call).where(Call.node == self.node, Call.reconcile_state == PENDING)
                                  .order_by(Call.id).limit(BATCH)).all()
        for call in pending:
            if call.state != "finished" or call.linkedid in live or call.uniqueid in live:
                continue  # still going: the live stream finishes it first
            since = self._waiting_since.setdefault(call.id, now)
            facts = facts_for(session, self.node, call.linkedid) if call.linkedid else None
            if facts is not None and now - since >= SETTLE_SECONDS:
                apply_facts(call, facts, self.manager_id(session, facts.answered_by))
                self._waiting_since.pop(call.id, None)
                self.reconciled += 1
                done["cdr"] += 1
                log.info("call %s (linkedid %s) reconciled from the CDR: %s, wait %.1f s, talk %.1f s",
                         call.call_uid, call.linkedid, facts.outcome, facts.wait_seconds, facts.talk_seconds)
            elif facts is None and now - since > self.wait_seconds:
                call.reconcile_state = NO_CDR
                self._waiting_since.pop(call.id, None)
                self.without_cdr += 1
                done["no_cdr"] += 1
                log.warning("call %s (linkedid %s): no CDR line within %.0f s of its end; keeping the listener's "
                            "account (closed by %s). Is asterisk-conf/cdr_custom_astertrack.conf installed?",
                            call.call_uid, call.linkedid, self.wait_seconds, call.closed_by)
        return done

    def _read_file(self, session: Session) -> None:
        cursor = session.get(CdrCursor, self.node)
        position = Position(cursor.inode, cursor.offset) if cursor is not None and cursor.path == self.cdr_path else None
        try:
            texts, after = read_new_lines(self.cdr_path, position)
        except OSError as exc:
            log.error("cannot read the CDR file %s (%s): calls after a gap keep the listener's account",
                      self.cdr_path, exc)
            return
        rows = []
        for text in texts:
            if not text.strip():
                continue
            try:
                line = parse_line(text)
            except CdrFormatError as exc:
                self.bad_lines += 1
                log.warning("CDR line skipped (%s): %.200r", exc, text)
                continue
            rows.append({"node": self.node, "linkedid": line.linkedid, "uniqueid": line.uniqueid,
                         "sequence": line.sequence, "channel": line.channel, "dstchannel": line.dstchannel or None,
                         "lastapp": line.lastapp or None, "lastdata": line.lastdata or None,
                         "disposition": line.disposition, "start": line.start, "answer": line.answer,
                         "end": line.end, "read_at": dt.datetime.now(dt.UTC)})
        if rows:
            session.execute(insert(CdrRecord), rows)
            self.lines_read += len(rows)
        if after is not None and after != position:
            if cursor is None:
                session.add(CdrCursor(node=self.node, path=self.cdr_path, inode=after.inode, offset=after.offset))
            else:
                cursor.path, cursor.inode, cursor.offset = self.cdr_path, after.inode, after.offset
                cursor.updated_at = dt.datetime.now(dt.UTC)
