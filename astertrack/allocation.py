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

from sqlalchemy import and_, func, or_, select, update
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


def _insert(db: Session, table):
    return postgresql.insert(table) if _is_pg(db) else sqlite.insert(table)


# ---------------------------------------------------------------- pool primitives


def _release_number(db: Session, assignment_id: int, number_id: int, at: dt.datetime, reason: str) -> None:
    db.execute(update(_na).where(_na.c.id == assignment_id, _na.c.released_at.is_(None))
               .values(released_at=at, release_reason=reason))
    db.execute(update(_tn).where(_tn.c.id == number_id,
                                 or_(_tn.c.last_released_at.is_(None), _tn.c.last_released_at < at))
               .values(last_released_at=at))


def _pick_free_number(db: Session, pool_id: int, now: dt.datetime):
    """The free number idle the longest, locked for this transaction (PostgreSQL)."""
    idle_since = func.coalesce(_na.c.expires_at, _tn.c.last_released_at)
    stmt = (
        select(_tn.c.id, _tn.c.number, _na.c.id.label("stale_id"), _na.c.expires_at.label("stale_expires_at"))
        .select_from(_tn.outerjoin(_na, and_(_na.c.number_id == _tn.c.id, _na.c.released_at.is_(None))))
        .where(_tn.c.pool_id == pool_id, _tn.c.enabled.is_(True), or_(_na.c.id.is_(None), _na.c.expires_at <= now))
        .order_by(idle_since.asc().nulls_first(), _tn.c.id)
        .limit(1)
    )
    if _is_pg(db):
        stmt = stmt.with_for_update(skip_locked=True, of=_tn)
    return db.execute(stmt).first()


def _insert_assignment(db: Session, site: SiteRouting, number_id: int, session_row_id: int, now: dt.datetime,
                       reused: bool = False) -> tuple[int, dt.datetime] | None:
    expires, hard = _new_hold(site, now)
    stmt = (
        _insert(db, _na)
        .values(number_id=number_id, session_id=session_row_id, assigned_at=now, last_heartbeat_at=now,
                expires_at=expires, hard_expires_at=hard, reused=reused)
        .on_conflict_do_nothing(index_elements=[_na.c.number_id], index_where=_na.c.released_at.is_(None))
        .returning(_na.c.id)
    )
    row = db.execute(stmt).first()
    return (row[0], expires) if row else None


def _take_free(db: Session, site: SiteRouting, pool_id: int, session_row_id: int, now: dt.datetime):
    for _ in range(_MAX_PICK_ATTEMPTS):
        picked = _pick_free_number(db, pool_id, now)
        if picked is None:
            return None
        if picked.stale_id is not None:
            # Expired but not yet swept: release it at the moment its hold really ended.
            _release_number(db, picked.stale_id, picked.id, picked.stale_expires_at, "expired")
        inserted = _insert_assignment(db, site, picked.id, session_row_id, now)
        if inserted is not None:
            return picked.number, inserted[1]
        log.debug("lost the race for number %s; picking again", picked.number)
    log.warning("pool %s: gave up after %d contended picks", pool_id, _MAX_PICK_ATTEMPTS)
    return None


def _take_oldest(db: Session, site: SiteRouting, pool_id: int, session_row_id: int, now: dt.datetime):
    """reuse_oldest policy: take the number from the live session that was idle the longest."""
    stmt = (
        select(_na.c.id, _na.c.number_id, _tn.c.number)
        .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
        .where(_tn.c.pool_id == pool_id, _tn.c.enabled.is_(True), _na.c.released_at.is_(None))
        .order_by(_na.c.last_heartbeat_at, _na.c.id)
        .limit(1)
    )
    if _is_pg(db):
        stmt = stmt.with_for_update(skip_locked=True, of=_tn)
    victim = db.execute(stmt).first()
    if victim is None:
        return None
    _release_number(db, victim.id, victim.number_id, now, "reused")
    inserted = _insert_assignment(db, site, victim.number_id, session_row_id, now, reused=True)
    return (victim.number, inserted[1]) if inserted else None


def _record_overflow(db: Session, site: SiteRouting, pool_id: int, session_row_id: int, now: dt.datetime,
                     policy: str, visit: Mapping[str, Any]) -> None:
    snapshot = {k: v for k, v in visit.items() if v is not None and k != "ip"}
    db.execute(_oe.insert().values(site_id=site.id, pool_id=pool_id, session_id=session_row_id, occurred_at=now,
                                   policy=policy, visitor=snapshot))


def _allocate(db: Session, site: SiteRouting, route: Route, session_row_id: int, public_id: str,
              now: dt.datetime, visit: Mapping[str, Any], record_overflow: bool, allow_reuse: bool = True) -> Offer:
    assert route.pool_id is not None
    taken = _take_free(db, site, route.pool_id, session_row_id, now)
    if taken is not None:
        return Offer(public_id, taken[0], "pool", taken[1], route.source)
    policy = "reuse_oldest" if allow_reuse and site.overflow_policy == "reuse_oldest" else "fallback"
    reused = _take_oldest(db, site, route.pool_id, session_row_id, now) if policy == "reuse_oldest" else None
    if record_overflow:
        _record_overflow(db, site, route.pool_id, session_row_id, now, policy, visit)
    if reused is not None:
        return Offer(public_id, reused[0], "reused", reused[1], route.source)
    return Offer(public_id, route.number, "fallback", None, route.source)


# ---------------------------------------------------------------- sessions


_SESSION_COLUMNS = (_vs.c.id, _vs.c.public_id, _vs.c.is_bot, _vs.c.interacted, _vs.c.last_seen,
                    *(_vs.c[name] for name in VISIT_FIELDS if name not in ("ip",)))


def _find_session(db: Session, site: SiteRouting, public_id: str | None, visitor_id: str | None):
    if public_id:
        row = db.execute(select(*_SESSION_COLUMNS).where(_vs.c.public_id == public_id[:32],
                                                         _vs.c.site_id == site.id)).first()
        if row is not None:
            return row
    if visitor_id:
        return db.execute(select(*_SESSION_COLUMNS)
                          .where(_vs.c.site_id == site.id, _vs.c.visitor_id == visitor_id)
                          .order_by(_vs.c.id.desc()).limit(1)).first()
    return None


def _live_assignment(db: Session, session_row_id: int, now: dt.datetime):
    return db.execute(
        select(_na.c.id, _na.c.hard_expires_at, _na.c.expires_at, _na.c.reused, _tn.c.number)
        .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
        .where(_na.c.session_id == session_row_id, _na.c.released_at.is_(None), _na.c.expires_at > now)
        .order_by(_na.c.id.desc()).limit(1)
    ).first()


def _extend(db: Session, site: SiteRouting, assignment, now: dt.datetime) -> dt.datetime:
    expires = _extended(site, now, assignment.hard_expires_at)
    db.execute(update(_na).where(_na.c.id == assignment.id).values(expires_at=expires, last_heartbeat_at=now))
    return expires


def _session_alive(site: SiteRouting, row, now: dt.datetime) -> bool:
    return row.last_seen > now - dt.timedelta(seconds=site.hold_seconds)


def _fixed_offer(public_id: str, route: Route, kind: str) -> Offer:
    return Offer(public_id, route.number, kind, None, route.source)


def _has_overflow(db: Session, session_row_id: int) -> bool:
    return db.execute(select(_oe.c.id).where(_oe.c.session_id == session_row_id).limit(1)).first() is not None


def start(db: Session, site: SiteRouting, visit: Mapping[str, Any], now: dt.datetime,
          session_public_id: str | None = None, webdriver: bool = False, interacted: bool = False) -> Offer:
    """A page load: continue the visitor's live session (same number) or start a new one.

    ``visit`` must come from ``clean_visit``.
    """
    _write_lock(db)
    existing = _find_session(db, site, session_public_id, visit.get("visitor_id"))
    if existing is not None:
        live = _live_assignment(db, existing.id, now)
        if live is not None or _session_alive(site, existing, now):
            return _continue(db, site, existing, live, visit, now, interacted)

    bot = is_bot(visit.get("user_agent"), webdriver)
    route = route_visit(site, visit)
    public_id = new_uid()
    values = {name: visit.get(name) for name in VISIT_FIELDS}
    session_row_id = db.execute(_vs.insert().values(
        public_id=public_id, site_id=site.id, source_id=route.source.id if route.source else None,
        is_bot=bot, interacted=interacted, page_views=1, first_seen=now, last_seen=now, **values,
    ).returning(_vs.c.id)).scalar_one()
    if route.pool_id is None:
        return _fixed_offer(public_id, route, route.kind)
    if bot:
        return _fixed_offer(public_id, route, "bot")
    if site.lazy_allocation and not interacted:
        return _fixed_offer(public_id, route, "lazy")
    return _allocate(db, site, route, session_row_id, public_id, now, visit, record_overflow=True)


def _continue(db: Session, site: SiteRouting, row, live, visit: Mapping[str, Any], now: dt.datetime,
              interacted: bool) -> Offer:
    changes: dict[str, Any] = {"last_seen": now, "page_views": _vs.c.page_views + 1}
    if visit.get("current_page"):
        changes["current_page"] = visit["current_page"]
    if interacted and not row.interacted:
        changes["interacted"] = True
    db.execute(update(_vs).where(_vs.c.id == row.id).values(**changes))
    stored = {name: getattr(row, name) for name in VISIT_FIELDS if name != "ip"}
    route = route_visit(site, stored)
    if live is not None:
        expires = _extend(db, site, live, now)
        return Offer(row.public_id, live.number, "reused" if live.reused else "pool", expires, route.source)
    if route.pool_id is None:
        return _fixed_offer(row.public_id, route, route.kind)
    if row.is_bot:
        return _fixed_offer(row.public_id, route, "bot")
    if site.lazy_allocation and not (interacted or row.interacted):
        return _fixed_offer(row.public_id, route, "lazy")
    return _allocate(db, site, route, row.id, row.public_id, now, stored,
                     record_overflow=not _has_overflow(db, row.id))


def heartbeat(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime,
              current_page: str | None = None, interacted: bool = False) -> Offer | None:
    """The visitor is still on the page: slide the hold.  None when the session is gone
    (unknown, or idle past its hold): the snippet then starts a new one.

    A session that got the fallback number because the pool was full takes a pool number
    here as soon as one is free (no new overflow event: that visit is already counted).
    """
    _write_lock(db)
    row = _find_session(db, site, session_public_id, None)
    if row is None:
        return None
    live = _live_assignment(db, row.id, now)
    if live is None and not _session_alive(site, row, now):
        return Offer(row.public_id, None, "expired", None, None, live=False)
    changes: dict[str, Any] = {"last_seen": now}
    if current_page and current_page != row.current_page:
        changes["current_page"] = current_page
        changes["page_views"] = _vs.c.page_views + 1
    if interacted and not row.interacted:
        changes["interacted"] = True
    db.execute(update(_vs).where(_vs.c.id == row.id).values(**changes))
    stored = {name: getattr(row, name) for name in VISIT_FIELDS if name != "ip"}
    route = route_visit(site, stored)
    if live is not None:
        expires = _extend(db, site, live, now)
        return Offer(row.public_id, live.number, "reused" if live.reused else "pool", expires, route.source)
    if route.pool_id is None:
        return _fixed_offer(row.public_id, route, route.kind)
    if row.is_bot:
        return _fixed_offer(row.public_id, route, "bot")
    if site.lazy_allocation and not (interacted or row.interacted):
        return _fixed_offer(row.public_id, route, "lazy")
    # A lazy session's first interaction or a number lost to the hard cap is a real attempt
    # and may overflow; a session already counted as overflowed is not counted twice.
    # Never reuse here: that would let two displaced sessions take each other's number back
    # on every heartbeat.
    return _allocate(db, site, route, row.id, row.public_id, now, stored,
                     record_overflow=not _has_overflow(db, row.id), allow_reuse=False)


def unload(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime) -> bool:
    """The page is going away: keep the number only for the short unload grace, so the next
    page of the visit keeps it and an abandoned visit frees it soon.  True if a hold changed."""
    _write_lock(db)
    row = _find_session(db, site, session_public_id, None)
    if row is None:
        return False
    live = _live_assignment(db, row.id, now)
    db.execute(update(_vs).where(_vs.c.id == row.id).values(last_seen=now))
    if live is None:
        return False
    grace = now + dt.timedelta(seconds=site.unload_grace_seconds)
    if grace < live.expires_at:
        db.execute(update(_na).where(_na.c.id == live.id).values(expires_at=grace))
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
    rows = db.execute(stmt).all()
    for row in rows:
        _release_number(db, row.id, row.number_id, row.expires_at, "expired")
    return len(rows)


def release_for_call(db: Session, number_id: int, now: dt.datetime) -> bool:
    """Free a pool number after the call it was shown for (the caller binding stays on the
    Call row, so repeat calls are still attributed).  For the AGI/AMI side to use."""
    row = db.execute(select(_na.c.id).where(_na.c.number_id == number_id, _na.c.released_at.is_(None))).first()
    if row is None:
        return False
    _release_number(db, row.id, number_id, now, "call")
    return True


def live_count(db: Session, pool_id: int, now: dt.datetime) -> int:
    """Numbers of the pool held by a live session right now."""
    return db.execute(
        select(func.count()).select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
        .where(_tn.c.pool_id == pool_id, _na.c.released_at.is_(None), _na.c.expires_at > now)
    ).scalar_one()
