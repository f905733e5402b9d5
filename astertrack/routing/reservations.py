"""Atomic manager reservations: two simultaneous calls never get the same free manager.

Between the routing decision and the phone starting to ring (when its device state stops
being NOT_INUSE) there is a window in which another call could pick the same manager.  A
reservation closes it with one conditional UPDATE whose WHERE re-checks that the manager is
still free; the row count says who won.  On PostgreSQL a second concurrent UPDATE of the
same row waits for the first to commit and then re-evaluates the WHERE (READ COMMITTED), so
it matches nothing; on SQLite writers are serialised by the database lock.  Either way,
exactly one caller sees ``rowcount == 1``.  On PostgreSQL commit right after reserving, before
anything else is written, so the other calls see the hold at once and never wait on the row for
longer than one statement (SQLite's writers wait for the whole write step anyway).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, bindparam, or_, update
from sqlalchemy.orm import Session

from astertrack.db.models import Manager

_managers = Manager.__table__
# Built once: the hot path only binds values (no statement construction per call).
_RESERVE = (
    update(_managers)
    .where(
        _managers.c.id == bindparam("p_manager_id"),
        _managers.c.enabled.is_(True),
        or_(_managers.c.reserved_until.is_(None), _managers.c.reserved_until < bindparam("p_now"),
            _managers.c.reserved_call_uid == bindparam("p_call_uid")),
    )
    .values(reserved_until=bindparam("p_until"), reserved_call_uid=bindparam("p_call_uid"),
            last_routed_at=bindparam("p_now"))
)

_RELEASE_ALL = (update(_managers).where(_managers.c.reserved_call_uid == bindparam("p_call_uid"))
                .values(reserved_until=None, reserved_call_uid=None))


def reserve(session: Session, manager_id: int, call_uid: str, now: dt.datetime, seconds: int) -> bool:
    """Hold ``manager_id`` for ``call_uid`` until ``now + seconds``; False if someone else holds it.

    The same call may renew its own hold (the ``next`` route re-offers a manager).
    """
    result = session.execute(_RESERVE, {"p_manager_id": manager_id, "p_now": now, "p_call_uid": call_uid,
                                        "p_until": now + dt.timedelta(seconds=seconds)})
    return result.rowcount == 1


def release(session: Session, call_uid: str, manager_ids: list[int] | None = None) -> int:
    """Drop the holds of ``call_uid`` (all, or only on ``manager_ids``); returns how many."""
    if manager_ids is None:
        return session.execute(_RELEASE_ALL, {"p_call_uid": call_uid}).rowcount
    conditions = [Manager.reserved_call_uid == call_uid]
    if manager_ids is not None:
        if not manager_ids:
            return 0
        conditions.append(Manager.id.in_(manager_ids))
    stmt = (
        update(Manager)
        .where(and_(*conditions))
        .values(reserved_until=None, reserved_call_uid=None)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount
