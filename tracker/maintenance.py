"""Background housekeeping inside each tracker worker: sweep expired holds (so
``released_at`` and ``last_released_at`` tell the truth) and sample pool usage.

Allocation never depends on it (expired holds count as free anyway), so a stopped or slow
sweeper costs report accuracy, not correctness.  Started lazily on the first request so it
runs in each gunicorn worker after the fork, not in the master.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import session_scope
from astertrack.db.types import utcnow
from astertrack.dni import allocation, poolhealth

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, session_factory: sessionmaker[Session], interval: float, sample_seconds: int):
        self.session_factory = session_factory
        self.interval = interval
        self.sample_seconds = sample_seconds
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        if self.interval <= 0 or self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            threading.Thread(target=self._loop, name="astertrack-tracker-maintenance", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> tuple[int, int]:
        now = utcnow()
        with session_scope(self.session_factory) as db:
            released = allocation.release_expired(db, now)
        with session_scope(self.session_factory) as db:
            sampled = poolhealth.sample_pools(db, now, self.sample_seconds)
        return released, sampled

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # keep sweeping after a database hiccup
                log.exception("tracker maintenance failed; retrying in %.0f s", self.interval)
