"""Leads from calls: each finished inbound call becomes an enquiry (``astertrack.leads``), off the
AGI's hot path, on the listener's 2-second tick.

Which calls: a site's inbound calls (``lead_channel == "call"``, the AGI's record) once finished, so
the enquiry carries the manager who answered.  Anonymous calls (no usable caller number) make no
lead: nobody can call them back or recognise them again, and they would swell "unique leads"; they
stay in the call reports.  Calls astertrack originated (callbacks) belong to their callback
request's enquiry and make none.  A call the AGI never saw has no site and makes no lead.

Idempotent: ``enquiries.call_id`` is unique and ``record_enquiry`` returns a call's existing
enquiry, so a call seen twice (a restart, two ticks) still makes one.  Each tick looks at calls
started in the last ``RECENT``; every ``FULL_EVERY`` ticks it looks back ``LOOKBACK`` (calls a gap
finished late from the CDR).  The work runs in a thread of its own, one run at a time, each call in
its own transaction: the call writer never waits for it, and one bad row cannot stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import Call, Enquiry
from astertrack.leads.enquiries import record_enquiry

log = logging.getLogger(__name__)

RECENT = dt.timedelta(hours=3)
LOOKBACK = dt.timedelta(days=2)
FULL_EVERY = 300  # ticks (10 minutes at 2 s)
BATCH = 500


def pending_calls(session: Session, since: dt.datetime, limit: int = BATCH) -> list[int]:
    """Ids of the finished inbound calls since ``since`` that have a site and a caller number
    and no enquiry yet, oldest first."""
    return list(session.scalars(
        select(Call.id).where(Call.started_at >= since, Call.state == "finished", Call.lead_channel == "call",
                              Call.site_id.is_not(None), Call.caller_number.is_not(None), Call.caller_number != "",
                              ~exists().where(Enquiry.call_id == Call.id))
        .order_by(Call.started_at, Call.id).limit(limit)))


class LeadsFromCalls:
    """``schedule()`` from the tick (returns at once); ``run_once()`` does one pass (tests call it)."""

    def __init__(self, session_factory: sessionmaker[Session], region: str = "RU", *,
                 recent: dt.timedelta = RECENT, lookback: dt.timedelta = LOOKBACK):
        self.session_factory = session_factory
        self.region = region
        self.recent, self.lookback = recent, lookback
        self.ticks = 0
        self.recorded = 0
        self.errors = 0
        self._thread: threading.Thread | None = None

    def schedule(self) -> None:
        """Start a pass in the background unless one is still running."""
        if self._thread is not None and self._thread.is_alive():
            return
        full = self.ticks % FULL_EVERY == 0
        self.ticks += 1
        self._thread = threading.Thread(target=self._run_logged, args=(full,), name="leads-from-calls", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 30.0) -> None:
        """Let a running pass finish (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_logged(self, full: bool) -> None:
        try:
            self.run_once(full=full)
        except Exception:  # the database is down: the next tick tries again
            self.errors += 1
            log.exception("leads from calls: pass failed")

    def run_once(self, *, full: bool = True, now: dt.datetime | None = None) -> int:
        """Record an enquiry for every pending call; returns how many were recorded."""
        now = now or dt.datetime.now(dt.UTC)
        since = now - (self.lookback if full else self.recent)
        recorded = 0
        while True:
            with self.session_factory() as session:
                ids = pending_calls(session, since)
            done = sum(self._record(call_id) for call_id in ids)
            recorded += done
            if len(ids) < BATCH or not done:  # a batch that failed whole waits for the next tick
                break
        self.recorded += recorded
        return recorded

    def _record(self, call_id: int) -> int:
        try:
            with session_scope(self.session_factory) as session:
                begin_write(session)  # SQLite: the write lock before the first read
                call = session.get(Call, call_id)
                before = session.scalar(select(Enquiry.id).where(Enquiry.call_id == call_id))
                if call is None or before is not None:
                    return 0
                record_enquiry(session, call.site_id, call.lead_channel, at=call.started_at, call=call,
                               region=self.region)
            return 1
        except IntegrityError:  # recorded by someone else meanwhile: the unique index kept it one
            return 0
        except Exception:
            self.errors += 1
            log.exception("leads from calls: call %s not recorded", call_id)
            return 0
