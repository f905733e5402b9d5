"""Background housekeeping inside each tracker worker: sweep expired holds (so
``released_at`` and ``last_released_at`` tell the truth) and sample pool usage; and, every
``CHAT_SWEEP_SECONDS``, the website chats' sweep (``chat.conversations.sweep``: a chat nobody
answered within its site's wait asks the visitor for a phone, an idle one closes), so the visitor
sees the question within seconds of the wait, whichever worker holds their stream.

Allocation never depends on it (expired holds count as free anyway), so a stopped or slow
sweeper costs report accuracy, not correctness.  Started lazily on the first request so it
runs in each gunicorn worker after the fork, not in the master.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy.orm import Session, sessionmaker

from astertrack.chat import conversations as chats
from astertrack.db.engine import session_scope
from astertrack.db.types import utcnow
from astertrack.dni import allocation, poolhealth

log = logging.getLogger(__name__)
CHAT_SWEEP_SECONDS = 5.0


class Maintenance:
    def __init__(self, session_factory: sessionmaker[Session], interval: float, sample_seconds: int):
        self.session_factory = session_factory
        self.interval = interval
        self.sample_seconds = sample_seconds
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.chat_seconds = CHAT_SWEEP_SECONDS
        self.on_chat_change = lambda: None  # the app's stream hub looks at once (tracker.chat)

    def ensure_started(self) -> None:
        if self.interval <= 0 or self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            threading.Thread(target=self._loop, name="astertrack-tracker-maintenance", daemon=True).start()
            threading.Thread(target=self._chat_loop, name="astertrack-chat-sweeper", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> tuple[int, int]:
        now = utcnow()
        with session_scope(self.session_factory) as db:
            released = allocation.release_expired(db, now)
        with session_scope(self.session_factory) as db:
            sampled = poolhealth.sample_pools(db, now, self.sample_seconds)
        return released, sampled

    def sweep_chats(self) -> int:
        """One chat sweep; the streams of this process are woken when a chat changed."""
        with session_scope(self.session_factory) as db:
            changed = chats.sweep(db, utcnow())
        if changed:
            self.on_chat_change()
        return changed

    def _chat_loop(self) -> None:
        while not self._stop.wait(self.chat_seconds):
            try:
                self.sweep_chats()
            except Exception:  # keep sweeping after a database hiccup
                log.exception("chat sweep failed; retrying in %.0f s", self.chat_seconds)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # keep sweeping after a database hiccup
                log.exception("tracker maintenance failed; retrying in %.0f s", self.interval)
