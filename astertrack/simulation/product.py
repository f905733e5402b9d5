"""What the simulator drives: the product as a visitor's browser and Asterisk see it.

``Product`` is the small interface ``run`` talks to (start a visit, heartbeat, leave, call).
``CoreProduct`` answers it with exactly the core functions the apps' handlers call: the
tracker's ``/v/start``, ``/v/ping`` and ``/v/leave`` (``allocation.start_with``,
``heartbeat_with``, ``unload_with`` on one connection, committed per request) and the AGI's
inbound route (``attribution.attribute_call``, then ``record_caller`` as its commit does), and
the tracker's maintenance sweep (``allocation.release_expired``).  The same code path minus HTTP
and AGI parsing; tests/simulation checks it against the real apps call for call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from astertrack.db.models import Site, Source, VisitorSession
from astertrack.dni import allocation
from astertrack.dni.sources import build_site_routing
from astertrack.routing import attribution as attr


@dataclass(frozen=True)
class Shown:
    """What the visitor's page shows after a tracker answer."""

    sid: str | None
    number: str | None
    live: bool = True


@dataclass(frozen=True)
class Attributed:
    """What the product decided about a call."""

    session: str | None  # VisitorSession.public_id of the winning visit
    source: str | None  # the source's name
    confidence: float
    reason: str
    kind: str


class Product(Protocol):
    def start(self, now: dt.datetime, visit: Mapping[str, Any], sid: str | None, new_visitor: bool) -> Shown: ...

    def ping(self, now: dt.datetime, sid: str) -> Shown: ...

    def leave(self, now: dt.datetime, sid: str) -> None: ...

    def call(self, now: dt.datetime, did: str | None, caller: str) -> Attributed: ...

    def sweep(self, now: dt.datetime) -> None: ...


def describe(session: Session | Any, found: attr.Attribution) -> Attributed:
    """The call's outcome with the visit's public id and the source's name (one read each)."""
    public_id = None
    if found.session_id is not None:
        public_id = session.execute(select(VisitorSession.public_id)
                                    .where(VisitorSession.id == found.session_id)).scalar_one_or_none()
    source = found.source_name
    if source is None and found.source_id is not None:
        source = session.execute(select(Source.name).where(Source.id == found.source_id)).scalar_one_or_none()
    return Attributed(public_id, source, float(found.confidence or 0.0), found.reason, found.kind)


class CoreProduct:
    """The product on one database connection, with the calls the tracker and the AGI make."""

    def __init__(self, engine: Engine, site_id: int, release_grace_seconds: int = 900):
        self.engine = engine
        self.conn = engine.connect()
        with Session(bind=self.conn) as session:
            self.site = build_site_routing(session, session.get(Site, site_id))
            self.directory = attr.load_directory(session)
        self.conn.commit()
        self.grace = release_grace_seconds

    def close(self) -> None:
        self.conn.close()

    def start(self, now: dt.datetime, visit: Mapping[str, Any], sid: str | None, new_visitor: bool) -> Shown:
        offer = allocation.start_with(self.conn, self.site, allocation.clean_visit(visit), now, session_public_id=sid,
                                      interacted=True, new_visitor=new_visitor, browser=True)
        self.conn.commit()
        return Shown(offer.session_id, offer.number)

    def ping(self, now: dt.datetime, sid: str) -> Shown:
        offer = allocation.heartbeat_with(self.conn, self.site, sid, now, interacted=True)
        self.conn.commit()
        if offer is None or not offer.live:
            return Shown(sid, None, live=False)
        return Shown(offer.session_id, offer.number)

    def leave(self, now: dt.datetime, sid: str) -> None:
        allocation.unload_with(self.conn, self.site, sid, now)
        self.conn.commit()

    def call(self, now: dt.datetime, did: str | None, caller: str) -> Attributed:
        found = attr.attribute_call(self.conn, self.directory, did, caller, now, self.grace)
        attr.record_caller(self.conn, caller, None, found, now)
        self.conn.commit()
        return describe(self.conn, found.attribution)

    def sweep(self, now: dt.datetime) -> None:
        with Session(bind=self.conn) as session:
            allocation.release_expired(session, now)
            session.commit()
        self.conn.commit()
