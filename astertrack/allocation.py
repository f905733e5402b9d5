"""Dynamic number insertion: give each live visitor session its own pool number.

Why it is built this way:

* **Atomic.**  A pool number shown to two live visitors makes every call on it ambiguous.
  On PostgreSQL the free number is chosen with ``SELECT ... FOR UPDATE OF tracking_numbers
  SKIP LOCKED`` so concurrent requests take different numbers without waiting on each other;
  on SQLite the whole request runs under ``BEGIN IMMEDIATE`` (``begin_write``).  The partial
  unique index ``uq_number_assignments_live_number`` is the last line of defence: the insert
  is ``ON CONFLICT DO NOTHING`` and a lost race simply picks again (no aborted transaction).
* **Least recently released.**  A number that was just released may still be on a
  visitor's screen or in their call log; we hand out the number idle the longest.
* **Sliding hold with a hard cap.**  Each heartbeat moves ``expires_at`` to ``now + hold`` but
  never past ``hard_expires_at`` (assigned + cap), so a tab left open all day does not
  keep a number forever.  Page unload only shortens the hold to a short grace, because the
  next page of the same visit usually arrives within a second and must keep the number.
* **Exhaustion is measured.**  With no free number the visitor sees the source's fallback
  (or the site default) and an ``OverflowEvent`` is stored with the visit, once per session.
  The optional ``reuse_oldest`` policy takes the number of the session idle the longest and
  flags the new assignment ``reused`` so the call is attributed with lower confidence.
* **Bots never take a pool number**, and with lazy allocation nobody does until they
  interact with the page (scroll, click, key, touch) or a phone element becomes visible.

Every function takes ``now`` so tests drive time; all writes happen in the caller's
transaction and the caller commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from astertrack.bots import is_bot
from astertrack.db import begin_write
from astertrack.models import NumberAssignment, OverflowEvent, TrackingNumber, VisitorSession, new_uid
from astertrack.sources import Route, SiteRouting, SourceRule, extract_keyword, route_visit

log = logging.getLogger(__name__)

_tn = TrackingNumber.__table__
_na = NumberAssignment.__table__
_vs = VisitorSession.__table__
_oe = OverflowEvent.__table__

# Visit fields the snippet may send, each capped to its column size.
VISIT_FIELDS: dict[str, int] = {
    name: _vs.c[name].type.length
    for name in ("visitor_id", "ga_client_id", "ym_client_id", "utm_source", "utm_medium", "utm_campaign",
                 "utm_content", "utm_term", "gclid", "yclid", "fbclid", "referrer", "landing_page",
                 "current_page", "user_agent", "ip", "keyword")
}
_MAX_PICK_ATTEMPTS = 8


@dataclass(frozen=True)
class Offer:
    """What the visitor should see."""

    session_id: str  # VisitorSession.public_id
    number: str | None  # E.164; None when the site has no number for this visit at all
    kind: str  # pool|reused|fallback|static|default|bot|lazy
    expires_at: dt.datetime | None  # hold expiry of a pool number
    source: SourceRule | None
    live: bool = True

    @property
    def is_pool_number(self) -> bool:
        return self.kind in ("pool", "reused")


# ---------------------------------------------------------------- input hygiene


def clean_text(value: Any, limit: int) -> str | None:
    """A storable string or None: no NULs (PostgreSQL rejects them), no lone surrogates,
    at most ``limit`` characters.  Non-string JSON values (objects, lists, booleans) are dropped."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "")
    value = value.encode("utf-8", "replace").decode("utf-8")
    value = value.strip()[:limit]
    return value or None


def ga_client_id(raw: str | None) -> str | None:
    """``GA1.1.1234567890.1699999999`` (the ``_ga`` cookie) -> ``1234567890.1699999999``."""
    if not raw:
        return None
    parts = raw.split(".")
    if len(parts) >= 4 and parts[0].upper().startswith("GA"):
        return ".".join(parts[-2:])
    return raw


def clean_visit(raw: Mapping[str, Any]) -> dict[str, str | None]:
    """Take the known visit fields from untrusted input, each truncated to its column."""
    visit = {name: clean_text(raw.get(name), limit) for name, limit in VISIT_FIELDS.items()}
    visit["ga_client_id"] = ga_client_id(visit["ga_client_id"])
    if not visit["keyword"]:
        visit["keyword"] = clean_text(extract_keyword(visit["utm_term"], visit["referrer"]),
                                      VISIT_FIELDS["keyword"])
    if not visit["current_page"]:
        visit["current_page"] = visit["landing_page"]
    return visit


# ---------------------------------------------------------------- time helpers


def _new_hold(site: SiteRouting, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    hard = now + dt.timedelta(seconds=site.hold_cap_seconds)
    return min(now + dt.timedelta(seconds=site.hold_seconds), hard), hard


def _extended(site: SiteRouting, now: dt.datetime, hard: dt.datetime) -> dt.datetime:
    return min(now + dt.timedelta(seconds=site.hold_seconds), hard)


def _write_lock(db: Session) -> None:
    """BEGIN IMMEDIATE on SQLite when this call opens the transaction.  A caller that already
    began one (several calls in one unit of work) keeps it."""
    if not db.in_transaction():
        begin_write(db)


def _is_pg(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


# ---------------------------------------------------------------- prepared statements
#
# The tracker runs these on every page view: built once per dialect (building a select is
# a large share of the per-request CPU) and executed on the session's Connection.

_LOOKUP_COLUMNS = (
    _vs.c.id, _vs.c.public_id, _vs.c.is_bot, _vs.c.interacted, _vs.c.last_seen,
    *(_vs.c[name] for name in VISIT_FIELDS if name != "ip"),
    _na.c.id.label("a_id"), _na.c.hard_expires_at.label("a_hard"), _na.c.expires_at.label("a_expires"),
    _na.c.reused.label("a_reused"), _tn.c.number.label("a_number"),
)
# The session with its live hold, if any (at most one: we only allocate when none is live).
_LOOKUP_FROM = _vs.outerjoin(
    _na, and_(_na.c.session_id == _vs.c.id, _na.c.released_at.is_(None), _na.c.expires_at > bindparam("now"))
).outerjoin(_tn, _tn.c.id == _na.c.number_id)


class _Statements:
    def __init__(self, dialect: str):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        pg = dialect == "postgresql"
        self.by_sid = (select(*_LOOKUP_COLUMNS).select_from(_LOOKUP_FROM)
                       .where(_vs.c.public_id == bindparam("sid"), _vs.c.site_id == bindparam("site")))
        self.by_visitor = (select(*_LOOKUP_COLUMNS).select_from(_LOOKUP_FROM)
                           .where(_vs.c.site_id == bindparam("site"), _vs.c.visitor_id == bindparam("visitor"))
                           .order_by(_vs.c.id.desc()).limit(1))
        idle_since = func.coalesce(_na.c.expires_at, _tn.c.last_released_at)
        pick = (
            select(_tn.c.id, _tn.c.number, _na.c.id.label("stale_id"), _na.c.expires_at.label("stale_expires_at"))
            .select_from(_tn.outerjoin(_na, and_(_na.c.number_id == _tn.c.id, _na.c.released_at.is_(None))))
            .where(_tn.c.pool_id == bindparam("pool"), _tn.c.enabled.is_(True),
                   or_(_na.c.id.is_(None), _na.c.expires_at <= bindparam("now")))
            .order_by(idle_since.asc().nulls_first(), _tn.c.id)
            .limit(1)
        )
        # SKIP LOCKED: concurrent requests take different numbers without queueing; SQLite
        # has no row locks (and needs none: BEGIN IMMEDIATE serialises the writers).
        self.pick = pick.with_for_update(skip_locked=True, of=_tn) if pg else pick
        oldest = (
            select(_na.c.id, _na.c.number_id, _tn.c.number)
            .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
            .where(_tn.c.pool_id == bindparam("pool"), _tn.c.enabled.is_(True), _na.c.released_at.is_(None))
            .order_by(_na.c.last_heartbeat_at, _na.c.id)
            .limit(1)
        )
        self.oldest = oldest.with_for_update(skip_locked=True, of=_tn) if pg else oldest
        self.insert_assignment = (
            insert(_na)
            .on_conflict_do_nothing(index_elements=[_na.c.number_id], index_where=_na.c.released_at.is_(None))
            .returning(_na.c.id)
        )
        self.insert_session = _vs.insert().returning(_vs.c.id)
        self.insert_overflow = _oe.insert()
        self.extend = (update(_na).where(_na.c.id == bindparam("a_id"))
                       .values(expires_at=bindparam("p_expires"), last_heartbeat_at=bindparam("p_now")))
        self.shorten = update(_na).where(_na.c.id == bindparam("a_id")).values(expires_at=bindparam("p_expires"))
        self.release = (update(_na).where(_na.c.id == bindparam("a_id"), _na.c.released_at.is_(None))
                        .values(released_at=bindparam("p_at"), release_reason=bindparam("p_reason")))
        self.stamp_number = (update(_tn).where(_tn.c.id == bindparam("n_id"),
                                               or_(_tn.c.last_released_at.is_(None),
                                                   _tn.c.last_released_at < bindparam("p_at")))
                             .values(last_released_at=bindparam("p_at")))
        self.has_overflow = select(_oe.c.id).where(_oe.c.session_id == bindparam("s_id")).limit(1)
        self.seen = update(_vs).where(_vs.c.id == bindparam("s_id")).values(last_seen=bindparam("p_now"))


_STATEMENTS: dict[str, _Statements] = {}


def _prepared(db: Session) -> tuple[Connection, _Statements]:
    conn = db.connection()
    dialect = conn.dialect.name
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        statements = _STATEMENTS[dialect] = _Statements(dialect)
    return conn, statements


# ---------------------------------------------------------------- pool primitives


def _release_number(conn: Connection, q: _Statements, assignment_id: int, number_id: int, at: dt.datetime,
                    reason: str) -> None:
    conn.execute(q.release, {"a_id": assignment_id, "p_at": at, "p_reason": reason})
    conn.execute(q.stamp_number, {"n_id": number_id, "p_at": at})


def _insert_assignment(conn: Connection, q: _Statements, site: SiteRouting, number_id: int, session_row_id: int,
                       now: dt.datetime, reused: bool = False) -> dt.datetime | None:
    expires, hard = _new_hold(site, now)
    row = conn.execute(q.insert_assignment, {
        "number_id": number_id, "session_id": session_row_id, "assigned_at": now, "last_heartbeat_at": now,
        "expires_at": expires, "hard_expires_at": hard, "reused": reused}).first()
    return expires if row else None


def _take_free(conn: Connection, q: _Statements, site: SiteRouting, pool_id: int, session_row_id: int,
               now: dt.datetime) -> tuple[str, dt.datetime] | None:
    for _ in range(_MAX_PICK_ATTEMPTS):
        picked = conn.execute(q.pick, {"pool": pool_id, "now": now}).first()
        if picked is None:
            return None
        if picked.stale_id is not None:
            # Expired but not yet swept: release it at the moment its hold really ended.
            _release_number(conn, q, picked.stale_id, picked.id, picked.stale_expires_at, "expired")
        expires = _insert_assignment(conn, q, site, picked.id, session_row_id, now)
        if expires is not None:
            return picked.number, expires
        # Another transaction committed a hold on this number between our snapshot and our
        # lock (the unique index said so): pick again with a fresh snapshot.
        log.debug("lost the race for number %s; picking again", picked.number)
    log.warning("pool %s: gave up after %d contended picks", pool_id, _MAX_PICK_ATTEMPTS)
    return None


def _take_oldest(conn: Connection, q: _Statements, site: SiteRouting, pool_id: int, session_row_id: int,
                 now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """reuse_oldest policy: take the number from the live session that was idle the longest."""
    victim = conn.execute(q.oldest, {"pool": pool_id}).first()
    if victim is None:
        return None
    _release_number(conn, q, victim.id, victim.number_id, now, "reused")
    expires = _insert_assignment(conn, q, site, victim.number_id, session_row_id, now, reused=True)
    return (victim.number, expires) if expires else None


def _allocate(conn: Connection, q: _Statements, site: SiteRouting, route: Route, session_row_id: int,
              public_id: str, now: dt.datetime, visit: Mapping[str, Any], record_overflow: bool,
              allow_reuse: bool = True) -> Offer:
    assert route.pool_id is not None
    taken = _take_free(conn, q, site, route.pool_id, session_row_id, now)
    if taken is not None:
        return Offer(public_id, taken[0], "pool", taken[1], route.source)
    policy = "reuse_oldest" if allow_reuse and site.overflow_policy == "reuse_oldest" else "fallback"
    reused = _take_oldest(conn, q, site, route.pool_id, session_row_id, now) if policy == "reuse_oldest" else None
    if record_overflow:
        snapshot = {k: v for k, v in visit.items() if v is not None and k != "ip"}
        conn.execute(q.insert_overflow, {"site_id": site.id, "pool_id": route.pool_id, "session_id": session_row_id,
                                         "occurred_at": now, "policy": policy, "visitor": snapshot})
    if reused is not None:
        return Offer(public_id, reused[0], "reused", reused[1], route.source)
    return Offer(public_id, route.number, "fallback", None, route.source)


# ---------------------------------------------------------------- sessions


def _find_session(conn: Connection, q: _Statements, site: SiteRouting, public_id: str | None,
                  visitor_id: str | None, now: dt.datetime):
    """The session row (by id, else the visitor's latest) joined with its live hold."""
    if public_id:
        row = conn.execute(q.by_sid, {"sid": public_id[:32], "site": site.id, "now": now}).first()
        if row is not None:
            return row
    if visitor_id:
        return conn.execute(q.by_visitor, {"site": site.id, "visitor": visitor_id, "now": now}).first()
    return None


def _extend(conn: Connection, q: _Statements, site: SiteRouting, row, now: dt.datetime) -> dt.datetime:
    expires = _extended(site, now, row.a_hard)
    conn.execute(q.extend, {"a_id": row.a_id, "p_expires": expires, "p_now": now})
    return expires


def _session_alive(site: SiteRouting, row, now: dt.datetime) -> bool:
    return row.last_seen > now - dt.timedelta(seconds=site.hold_seconds)


def _fixed_offer(public_id: str, route: Route, kind: str) -> Offer:
    return Offer(public_id, route.number, kind, None, route.source)


def _has_overflow(conn: Connection, q: _Statements, session_row_id: int) -> bool:
    return conn.execute(q.has_overflow, {"s_id": session_row_id}).first() is not None


def start(db: Session, site: SiteRouting, visit: Mapping[str, Any], now: dt.datetime,
          session_public_id: str | None = None, webdriver: bool = False, interacted: bool = False,
          new_visitor: bool = False) -> Offer:
    """A page load: continue the visitor's live session (same number) or start a new one.

    ``visit`` must come from ``clean_visit``.  ``new_visitor`` (the snippet just created the
    visitor id) skips looking for that visitor's earlier session.
    """
    _write_lock(db)
    conn, q = _prepared(db)
    existing = _find_session(conn, q, site, session_public_id, None if new_visitor else visit.get("visitor_id"), now)
    if existing is not None and (existing.a_id is not None or _session_alive(site, existing, now)):
        return _continue(conn, q, site, existing, visit, now, interacted)

    bot = is_bot(visit.get("user_agent"), webdriver)
    route = route_visit(site, visit)
    public_id = new_uid()
    values = {name: visit.get(name) for name in VISIT_FIELDS}
    session_row_id = conn.execute(q.insert_session, {
        "public_id": public_id, "site_id": site.id, "source_id": route.source.id if route.source else None,
        "is_bot": bot, "interacted": interacted, "page_views": 1, "first_seen": now, "last_seen": now, **values,
    }).scalar_one()
    if route.pool_id is None:
        return _fixed_offer(public_id, route, route.kind)
    if bot:
        return _fixed_offer(public_id, route, "bot")
    if site.lazy_allocation and not interacted:
        return _fixed_offer(public_id, route, "lazy")
    return _allocate(conn, q, site, route, session_row_id, public_id, now, visit, record_overflow=True)


def _touch(conn: Connection, q: _Statements, row, now: dt.datetime, page: str | None, count_view: bool,
           interacted: bool) -> None:
    if not count_view and (not page or page == row.current_page) and (row.interacted or not interacted):
        conn.execute(q.seen, {"s_id": row.id, "p_now": now})  # the common heartbeat
        return
    changes: dict[str, Any] = {"last_seen": now}
    if count_view:
        changes["page_views"] = _vs.c.page_views + 1
    if page and page != row.current_page:
        changes["current_page"] = page
    if interacted and not row.interacted:
        changes["interacted"] = True
    conn.execute(update(_vs).where(_vs.c.id == row.id).values(**changes))


def _keep_or_allocate(conn: Connection, q: _Statements, site: SiteRouting, row, now: dt.datetime,
                      interacted: bool, allow_reuse: bool) -> Offer:
    stored = {name: getattr(row, name) for name in VISIT_FIELDS if name != "ip"}
    route = route_visit(site, stored)
    if row.a_id is not None:
        expires = _extend(conn, q, site, row, now)
        return Offer(row.public_id, row.a_number, "reused" if row.a_reused else "pool", expires, route.source)
    if route.pool_id is None:
        return _fixed_offer(row.public_id, route, route.kind)
    if row.is_bot:
        return _fixed_offer(row.public_id, route, "bot")
    if site.lazy_allocation and not (interacted or row.interacted):
        return _fixed_offer(row.public_id, route, "lazy")
    # A lazy session's first interaction, or a number lost to the hard cap or the unload
    # grace, is a real attempt and may overflow; a session already counted is not counted twice.
    return _allocate(conn, q, site, route, row.id, row.public_id, now, stored,
                     record_overflow=not _has_overflow(conn, q, row.id), allow_reuse=allow_reuse)


def _continue(conn: Connection, q: _Statements, site: SiteRouting, row, visit: Mapping[str, Any],
              now: dt.datetime, interacted: bool) -> Offer:
    _touch(conn, q, row, now, visit.get("current_page"), True, interacted)
    return _keep_or_allocate(conn, q, site, row, now, interacted, allow_reuse=True)


def heartbeat(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime,
              current_page: str | None = None, interacted: bool = False) -> Offer | None:
    """The visitor is still on the page: slide the hold.  None when the session is unknown;
    ``live=False`` when it idled past its hold: the snippet then starts a new one.

    A session that got the fallback number because the pool was full takes a pool number
    here as soon as one is free.  It never takes one over (``reuse_oldest``): two displaced
    sessions would otherwise take each other's number back on every heartbeat.
    """
    _write_lock(db)
    conn, q = _prepared(db)
    row = _find_session(conn, q, site, session_public_id, None, now)
    if row is None:
        return None
    if row.a_id is None and not _session_alive(site, row, now):
        return Offer(row.public_id, None, "expired", None, None, live=False)
    # An SPA navigation arrives as a heartbeat with a new page: count it as a page view.
    _touch(conn, q, row, now, current_page, bool(current_page and current_page != row.current_page), interacted)
    return _keep_or_allocate(conn, q, site, row, now, interacted, allow_reuse=False)


def unload(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime) -> bool:
    """The page is going away: keep the number only for the short unload grace, so the next
    page of the visit keeps it and an abandoned visit frees it soon.  True if a hold changed."""
    _write_lock(db)
    conn, q = _prepared(db)
    row = _find_session(conn, q, site, session_public_id, None, now)
    if row is None:
        return False
    conn.execute(q.seen, {"s_id": row.id, "p_now": now})
    if row.a_id is None:
        return False
    grace = now + dt.timedelta(seconds=site.unload_grace_seconds)
    if grace < row.a_expires:
        conn.execute(q.shorten, {"a_id": row.a_id, "p_expires": grace})
        return True
    return False


def release_expired(db: Session, now: dt.datetime, limit: int = 1000) -> int:
    """Sweep holds that ran out: mark them released at the moment they expired and stamp
    the number's ``last_released_at``.  Allocation treats expired holds as free anyway; the
    sweep keeps ``released_at`` truthful for reports and the least-recently-released order."""
    _write_lock(db)
    stmt = (select(_na.c.id, _na.c.number_id, _na.c.expires_at)
            .where(_na.c.released_at.is_(None), _na.c.expires_at <= now)
            .order_by(_na.c.expires_at).limit(limit))
    if _is_pg(db):
        stmt = stmt.with_for_update(skip_locked=True)
    conn, q = _prepared(db)
    rows = conn.execute(stmt).all()
    for row in rows:
        _release_number(conn, q, row.id, row.number_id, row.expires_at, "expired")
    return len(rows)


def release_for_call(db: Session, number_id: int, now: dt.datetime) -> bool:
    """Free a pool number after the call it was shown for (the caller binding stays on the
    Call row, so repeat calls are still attributed).  For the AGI/AMI side to use."""
    row = db.execute(select(_na.c.id).where(_na.c.number_id == number_id, _na.c.released_at.is_(None))).first()
    if row is None:
        return False
    conn, q = _prepared(db)
    _release_number(conn, q, row.id, number_id, now, "call")
    return True


def live_count(db: Session, pool_id: int, now: dt.datetime) -> int:
    """Numbers of the pool held by a live session right now."""
    return db.execute(
        select(func.count()).select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
        .where(_tn.c.pool_id == pool_id, _na.c.released_at.is_(None), _na.c.expires_at > now)
    ).scalar_one()
