"""The routing configuration snapshot: rules, numbers, sources, sites, shared by every call.

What an admin edits changes rarely, so it is read once and then checked every
``[agi] cache_seconds``: the check compares one counter that database triggers bump on every
configuration change (``astertrack.db.config_revision``), and only a changed counter - or a
snapshot older than ``FULL_RELOAD_SECONDS`` - re-reads everything (a few ms, more with
hundreds of numbers; SIGHUP drops it).  The FastAGI daemon runs the check in a worker thread
(``AgiApp.keep_snapshot_fresh``), so no call waits for it however far apart calls come.  Live
facts - reservations, pauses, device states, the round-robin position, visitor sessions,
caller profiles - are never cached (``agi.store``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db import config_revision
from astertrack.db.models import Manager
from astertrack.routing import attribution as attr
from astertrack.routing import rules
from astertrack.routing.configuration import enabled_manager_ids, load_rules
from astertrack.routing.rules import DEFAULT_RULE_NAME, RuleView

__all__ = ["DEFAULT_RULE_NAME", "ManagerProfile", "Snapshot", "SnapshotCache", "load_rules", "load_snapshot"]


@dataclass(frozen=True)
class ManagerProfile:
    endpoint: str
    name: str
    extension: str | None
    schedule: Mapping[str, Any]


@dataclass
class Snapshot:
    """Routing configuration as of ``loaded_at``: rules, numbers, sources, sites, manager ids.

    What an admin edits, not what a call changes, so it is shared by every call for
    ``[agi] cache_seconds`` (SIGHUP drops it).  Live facts (reservations, pauses, device
    states, round-robin position, visitor sessions, caller profiles) are always read fresh.
    """

    directory: attr.Directory
    rules: list[RuleView]
    enabled_manager_ids: tuple[int, ...]
    loaded_at: float
    # what an admin sets per manager (endpoint, name, extension, working hours), by id; the live
    # columns (pause, reservation, device state) are read per call by agi.store.load_managers
    managers: dict[int, ManagerProfile] = field(default_factory=dict)
    # the configuration counter read before loading (None: the database has none)
    revision: int | None = None
    # last time the counter said this snapshot is still current (monotonic seconds)
    checked_at: float = 0.0

    def __post_init__(self) -> None:
        self.checked_at = self.checked_at or self.loaded_at

    def rule(self, rule_id: int | None) -> RuleView | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    def implicit_rule(self) -> RuleView | None:
        return rules.implicit_rule(self.enabled_manager_ids)


# With a refresher the snapshot may go unchecked this many TTLs before a call checks it itself
# (the refresher is late: a slow database, a stalled thread).
STALE_TTLS = 3
# Re-read in full at least this often, whatever the counter says: a database restored from a
# backup can come back with the very counter value the snapshot was read at.
FULL_RELOAD_SECONDS = 300.0


class SnapshotCache:
    """One Snapshot per process, checked when ``ttl`` seconds have passed since the last check
    (0 = re-read on every call).

    ``refreshed``: something calls ``refresh`` every ``ttl`` seconds, so ``get`` hands out the
    current snapshot until it went ``STALE_TTLS`` times too long unchecked instead of checking
    inline.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self.refreshed = False
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def clear(self) -> None:
        self._snapshot = None

    def _usable(self, snapshot: Snapshot | None) -> bool:
        if snapshot is None:
            return False
        limit = self.ttl * STALE_TTLS if self.refreshed else self.ttl
        return time.monotonic() - snapshot.checked_at < limit

    def get(self, factory: sessionmaker[Session]) -> Snapshot:
        snapshot = self._snapshot
        if self._usable(snapshot):
            return snapshot
        with self._lock:
            if not self._usable(self._snapshot):
                self.refresh(factory)
            return self._snapshot

    def refresh(self, factory: sessionmaker[Session]) -> bool:
        """Re-read the snapshot if the configuration changed since it was read (or it is
        ``FULL_RELOAD_SECONDS`` old, or there is no counter); otherwise only note that it is
        still current.  True when it was re-read."""
        current = self._snapshot
        with factory() as session:
            # the counter first: an edit committed between the two reads makes the next check
            # see a newer counter and read again, never keeps a stale snapshot
            revision = config_revision.read(session)
            now = time.monotonic()
            if (current is not None and revision is not None and revision == current.revision
                    and now - current.loaded_at < FULL_RELOAD_SECONDS and self.ttl > 0):
                current.checked_at = now
                return False
            snapshot = load_snapshot(session)
        snapshot.revision = revision
        self._snapshot = snapshot  # one reference swap: calls see the old or the new, whole
        return True


def load_snapshot(session: Session) -> Snapshot:
    enabled = enabled_manager_ids(session)
    # an archived manager has no profile: agi.store leaves a manager without one out of every call
    profiles = {
        row.id: ManagerProfile(endpoint=row.endpoint, name=row.name, extension=row.extension,
                               schedule=row.schedule or {})
        for row in session.execute(select(Manager.id, Manager.endpoint, Manager.name, Manager.extension,
                                          Manager.schedule).where(Manager.archived_at.is_(None)))
    }
    return Snapshot(directory=attr.load_directory(session), rules=load_rules(session),
                    enabled_manager_ids=enabled, loaded_at=time.monotonic(), managers=profiles)
