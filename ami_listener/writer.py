"""Persist what the call state machine decides: one writer thread, ops applied in order, batched per transaction.

Why a thread: a slow database must never stall the socket reader (Asterisk drops readers that lag,
``writetimeout``), and SQLAlchemy is synchronous.  Why batches: one transaction per burst keeps
SQLite at tens of thousands of events per second.  Ops keep the state machine's order, so a call's row
exists before its raw events and its finish.

Rows: the AGI normally creates the ``Call`` row (``call_uid`` = CT_CALL_ID).  We find it by call id,
then by linkedid/uniqueid, and create it only when neither exists (AGI down, Local-channel tests).
Until a call has a row, its raw events wait here, so we never race the AGI into a duplicate row.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from astertrack.callflow.state_machine import (
    OP_DEVICE,
    OP_EVENT,
    OP_FINISH,
    OP_LIVE,
    OP_MERGE,
    OP_OUTBOUND,
    endpoint_of,
)
from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import AmiGap, Call, CallEvent, Manager, OutboundCall, new_uid
from astertrack.ops import metrics
from astertrack.phones import try_normalize

from .reconcile import Reconciler
from .status import StatusRecorder

log = logging.getLogger(__name__)

OP_GAP = "gap"  # (OP_GAP, started_at, ended_at, reason)
OP_SWEEP_DB = "sweep_db"  # (OP_SWEEP_DB, live_linkedids, started_before, now, reason)
OP_BARRIER = "barrier"  # (OP_BARRIER, threading.Event): set once every earlier op is committed
OP_RECONCILE = "reconcile"  # (OP_RECONCILE, live_ids, now): read new CDR lines, finish the gap's calls
OP_STATUS = "status"  # (OP_STATUS, state, at, error, restarted): the listener's row in ami_listener_status
OP_HEARTBEAT = "heartbeat"  # (OP_HEARTBEAT, at): the listener is alive (each reconcile tick)
_STATUS_OPS = (OP_STATUS, OP_HEARTBEAT)
_STOP = ("stop",)
CALLS = Call.__table__  # Core statements: no ORM loading or session synchronisation on the hot path

_FINISH_FIELDS = ("outcome", "missed_reason", "wait_seconds", "talk_seconds", "total_seconds", "answered_by",
                  "transferred", "transferred_to", "hangup_cause", "hangup_cause_text", "hangup_side",
                  "recording_path", "recording_state", "closed_by", "ringing_endpoint")


def to_datetime(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


def dialled_number(dial_string: str | None) -> str | None:
    """The number in a Dial() string: ``79161234567@trunk`` (PJSIP), ``trunk/79161234567`` (chan_sip),
    ``trunk/sip:79161234567@host``."""
    if not dial_string:
        return None
    part = dial_string.rsplit("/", 1)[-1]
    part = part.removeprefix("sip:").removeprefix("sips:").removeprefix("tel:")
    return part.split("@", 1)[0] or None


class CallWriter:
    """``submit(ops)`` from the event loop; a thread applies them.  ``flush()`` waits for the backlog."""

    def __init__(self, session_factory: sessionmaker[Session], node: str, *, store_raw_events: bool = True,
                 region: str = "RU", batch_max: int = 5000, retry_delay: float = 1.0,
                 cdr_file: str = "", cdr_wait: float = 600.0):
        self.session_factory = session_factory
        self.reconciler = Reconciler(node, cdr_file, cdr_wait, self.manager_id)
        self.status = StatusRecorder(node)
        self._status_error_logged = -3600.0
        self._status_pending: list[tuple] = []
        self.node = node
        self.store_raw_events = store_raw_events
        self.region = region
        self.batch_max = batch_max
        self.retry_delay = retry_delay
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.row_ids: dict[str, int] = {}  # state-machine key -> Call.id
        self.waiting_events: dict[str, list[dict]] = {}  # events of calls that have no row yet
        self.ignored: set[str] = set()  # calls placed by our managers' phones (not inbound)
        self.managers: dict[str, int] = {}
        self.managers_loaded = 0.0
        self.calls_finished = 0
        self.events_stored = 0
        self.errors = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ thread control

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ami-writer", daemon=True)
        self._thread.start()

    def submit(self, ops: Iterable[tuple]) -> None:
        for op in ops:
            self.queue.put(op)

    def flush(self, timeout: float = 30.0) -> bool:
        done = threading.Event()
        self.queue.put((OP_BARRIER, done))
        if self._thread is None:
            self._drain_once()
        return done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self.queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            if not self._drain_once():
                return

    def _drain_once(self) -> bool:
        """Take what is queued (blocking for the first op) and apply it; False after stop."""
        first = self.queue.get()
        if first is _STOP:
            return False
        batch = [first]
        stop = False
        while len(batch) < self.batch_max:
            try:
                op = self.queue.get_nowait()
            except queue.Empty:
                break
            if op is _STOP:
                stop = True
                break
            batch.append(op)
        self.apply(batch)
        return not stop

    # ------------------------------------------------------------------ applying a batch

    def apply(self, batch: list[tuple]) -> None:
        barriers = [op[1] for op in batch if op[0] == OP_BARRIER]
        status = [op for op in batch if op[0] in _STATUS_OPS]
        work = [op for op in batch if op[0] != OP_BARRIER and op[0] not in _STATUS_OPS]
        attempt = 0
        while work:
            saved = (dict(self.row_ids), {k: list(v) for k, v in self.waiting_events.items()})
            try:
                self._apply_in_transaction(work)
                break
            except (OperationalError, DBAPIError) as exc:
                self.row_ids, self.waiting_events = saved
                if isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False):
                    attempt += 1
                    log.error("database unavailable (%s); retrying %d ops in %.0f s (attempt %d)",
                              exc.__class__.__name__, len(work), self.retry_delay, attempt)
                    if self._stopping.wait(min(30.0, self.retry_delay * attempt)):
                        break
                    continue
                self._apply_one_by_one(work)
                break
            except Exception:
                self.row_ids, self.waiting_events = saved
                self._apply_one_by_one(work)
                break
        if status:
            self._apply_status(status)
        for done in barriers:
            done.set()

    def _apply_status(self, ops: list[tuple]) -> None:
        """The listener's status row, in a transaction of its own and never retried: a status that
        cannot be written (database down, migration 0008 not applied) must not hold up the calls,
        and a heartbeat that stops is exactly what tells the admin something is wrong."""
        # a state change that could not be stored is tried again with the next ops (in order, the
        # first kept: it knows whether this process started after a crash)
        pending = self._status_pending + [op for op in ops if op[0] == OP_STATUS]
        if len(pending) > 50:
            pending = pending[:1] + pending[-49:]
        beats = [op[1] for op in ops if op[0] == OP_HEARTBEAT]
        self._status_pending = pending
        try:
            with session_scope(self.session_factory) as session:
                begin_write(session)
                for op in pending:
                    self.status.record(session, *op[1:])
                if beats:
                    self.status.heartbeat(session, max(beats))
            self._status_pending = []
        except Exception as exc:
            now = time.monotonic()
            if now - self._status_error_logged > 60:
                self._status_error_logged = now
                log.error("cannot record the listener's status in ami_listener_status (%s: %s); the admin will "
                          "say Asterisk is not followed", exc.__class__.__name__, str(exc).splitlines()[0][:300])

    def _apply_one_by_one(self, work: list[tuple]) -> None:
        """A batch failed on data: keep every good op, log the bad one with what it was."""
        for op in work:
            saved = (dict(self.row_ids), {k: list(v) for k, v in self.waiting_events.items()})
            try:
                self._apply_in_transaction([op])
            except Exception:
                self.row_ids, self.waiting_events = saved
                self.errors += 1
                log.exception("AMI writer could not store %s for %s", op[0], op[1] if len(op) > 1 else "")

    def _apply_in_transaction(self, work: list[tuple]) -> None:
        rows: list[dict[str, Any]] = []
        devices: dict[str, tuple[str, float]] = {}
        finished: list[str] = []
        reconciled = {"cdr": 0, "no_cdr": 0}
        with session_scope(self.session_factory) as session:
            begin_write(session)
            for op in work:
                kind = op[0]
                if kind == OP_EVENT:
                    self._event(session, op[1], op[2], rows)
                elif kind == OP_LIVE:
                    self._live(session, op[2], rows)
                elif kind == OP_FINISH:
                    self._finish(session, op[2], rows)
                    finished.append(op[2].get("outcome"))
                elif kind == OP_MERGE:
                    self._merge(session, op[1], op[2], rows)
                elif kind == OP_DEVICE:
                    devices[op[1]] = (op[2], op[3])
                elif kind == OP_OUTBOUND:
                    self._outbound(session, op[2])
                elif kind == OP_GAP:
                    session.add(AmiGap(node=self.node, started_at=op[1], ended_at=op[2], reason=op[3][:200]))
                    session.flush()
                    self.reconciler.mark_gap(session, op[2])
                elif kind == OP_SWEEP_DB:
                    self._sweep_db(session, *op[1:])
                elif kind == OP_RECONCILE:
                    session.flush()
                    for result, count in self.reconciler.run(session, op[1], op[2]).items():
                        reconciled[result] += count
            if rows:
                session.flush()
                session.connection().execute(insert(CallEvent.__table__), rows)
            for device, (state, ts) in devices.items():
                session.connection().execute(update(Manager.__table__).where(Manager.endpoint == device)
                                             .values(device_state=state[:20], device_state_at=to_datetime(ts)))
        self.events_stored += len(rows)
        for outcome in finished:
            self.calls_finished += 1
            metrics.call_finished(outcome)
        for result, count in reconciled.items():
            if count:
                metrics.CALLS_RECONCILED.labels(result=result).inc(count)

    # ------------------------------------------------------------------ calls

    def _event(self, session: Session, key: str, msg: dict, rows: list[dict]) -> None:
        if not self.store_raw_events or key in self.ignored:
            return
        call_id = self.row_ids.get(key)
        if call_id is None:
            self.waiting_events.setdefault(key, []).append(msg)
            return
        rows.append(self._event_row(call_id, msg))

    def _event_row(self, call_id: int, msg: dict) -> dict[str, Any]:
        uid = msg.get("Uniqueid") or msg.get("DestUniqueid")
        linkedid = msg.get("Linkedid") or msg.get("DestLinkedid")
        ts = msg.get("Timestamp")
        return {"call_id": call_id, "node": self.node, "name": str(msg.get("Event", ""))[:80],
                "uniqueid": uid[:150] if isinstance(uid, str) else None,
                "linkedid": linkedid[:150] if isinstance(linkedid, str) else None,
                "event_time": ts if isinstance(ts, float) else None,
                "received_at": dt.datetime.now(dt.UTC), "headers": msg}

    def _row_id(self, session: Session, rec: dict, rows: list[dict]) -> int | None:
        """The id of the call's row: remembered, else found (the AGI's), else created.

        Plain Core statements, no ORM loading: this runs for every live update of every call.
        """
        key = rec["key"]
        call_id = self.row_ids.get(key)
        if call_id is not None:
            return call_id
        call_id = self._find_id(session, rec)
        if call_id is None and rec.get("adopted") and not rec.get("call_uid"):
            # found in a resync with no row and no AGI announcement: an internal call in progress
            # when we started, or one whose start we missed; nothing trustworthy to record
            self.ignored.add(key)
            self.waiting_events.pop(key, None)
            return None
        if call_id is None:
            call_id = session.connection().execute(insert(CALLS).values(
                call_uid=(rec.get("call_uid") or new_uid())[:64], node=self.node, linkedid=key[:150],
                uniqueid=(rec.get("uniqueid") or key)[:150], started_at=to_datetime(rec["started_at"]),
                state="ringing", **self._identity(rec, fill_only=False)).returning(Call.id)).scalar_one()
        else:
            session.connection().execute(update(CALLS).where(Call.id == call_id).values(**self._identity(rec)))
        self.row_ids[key] = call_id
        waiting = self.waiting_events.pop(key, None)
        if waiting:
            rows.extend(self._event_row(call_id, msg) for msg in waiting)
        return call_id

    def _find_id(self, session: Session, rec: dict) -> int | None:
        if rec.get("call_uid"):
            call_id = session.connection().scalar(select(Call.id).where(Call.call_uid == rec["call_uid"]))
            if call_id is not None:
                return call_id
        ids = [x for x in rec.get("linkedids", [rec["key"]]) if x]
        conditions = [Call.linkedid.in_(ids)]
        if rec.get("uniqueid"):
            conditions.append(Call.uniqueid == rec["uniqueid"])
        return session.connection().scalar(select(Call.id).where(Call.node == self.node, or_(*conditions))
                                           .order_by(Call.id.desc()).limit(1))

    def _identity(self, rec: dict, fill_only: bool = True) -> dict[str, Any]:
        """Who called which number: values for a new row, or (``fill_only``) SQL that fills only
        what the AGI left empty and never overwrites its attribution."""
        did = try_normalize(rec["did"], self.region) if rec.get("did") else None
        raw = rec.get("caller_number") or None
        number = try_normalize(raw, self.region) if raw else None
        values: dict[str, Any] = {
            "did": did, "caller_number": number, "caller_raw": None if number or not raw else raw[:80],
            "caller_name": (rec.get("caller_name") or None) and rec["caller_name"][:200],
            "routed_by": (rec.get("routed_by") or None) and rec["routed_by"][:200],
        }
        if not fill_only:
            return values
        started = to_datetime(rec.get("started_at"))
        no_number = and_(func.coalesce(Call.caller_number, "") == "", func.coalesce(Call.caller_raw, "") == "")
        filled: dict[str, Any] = {
            "linkedid": func.coalesce(func.nullif(Call.linkedid, ""), rec["key"][:150]),
            "uniqueid": func.coalesce(func.nullif(Call.uniqueid, ""), (rec.get("uniqueid") or rec["key"])[:150]),
            "caller_number": case((no_number, values["caller_number"]), else_=Call.caller_number),
            "caller_raw": case((no_number, values["caller_raw"]), else_=Call.caller_raw),
        }
        for name in ("did", "caller_name", "routed_by"):
            if values[name] is not None:
                column = getattr(Call, name)
                filled[name] = func.coalesce(func.nullif(column, ""), values[name])
        if started is not None:
            filled["started_at"] = case((and_(Call.state != "finished", Call.started_at > started), started),
                                        else_=Call.started_at)
        return filled

    def _placed_by_a_manager(self, session: Session, rec: dict) -> bool:
        """An unannounced call whose caller is one of our managers' phones is internal or outbound,
        not a call to track (the AGI never saw it); remember to skip the rest of its ops."""
        key = rec["key"]
        if key in self.ignored:
            return True
        if rec.get("call_uid") or key in self.row_ids or not rec.get("channel"):
            return False
        if self.manager_id(session, endpoint_of(rec["channel"]), by_extension=False) is None:
            return False
        self.ignored.add(key)
        self.waiting_events.pop(key, None)
        return True

    def _live(self, session: Session, rec: dict, rows: list[dict]) -> None:
        if self._placed_by_a_manager(session, rec):
            return
        call_id = self._row_id(session, rec, rows)
        if call_id is None:
            return
        values: dict[str, Any] = {"state": rec["state"], "ringing_endpoint": rec.get("ringing_endpoint")}
        if rec.get("answered_by"):
            manager_id = self.manager_id(session, rec["answered_by"])
            values.update(answered_by=rec["answered_by"][:100], answered_at=to_datetime(rec.get("answered_at")),
                          manager_id=manager_id if manager_id is not None else Call.manager_id)
            if rec.get("adopted"):  # joined late: keep what the row learnt before
                for name in ("answered_at", "answered_by"):
                    values[name] = func.coalesce(getattr(Call, name), values[name])
        session.connection().execute(update(CALLS).where(Call.id == call_id, Call.state != "finished")
                                     .values(**values))

    def _finish(self, session: Session, rec: dict, rows: list[dict]) -> None:
        if self._placed_by_a_manager(session, rec):
            self.ignored.discard(rec["key"])
            return
        known = rec["key"] in self.row_ids
        call_id = self._row_id(session, rec, rows)
        if call_id is None:
            self.ignored.discard(rec["key"])
            return
        values: dict[str, Any] = self._identity(rec) if known else {}
        for name in _FINISH_FIELDS:
            value = rec.get(name)
            if isinstance(value, str):
                value = value[:1024 if name == "recording_path" else 100]
            values[name] = value
        if values["recording_path"] is None and rec.get("recording_started") is not False:
            # a MixMonitor started (or we joined too late to know) but the events did not name its
            # file (no channelvars/VarSet): keep the name the AGI stored
            del values["recording_path"]
            state = "kept" if rec.get("outcome") == "answered" else "empty"
            values["recording_state"] = case((func.coalesce(Call.recording_path, "") != "", state), else_=None)
        answered_by = rec.get("answered_by")
        values.update(state="finished", answered_at=to_datetime(rec.get("answered_at")),
                      ended_at=to_datetime(rec.get("ended_at")),
                      manager_id=self.manager_id(session, answered_by) if answered_by else None)
        if rec.get("adopted"):
            # we joined this call late: what the row learnt before (answer time, manager) is better
            for name in ("answered_at", "answered_by", "manager_id"):
                values[name] = func.coalesce(getattr(Call, name), values[name])
        session.connection().execute(update(CALLS).where(Call.id == call_id).values(**values))
        self.row_ids.pop(rec["key"], None)

    def _outbound(self, session: Session, rec: dict) -> None:
        """A manager dialled out from their own phone: one ``outbound_calls`` row (the missed-calls
        report counts it as calling back).  Another phone's call, or one manager ringing another, is
        not one; a replay of the same call adds nothing."""
        manager_id = self.manager_id(session, rec["endpoint"], by_extension=False)
        if manager_id is None or any(self.manager_id(session, e, by_extension=False) is not None
                                     for e in rec.get("callee_endpoints", ())):
            return
        key = rec["key"][:150]
        if session.scalar(select(OutboundCall.id).where(OutboundCall.node == self.node,
                                                        OutboundCall.linkedid == key)) is not None:
            return
        raw = None
        for candidate in (rec.get("exten"), dialled_number(rec.get("dial_string"))):
            if candidate and candidate != "s":
                raw = raw or candidate
                number = try_normalize(candidate, self.region)
                if number:
                    raw = candidate
                    break
        else:
            number = None
        session.add(OutboundCall(node=self.node, linkedid=key, manager_id=manager_id, endpoint=rec["endpoint"][:100],
                                 number=number, number_raw=raw[:80] if raw else None,
                                 started_at=to_datetime(rec["started_at"]),
                                 answered_at=to_datetime(rec.get("answered_at")),
                                 ended_at=to_datetime(rec.get("ended_at")), disposition=rec["disposition"][:20]))
        session.flush()

    def _merge(self, session: Session, absorbed: str, survivor: str, rows: list[dict]) -> None:
        """Two calls turned out to be one (linkedid re-stamped by a transfer or pickup)."""
        self.ignored.discard(absorbed)
        old = self.row_ids.pop(absorbed, None)
        waiting = self.waiting_events.pop(absorbed, [])
        new = self.row_ids.get(survivor)
        if old is None:
            self.waiting_events.setdefault(survivor, []).extend(waiting)
            return
        if new is None:
            self.row_ids[survivor] = old
            self.waiting_events.setdefault(survivor, []).extend(waiting)
            return
        session.flush()
        session.execute(update(CallEvent).where(CallEvent.call_id == old).values(call_id=new))
        for row in rows:
            if row["call_id"] == old:
                row["call_id"] = new
        rows.extend(self._event_row(new, msg) for msg in waiting)
        session.execute(update(Call).where(Call.id == old).values(state="finished", closed_by="merged"))

    def _sweep_db(self, session: Session, live_linkedids: set[str], started_before: dt.datetime,
                  now: dt.datetime, reason: str) -> None:
        """Close rows left in progress whose channels Asterisk no longer has (restart, gap)."""
        known = set(self.row_ids.values())
        stale = session.scalars(select(Call).where(Call.node == self.node, Call.state != "finished",
                                                   Call.started_at < started_before)).all()
        for call in stale:
            if call.id in known or call.linkedid in live_linkedids or call.uniqueid in live_linkedids:
                continue
            call.state = "finished"
            call.closed_by = "sweeper"
            self.reconciler.mark_swept(call)
            call.ended_at = call.ended_at or now
            call.ringing_endpoint = None
            if call.outcome is None:
                call.outcome = "answered" if call.answered_at else "missed"
                call.missed_reason = None if call.answered_at else "failed"
            log.warning("closed call %s (linkedid %s) by sweeper: %s", call.call_uid, call.linkedid, reason)

    def manager_id(self, session: Session, endpoint: str | None, by_extension: bool = True) -> int | None:
        if not endpoint:
            return None
        max_age = 60.0 if endpoint in self.managers else 5.0
        if time.monotonic() - self.managers_loaded > max_age:
            self._load_managers(session)
        if endpoint in self.managers:
            return self.managers[endpoint]
        if not by_extension:
            return None
        extension = endpoint.split("/", 1)[-1].split("@", 1)[0]
        return self.managers.get(f"ext:{extension}")

    def _load_managers(self, session: Session) -> None:
        table: dict[str, int] = {}
        for manager_id, endpoint, extension in session.execute(
                select(Manager.id, Manager.endpoint, Manager.extension)):
            table[endpoint] = manager_id
            if extension:
                table.setdefault(f"ext:{extension}", manager_id)
        self.managers = table
        self.managers_loaded = time.monotonic()
