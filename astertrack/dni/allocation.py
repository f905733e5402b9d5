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
* **One client cannot drain a pool** (``Limits``, the ``[tracker]`` settings).  A request that
  is not a browser's (no ``Origin``) never takes a pool number; one client address and one
  visitor id hold at most a few numbers of a site at once (counted from the live holds of the
  site's sessions, under a per-client PostgreSQL advisory lock so a burst of parallel requests
  cannot all pass the count); and once a pool is under pressure a new number is held only for
  a short first hold until the browser proves itself with a heartbeat or an interaction.  Each
  refusal is stored as an ``OverflowEvent`` whose policy names the reason (``REFUSALS``), once
  per session, so pool health can show them apart from the demand a bigger pool would meet.
* **Adaptive hold (per site, off by default).**  When a visitor needs a number and the pool's
  free share is below the site's threshold (or nothing is free), the holds of visitors who sent
  no heartbeat for ``STALE_HEARTBEATS`` intervals (a tab closed without unload, a suspended
  mobile timer) end at once with ``release_reason`` ``adaptive``, before any fallback or reuse;
  a hold with a recent heartbeat is never cut.  Off: not one statement more.  On: the pick
  also counts the pool's free numbers, and one more statement runs only when the pool is short.
  The released visitor keeps the attribution grace period like any other release.

Every function takes ``now`` so tests drive time.  ``start``/``heartbeat``/``unload`` work in
the caller's Session and transaction (the caller commits); their ``*_with`` forms take a
Connection: the tracker's own on PostgreSQL is in autocommit mode, so a single statement is
its own transaction and the writes that belong together run in one opened just for them.

One data path: every statement is SQLAlchemy Core, built once at import and cached compiled by
SQLAlchemy.  Where PostgreSQL can do more in one statement (a data-modifying ``WITH``), the
create and the common heartbeat have a PostgreSQL form; everything else is the same on both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    String,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from astertrack.db.engine import begin_write
from astertrack.db.models import NumberAssignment, OverflowEvent, TrackingNumber, VisitorSession, new_uid
from astertrack.dni.bots import is_bot
from astertrack.dni.sources import Route, SiteRouting, SourceRule, extract_keyword, route_visit

log = logging.getLogger(__name__)

# What a site does when its pool is full: show the fallback number, or take the number of the
# session idle the longest (flagged as reused, lower confidence).
OVERFLOW_POLICIES = ("fallback", "reuse_oldest")
# Why a visitor who wanted a pool number was refused one, stored as ``OverflowEvent.policy``:
# the client already holds its share (by address, by visitor id), or the request carried no
# browser's Origin.  Not demand a bigger pool would meet: pool sizing leaves them out.
REFUSALS = ("limit_ip", "limit_visitor", "no_origin")
# Adaptive hold: a hold whose last heartbeat is older than this many heartbeat intervals counts as
# abandoned, and is ended early (``release_reason`` ADAPTIVE) while the pool is short.
STALE_HEARTBEATS = 2
ADAPTIVE = "adaptive"
_END_STALE_LIMIT = 100  # at most this many holds ended by one short-pool moment

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
_STORED_VISIT = tuple(name for name in VISIT_FIELDS if name != "ip")  # what routing reads back
_MAX_PICK_ATTEMPTS = 8


@dataclass(frozen=True)
class Limits:
    """How much of a site's pools one client may take: the ``[tracker]`` settings of the same
    names, each 0 for off (the default here, for callers that are not the public tracker)."""

    max_holds_per_ip: int = 0  # live holds of one site per client address
    max_holds_per_visitor: int = 0  # ... per visitor id
    pool_pressure: float = 0.0  # share of a pool in use from which new holds are short until confirmed
    first_hold_seconds: int = 0  # that short hold (at least the site's heartbeat + 30 s)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Limits:
        return cls(**{f.name: settings[f.name] for f in fields(cls)})

    @property
    def counted(self) -> bool:
        """Whether taking a number needs the client's live holds counted first."""
        return bool(self.max_holds_per_ip or self.max_holds_per_visitor or self.pool_pressure)


UNLIMITED = Limits()


@dataclass(frozen=True)
class _Claim:
    """Who asks for a pool number: the session's address and visitor id, whether the request
    was a browser's (it carried an Origin) and whether it came with a real-browser signal."""

    ip: str | None
    visitor_id: str | None
    browser: bool
    confirmed: bool
    limits: Limits


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
    visit: dict[str, str | None] = dict.fromkeys(VISIT_FIELDS)
    for name, limit in VISIT_FIELDS.items():
        value = raw.get(name)
        if value is not None:  # most fields are absent on most page views
            visit[name] = clean_text(value, limit)
    visit["ga_client_id"] = ga_client_id(visit["ga_client_id"])
    if not visit["keyword"]:
        visit["keyword"] = clean_text(extract_keyword(visit["utm_term"], visit["referrer"]),
                                      VISIT_FIELDS["keyword"])
    if not visit["current_page"]:
        visit["current_page"] = visit["landing_page"]
    return visit


# ---------------------------------------------------------------- time helpers


def _new_hold(site: SiteRouting, now: dt.datetime, first_hold: int | None = None) -> tuple[dt.datetime, dt.datetime]:
    """(expires, hard expiry) of a new hold: the site's hold, or a short ``first_hold``."""
    hard = now + dt.timedelta(seconds=site.hold_cap_seconds)
    hold = site.hold_seconds if first_hold is None else min(first_hold, site.hold_seconds)
    return min(now + dt.timedelta(seconds=hold), hard), hard


def _extended(site: SiteRouting, now: dt.datetime, hard: dt.datetime) -> dt.datetime:
    return min(now + dt.timedelta(seconds=site.hold_seconds), hard).astimezone(dt.UTC)


def _write_lock(db: Session) -> None:
    """BEGIN IMMEDIATE on SQLite when this call opens the transaction.  A caller that already
    began one (several calls in one unit of work) keeps it."""
    if not db.in_transaction():
        begin_write(db)


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


@contextlib.contextmanager
def _atomic(conn: Connection) -> Iterator[None]:
    """The writes that must stand or fall together (and keep their row locks until the last).
    A connection already in a transaction (a Session's, the tracker's on SQLite) keeps it; an
    autocommit connection (the tracker's on PostgreSQL) runs them in a transaction of their own."""
    if not (_is_pg(conn) and conn.connection.driver_connection.autocommit is True):  # psycopg's own flag
        yield
        return
    conn.commit()  # ends the autobegun block; in autocommit every statement already committed itself
    conn.execution_options(isolation_level=conn.default_isolation_level)
    try:
        with conn.begin():
            yield
    finally:
        conn.execution_options(isolation_level="AUTOCOMMIT")


# ---------------------------------------------------------------- statements
#
# Built once at import; SQLAlchemy caches each compiled form per dialect, and the tracker's
# psycopg connections prepare them server-side.

_LOOKUP_COLUMNS = (
    _vs.c.id, _vs.c.public_id, _vs.c.is_bot, _vs.c.interacted, _vs.c.last_seen, _vs.c.ip,
    *(_vs.c[name] for name in _STORED_VISIT),
    _na.c.id.label("a_id"), _na.c.hard_expires_at.label("a_hard"), _na.c.expires_at.label("a_expires"),
    _na.c.reused.label("a_reused"), _tn.c.number.label("a_number"),
)
# The session with its live hold, if any (at most one: we only allocate when none is live).
_LOOKUP_FROM = _vs.outerjoin(
    _na, and_(_na.c.session_id == _vs.c.id, _na.c.released_at.is_(None), _na.c.expires_at > bindparam("now"))
).outerjoin(_tn, _tn.c.id == _na.c.number_id)
_BY_SID = (select(*_LOOKUP_COLUMNS).select_from(_LOOKUP_FROM)
           .where(_vs.c.public_id == bindparam("sid"), _vs.c.site_id == bindparam("site")))
_BY_VISITOR = (select(*_LOOKUP_COLUMNS).select_from(_LOOKUP_FROM)
               .where(_vs.c.site_id == bindparam("site"), _vs.c.visitor_id == bindparam("visitor"))
               .order_by(_vs.c.id.desc()).limit(1))

# The least recently released free number of the pool (a hold that ran out but was not swept
# yet counts as free; it comes back as stale_id).  SKIP LOCKED: concurrent requests take
# different numbers without queueing.  SQLite has no row locks and renders no FOR UPDATE (and
# needs none: BEGIN IMMEDIATE serialises the writers).
_PICK = (
    select(_tn.c.id, _tn.c.number, _na.c.id.label("stale_id"), _na.c.expires_at.label("stale_expires_at"))
    .select_from(_tn.outerjoin(_na, and_(_na.c.number_id == _tn.c.id, _na.c.released_at.is_(None))))
    .where(_tn.c.pool_id == bindparam("pool"), _tn.c.enabled.is_(True), _tn.c.archived_at.is_(None),
           or_(_na.c.id.is_(None), _na.c.expires_at <= bindparam("now")))
    .order_by(func.coalesce(_na.c.expires_at, _tn.c.last_released_at).asc().nulls_first(), _tn.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, of=_tn)
)
# Adaptive hold: the same pick, also counting the pool's numbers and the free ones (the picked
# one included) through the live-number partial index, so pressure costs no statement of its own.
_free_tn = _tn.alias("free_tn")
_free_na = _na.alias("free_na")
_POOL_NUMBERS = (_free_tn.c.pool_id == bindparam("pool"), _free_tn.c.enabled.is_(True),
                 _free_tn.c.archived_at.is_(None))
_PICK_COUNTED = _PICK.add_columns(
    select(func.count()).select_from(_free_tn).where(*_POOL_NUMBERS).scalar_subquery().label("p_size"),
    select(func.count()).select_from(_free_tn)
    .where(*_POOL_NUMBERS, not_(exists().where(_free_na.c.number_id == _free_tn.c.id, _free_na.c.released_at.is_(None),
                                               _free_na.c.expires_at > bindparam("now"))))
    .scalar_subquery().label("p_free"),
)
# Adaptive hold: the pool's live holds whose visitor stopped sending heartbeats, most silent first.
# Locks the number too and skips anything locked, as the sweep does (an allocator locks the number
# before it touches the hold).
_STALE = (
    select(_na.c.id, _na.c.number_id)
    .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
    .where(_tn.c.pool_id == bindparam("pool"), _tn.c.enabled.is_(True), _tn.c.archived_at.is_(None),
           _na.c.released_at.is_(None), _na.c.expires_at > bindparam("now", type_=_na.c.expires_at.type),
           _na.c.last_heartbeat_at < bindparam("stale_before", type_=_na.c.last_heartbeat_at.type))
    .order_by(_na.c.last_heartbeat_at, _na.c.id)
    .limit(_END_STALE_LIMIT)
    .with_for_update(skip_locked=True, of=[_na, _tn])
)
# reuse_oldest: the live hold whose session was idle the longest.
_OLDEST = (
    select(_na.c.id, _na.c.number_id, _tn.c.number)
    .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
    .where(_tn.c.pool_id == bindparam("pool"), _tn.c.enabled.is_(True), _tn.c.archived_at.is_(None),
           _na.c.released_at.is_(None))
    .order_by(_na.c.last_heartbeat_at, _na.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, of=_tn)
)
# The partial unique index is the last line of defence: a lost race inserts nothing.
# SQLAlchemy spells ON CONFLICT with each dialect's own insert(); the SQL is the same.
_INSERT_HOLD = {
    name: (insert(_na)
           .on_conflict_do_nothing(index_elements=[_na.c.number_id], index_where=_na.c.released_at.is_(None))
           .returning(_na.c.id))
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_SESSION_COLUMNS = ("public_id", "site_id", "source_id", "is_bot", "interacted", "page_views", "first_seen",
                    "last_seen", *VISIT_FIELDS)
# Parameters named v_<column> (a bindparam may not take the name of the column it sets).
_INSERT_SESSION = (_vs.insert()
                   .values({name: bindparam(f"v_{name}", type_=_vs.c[name].type) for name in _SESSION_COLUMNS})
                   .returning(_vs.c.id))
_INSERT_OVERFLOW = _oe.insert()
_HAS_OVERFLOW = (select(_oe.c.id).where(_oe.c.session_id == bindparam("s_id"), _oe.c.policy.in_(OVERFLOW_POLICIES))
                 .limit(1))
_HAS_REFUSAL = select(_oe.c.id).where(_oe.c.session_id == bindparam("s_id"), _oe.c.policy.in_(REFUSALS)).limit(1)
# What one client holds of a site right now, and how full the pool is.  Driven from the site's
# numbers through the live-number partial index, so it reads one row per number of the site
# whatever the history (a plan from the expires_at index scanned every hold of every site, and
# the tracker's generic plans chose worse still).
_size_tn = _tn.alias("size_tn")
_CLIENT_HOLDS = (
    select(func.coalesce(func.sum(case((_vs.c.ip == bindparam("ip"), 1), else_=0)), 0).label("by_ip"),
           func.coalesce(func.sum(case((_vs.c.visitor_id == bindparam("visitor"), 1), else_=0)), 0)
           .label("by_visitor"),
           func.coalesce(func.sum(case((_tn.c.pool_id == bindparam("pool"), 1), else_=0)), 0).label("in_pool"),
           select(func.count()).select_from(_size_tn)
           .where(_size_tn.c.pool_id == bindparam("pool"), _size_tn.c.enabled.is_(True),
                  _size_tn.c.archived_at.is_(None))
           .scalar_subquery().label("size"))
    .select_from(_tn.join(_na, and_(_na.c.number_id == _tn.c.id, _na.c.released_at.is_(None)))
                 .join(_vs, _vs.c.id == _na.c.session_id))
    .where(_tn.c.site_id == bindparam("site"), _na.c.expires_at > bindparam("now"))
)
# Held until the transaction ends: a client's parallel requests take their numbers one by one.
_LOCK_CLIENT = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))
# released_at IS NULL: an allocator may have just taken over this hold as expired (the
# heartbeat arrived at the very moment it ran out); then the visitor must not be told they
# still hold the number.
_EXTEND = (update(_na).where(_na.c.id == bindparam("a_id"), _na.c.released_at.is_(None))
           .values(expires_at=bindparam("p_expires"), last_heartbeat_at=bindparam("p_now"))
           .returning(_na.c.id))
_SHORTEN = update(_na).where(_na.c.id == bindparam("a_id")).values(expires_at=bindparam("p_expires"))
_RELEASE = (update(_na).where(_na.c.id == bindparam("a_id"), _na.c.released_at.is_(None))
            .values(released_at=bindparam("p_at"), release_reason=bindparam("p_reason")))
_STAMP_NUMBER = (update(_tn).where(_tn.c.id == bindparam("n_id"),
                                   or_(_tn.c.last_released_at.is_(None), _tn.c.last_released_at < bindparam("p_at")))
                 .values(last_released_at=bindparam("p_at")))
# The session was seen: p_views 1 counts a page view, a p_page replaces the current page,
# p_interacted records the first interaction (all three 0/None/False on a plain heartbeat).
_TOUCH = (update(_vs).where(_vs.c.id == bindparam("s_id"))
          .values(last_seen=bindparam("p_now"), page_views=_vs.c.page_views + bindparam("p_views"),
                  current_page=func.coalesce(bindparam("p_page", type_=_vs.c.current_page.type), _vs.c.current_page),
                  interacted=or_(_vs.c.interacted, bindparam("p_interacted", type_=Boolean))))
_EXPIRED = (select(_na.c.id, _na.c.number_id, _na.c.expires_at)
            .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
            .where(_na.c.released_at.is_(None), _na.c.expires_at <= bindparam("now"))
            .order_by(_na.c.expires_at).limit(bindparam("limit"))
            # Lock the number too, and skip anything an allocator holds: the allocator locks
            # the number and then releases the stale hold, so waiting here could deadlock.
            .with_for_update(skip_locked=True, of=[_na, _tn]))


def _create_with_pick(pick=_PICK):
    """PostgreSQL: a new visitor who should get a pool number costs one statement.

    The session row, the locked pick of the least recently released free number, the release
    of that number's expired-but-unswept hold and the new hold, in one data-modifying WITH.
    ``r`` is pulled by ``a``'s WHERE (an InitPlan) so the stale hold is released before the new
    one meets it in the live-number unique index.  A full pool under the ``fallback`` policy
    stores its OverflowEvent in the same statement (``o``).  A lost race (ON CONFLICT DO
    NOTHING), or a full pool under ``reuse_oldest``, leaves ``a_id`` and ``o_id`` NULL and the
    caller takes the general path (``_allocate``).  ``pick`` ``_PICK_COUNTED`` also returns the
    pool's size and free numbers (adaptive hold).
    """
    s = _INSERT_SESSION.cte("s")
    p = pick.cte("p")
    r = (update(_na).where(_na.c.id == p.c.stale_id, _na.c.released_at.is_(None))
         .values(released_at=p.c.stale_expires_at, release_reason="expired")
         .returning(p.c.id).cte("r"))
    st = (update(_tn).where(_tn.c.id == p.c.id, p.c.stale_id.is_not(None),
                            or_(_tn.c.last_released_at.is_(None), _tn.c.last_released_at < p.c.stale_expires_at))
          .values(last_released_at=p.c.stale_expires_at).cte("st"))
    now = bindparam("now", type_=_na.c.assigned_at.type)  # the same parameters as _PICK
    a = (postgresql.insert(_na)
         .from_select(["number_id", "session_id", "assigned_at", "last_heartbeat_at", "expires_at",
                       "hard_expires_at", "reused"],
                      select(p.c.id, s.c.id, now, now, bindparam("c_expires", type_=_na.c.expires_at.type),
                             bindparam("c_hard", type_=_na.c.hard_expires_at.type), false())
                      .select_from(p.join(s, true()))
                      .where(select(func.count()).select_from(r).scalar_subquery() >= 0))
         .on_conflict_do_nothing(index_elements=[_na.c.number_id], index_where=_na.c.released_at.is_(None))
         .returning(_na.c.id).cte("a"))
    o = (_oe.insert()
         .from_select(["site_id", "pool_id", "session_id", "occurred_at", "policy", "visitor"],
                      select(bindparam("v_site_id", type_=_oe.c.site_id.type), bindparam("pool", type_=_oe.c.pool_id.type),
                             s.c.id, now, literal("fallback", _oe.c.policy.type),
                             bindparam("c_visitor", type_=_oe.c.visitor.type))
                      .where(bindparam("c_count_overflow", type_=Boolean), not_(exists().select_from(p))))
         .returning(_oe.c.id).cte("o"))
    counts = [p.c.p_size, p.c.p_free] if "p_free" in p.c else []
    return (select(s.c.id.label("s_id"), p.c.number, a.c.id.label("a_id"), o.c.id.label("o_id"), *counts)
            .select_from(s.outerjoin(p, true()).outerjoin(a, true()).outerjoin(o, true()))
            .add_cte(st))


def _heartbeat_in_one():
    """PostgreSQL: the common heartbeat in one statement.  The session holds a live number,
    did not navigate and has nothing new to record: slide the hold and stamp last_seen.  No row:
    anything else (no live hold, a navigation, a first interaction, a hold just taken over),
    and the caller takes the general path, which re-reads everything."""
    page = bindparam("h_page", type_=String)
    e = (update(_na)
         .where(_vs.c.public_id == bindparam("h_sid"), _vs.c.site_id == bindparam("h_site"),
                _na.c.session_id == _vs.c.id, _na.c.released_at.is_(None), _na.c.expires_at > bindparam("h_now"),
                or_(page.is_(None), _vs.c.current_page == page),
                or_(_vs.c.interacted, not_(bindparam("h_interacted", type_=Boolean))))
         .values(expires_at=func.least(bindparam("h_extended", type_=_na.c.expires_at.type), _na.c.hard_expires_at),
                 last_heartbeat_at=bindparam("h_now"))
         .returning(_na.c.number_id, _na.c.expires_at, _na.c.reused, _vs.c.id.label("s_id"))
         .cte("e"))
    u = update(_vs).where(_vs.c.id == e.c.s_id).values(last_seen=bindparam("h_now")).cte("u")
    return (select(_vs.c.public_id, e.c.expires_at, e.c.reused, _tn.c.number, *(_vs.c[n] for n in _STORED_VISIT))
            .select_from(e.join(_tn, _tn.c.id == e.c.number_id).join(_vs, _vs.c.id == e.c.s_id))
            .add_cte(u))


def _end_stale_in_one():
    """PostgreSQL: the adaptive hold's early end in one statement: release the stale holds
    (re-checked under the lock: a heartbeat that just arrived keeps its hold) and stamp their
    numbers as released now.  Returns how many ended."""
    now = bindparam("now", type_=_na.c.released_at.type)
    c = _STALE.cte("c")
    r = (update(_na).where(_na.c.id == c.c.id, _na.c.released_at.is_(None),
                           _na.c.last_heartbeat_at < bindparam("stale_before", type_=_na.c.last_heartbeat_at.type))
         .values(released_at=now, release_reason=ADAPTIVE)
         .returning(_na.c.number_id).cte("r"))
    st = (update(_tn).where(_tn.c.id == r.c.number_id,
                            or_(_tn.c.last_released_at.is_(None), _tn.c.last_released_at < now))
          .values(last_released_at=now).cte("st"))
    return select(func.count()).select_from(r).add_cte(st)


_CREATE_WITH_PICK = _create_with_pick()
_CREATE_WITH_PICK_COUNTED = _create_with_pick(_PICK_COUNTED)
_END_STALE_IN_ONE = _end_stale_in_one()
_HEARTBEAT_IN_ONE = _heartbeat_in_one()


# ---------------------------------------------------------------- pool primitives


def _release_number(conn: Connection, assignment_id: int, number_id: int, at: dt.datetime, reason: str) -> None:
    conn.execute(_RELEASE, {"a_id": assignment_id, "p_at": at, "p_reason": reason})
    conn.execute(_STAMP_NUMBER, {"n_id": number_id, "p_at": at})


def _insert_hold(conn: Connection, site: SiteRouting, number_id: int, session_row_id: int,
                 now: dt.datetime, reused: bool = False, first_hold: int | None = None) -> dt.datetime | None:
    """Insert the hold; None if the number is already held by someone else."""
    expires, hard = _new_hold(site, now, first_hold)
    row = conn.execute(_INSERT_HOLD[conn.dialect.name], {
        "number_id": number_id, "session_id": session_row_id, "assigned_at": now, "last_heartbeat_at": now,
        "expires_at": expires, "hard_expires_at": hard, "reused": reused}).first()
    return expires if row else None


def _take_free(conn: Connection, site: SiteRouting, pool_id: int, session_row_id: int,
               now: dt.datetime, first_hold: int | None = None) -> tuple[str, dt.datetime, bool] | None:
    """(number, hold expiry, whether the pool is short now: adaptive hold only) or None."""
    counted = _adaptive(site)
    for _attempt in range(_MAX_PICK_ATTEMPTS):
        picked = conn.execute(_PICK_COUNTED if counted else _PICK, {"pool": pool_id, "now": now}).first()
        if picked is None:
            return None
        if picked.stale_id is not None:
            # Expired but not yet swept: release it at the moment its hold really ended,
            # before the new hold meets it in the unique index.
            _release_number(conn, picked.stale_id, picked.id, picked.stale_expires_at, "expired")
        expires = _insert_hold(conn, site, picked.id, session_row_id, now, first_hold=first_hold)
        if expires is not None:
            return picked.number, expires, counted and _short(site, picked.p_free - 1, picked.p_size)
        # Another transaction committed a hold on this number between our snapshot and our
        # lock (the unique index said so): pick again with a fresh snapshot.
        log.debug("lost the race for number %s; picking again", picked.number)
    log.warning("pool %s: gave up after %d contended picks", pool_id, _MAX_PICK_ATTEMPTS)
    return None


def _take_oldest(conn: Connection, site: SiteRouting, pool_id: int, session_row_id: int,
                 now: dt.datetime, first_hold: int | None = None) -> tuple[str, dt.datetime] | None:
    """reuse_oldest policy: take the number from the live session that was idle the longest."""
    victim = conn.execute(_OLDEST, {"pool": pool_id}).first()
    if victim is None:
        return None
    _release_number(conn, victim.id, victim.number_id, now, "reused")
    expires = _insert_hold(conn, site, victim.number_id, session_row_id, now, reused=True, first_hold=first_hold)
    return (victim.number, expires) if expires else None


def _adaptive(site: SiteRouting) -> bool:
    """Whether the site's stale holds may end early (a site without heartbeats has no staleness)."""
    return site.adaptive_hold and site.heartbeat_seconds > 0


def _short(site: SiteRouting, free: int, size: int) -> bool:
    """The pool runs short: fewer free numbers than the site's threshold share of its size."""
    return bool(size) and free * 100 < site.adaptive_free_percent * size


def _end_stale(conn: Connection, site: SiteRouting, pool_id: int, now: dt.datetime) -> int:
    """Adaptive hold: end the pool's stale holds now (``release_reason`` ADAPTIVE); how many ended.
    The hold's row keeps its session, so a call from that visitor within the grace period is
    still attributed to them."""
    params = {"pool": pool_id, "now": now,
              "stale_before": now - dt.timedelta(seconds=STALE_HEARTBEATS * site.heartbeat_seconds)}
    if _is_pg(conn):
        ended = conn.execute(_END_STALE_IN_ONE, params).scalar_one()
    else:
        rows = conn.execute(_STALE, params).all()
        for row in rows:
            _release_number(conn, row.id, row.number_id, now, ADAPTIVE)
        ended = len(rows)
    if ended:
        log.info("pool %s short: ended %d stale holds early", pool_id, ended)
    return ended


def _overflow_snapshot(visit: Mapping[str, Any]) -> dict[str, Any]:
    """The visit as stored with an OverflowEvent (what the pool-sizing report shows)."""
    return {k: v for k, v in visit.items() if v is not None and k != "ip"}


# ---------------------------------------------------------------- one client's share


def _lock_key(site_id: int, kind: str, value: str) -> int:
    digest = hashlib.blake2b(f"{site_id}\x00{kind}\x00{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_client(conn: Connection, site_id: int, claim: _Claim) -> None:
    """PostgreSQL: queue this client's requests on one advisory lock until the transaction ends,
    so each counts the holds the ones before it committed.  SQLite needs none: BEGIN IMMEDIATE
    already serialises every writer."""
    if not _is_pg(conn):
        return
    limits = claim.limits
    if limits.max_holds_per_ip and claim.ip:
        key = _lock_key(site_id, "ip", claim.ip)
    elif limits.max_holds_per_visitor and claim.visitor_id:
        key = _lock_key(site_id, "visitor", claim.visitor_id)
    else:
        return
    conn.execute(_LOCK_CLIENT, {"key": key}).all()


def _first_hold(site: SiteRouting, limits: Limits) -> int | None:
    """The short first hold under pressure: long enough for the snippet's first heartbeat to
    arrive (a site without heartbeats cannot confirm, so it keeps the full hold)."""
    if site.heartbeat_seconds <= 0:
        return None
    return max(limits.first_hold_seconds, site.heartbeat_seconds + 30)


def _admit(conn: Connection, site: SiteRouting, pool_id: int, claim: _Claim,
           now: dt.datetime) -> tuple[str | None, int | None]:
    """(refusal reason or None, short first hold in seconds or None for the full hold).
    Must run in the transaction that takes the number (the lock lasts until it ends)."""
    if not claim.browser:
        return "no_origin", None
    limits = claim.limits
    if not limits.counted:
        return None, None
    _lock_client(conn, site.id, claim)
    held = conn.execute(_CLIENT_HOLDS, {"site": site.id, "pool": pool_id, "now": now, "ip": claim.ip,
                                        "visitor": claim.visitor_id}).one()
    if limits.max_holds_per_ip and claim.ip and held.by_ip >= limits.max_holds_per_ip:
        return "limit_ip", None
    if limits.max_holds_per_visitor and claim.visitor_id and held.by_visitor >= limits.max_holds_per_visitor:
        return "limit_visitor", None
    if limits.pool_pressure and not claim.confirmed and held.size and held.in_pool >= limits.pool_pressure * held.size:
        return None, _first_hold(site, limits)
    return None, None


def _refuse(conn: Connection, site: SiteRouting, route: Route, session_row_id: int, public_id: str,
            now: dt.datetime, visit: Mapping[str, Any], reason: str) -> Offer:
    """The fallback number, and the refusal stored once per session (its heartbeats ask again)."""
    if conn.execute(_HAS_REFUSAL, {"s_id": session_row_id}).first() is None:
        conn.execute(_INSERT_OVERFLOW, {"site_id": site.id, "pool_id": route.pool_id, "session_id": session_row_id,
                                        "occurred_at": now, "policy": reason, "visitor": _overflow_snapshot(visit)})
    return Offer(public_id, route.number, "fallback", None, route.source)


def _allocate(conn: Connection, site: SiteRouting, route: Route, session_row_id: int,
              public_id: str, now: dt.datetime, visit: Mapping[str, Any], record_overflow: bool,
              allow_reuse: bool = True, claim: _Claim | None = None, first_hold: int | None = None) -> Offer:
    """Take a pool number for the session.  ``claim``: admit the client first (no claim: it was
    admitted already, with ``first_hold``, or nobody asked for limits)."""
    assert route.pool_id is not None
    if claim is not None:
        refusal, first_hold = _admit(conn, site, route.pool_id, claim, now)
        if refusal is not None:
            return _refuse(conn, site, route, session_row_id, public_id, now, visit, refusal)
    taken = _take_free(conn, site, route.pool_id, session_row_id, now, first_hold)
    if _adaptive(site):
        # Short pool: stale holds end before anyone is turned away or displaced.
        if taken is None:
            if _end_stale(conn, site, route.pool_id, now):
                taken = _take_free(conn, site, route.pool_id, session_row_id, now, first_hold)
        elif taken[2]:
            _end_stale(conn, site, route.pool_id, now)
    if taken is not None:
        return Offer(public_id, taken[0], "pool", taken[1], route.source)
    policy = "reuse_oldest" if allow_reuse and site.overflow_policy == "reuse_oldest" else "fallback"
    reused = (_take_oldest(conn, site, route.pool_id, session_row_id, now, first_hold)
              if policy == "reuse_oldest" else None)
    if record_overflow:
        conn.execute(_INSERT_OVERFLOW, {"site_id": site.id, "pool_id": route.pool_id, "session_id": session_row_id,
                                        "occurred_at": now, "policy": policy, "visitor": _overflow_snapshot(visit)})
    if reused is not None:
        return Offer(public_id, reused[0], "reused", reused[1], route.source)
    return Offer(public_id, route.number, "fallback", None, route.source)


# ---------------------------------------------------------------- sessions


def _find_session(conn: Connection, site: SiteRouting, public_id: str | None,
                  visitor_id: str | None, now: dt.datetime):
    """The session row (by id, else the visitor's latest) joined with its live hold."""
    if public_id:
        row = conn.execute(_BY_SID, {"sid": public_id[:32], "site": site.id, "now": now}).first()
        if row is not None:
            return row
    if visitor_id:
        return conn.execute(_BY_VISITOR, {"site": site.id, "visitor": visitor_id, "now": now}).first()
    return None


def _extend(conn: Connection, site: SiteRouting, row, now: dt.datetime) -> dt.datetime | None:
    """Slide the hold; None if the hold was released meanwhile."""
    expires = _extended(site, now, row.a_hard)
    kept = conn.execute(_EXTEND, {"a_id": row.a_id, "p_expires": expires, "p_now": now}).first()
    return expires if kept is not None else None


def _session_alive(site: SiteRouting, row, now: dt.datetime) -> bool:
    return row.last_seen > now - dt.timedelta(seconds=site.hold_seconds)


def _fixed_offer(public_id: str, route: Route, kind: str) -> Offer:
    return Offer(public_id, route.number, kind, None, route.source)


def _stored_route(site: SiteRouting, row) -> Route:
    return route_visit(site, {name: getattr(row, name) for name in _STORED_VISIT})


def start(db: Session, site: SiteRouting, visit: Mapping[str, Any], now: dt.datetime,
          session_public_id: str | None = None, webdriver: bool = False, interacted: bool = False,
          new_visitor: bool = False, *, limits: Limits = UNLIMITED, browser: bool = True) -> Offer:
    """A page load: continue the visitor's live session (same number) or start a new one.

    ``visit`` must come from ``clean_visit``.  ``new_visitor`` (the snippet just created the
    visitor id) skips looking for that visitor's earlier session.  ``limits``: one client's
    share of the pools; ``browser`` False (the request had no Origin): no pool number at all.
    """
    _write_lock(db)
    return start_with(db.connection(), site, visit, now, session_public_id, webdriver, interacted, new_visitor,
                      limits=limits, browser=browser)


def start_with(conn: Connection, site: SiteRouting, visit: Mapping[str, Any], now: dt.datetime,
               session_public_id: str | None = None, webdriver: bool = False, interacted: bool = False,
               new_visitor: bool = False, *, limits: Limits = UNLIMITED, browser: bool = True) -> Offer:
    """``start`` on a Connection (see the module docstring).  The lookup is a plain read
    (READ COMMITTED gives a transaction no steadier view of it)."""
    existing = _find_session(conn, site, session_public_id, None if new_visitor else visit.get("visitor_id"), now)
    if existing is not None and (existing.a_id is not None or _session_alive(site, existing, now)):
        # counted under the address the session was stored with: what the count reads back
        claim = _Claim(existing.ip, existing.visitor_id, browser, interacted or existing.interacted, limits)
        with _atomic(conn):
            return _continue(conn, site, existing, visit, now, interacted, claim)

    bot = is_bot(visit.get("user_agent"), webdriver)
    route = route_visit(site, visit)
    public_id = new_uid()
    session_values = {
        "v_public_id": public_id, "v_site_id": site.id, "v_source_id": route.source.id if route.source else None,
        "v_is_bot": bot, "v_interacted": interacted, "v_page_views": 1, "v_first_seen": now, "v_last_seen": now,
        **{f"v_{name}": visit.get(name) for name in VISIT_FIELDS},
    }
    wants_pool = route.pool_id is not None and not bot and not (site.lazy_allocation and not interacted)
    claim = _Claim(visit.get("ip"), visit.get("visitor_id"), browser, interacted, limits)
    if wants_pool and browser and _is_pg(conn):
        if not limits.counted:
            return _create_on_pg(conn, site, route, public_id, session_values, now, visit, None)
        with _atomic(conn):  # the client's lock and count, then the one-statement create
            refusal, first_hold = _admit(conn, site, route.pool_id, claim, now)
            if refusal is None:
                return _create_on_pg(conn, site, route, public_id, session_values, now, visit, first_hold)
            session_row_id = conn.execute(_INSERT_SESSION, session_values).scalar_one()
            return _refuse(conn, site, route, session_row_id, public_id, now, visit, refusal)
    session_row_id = conn.execute(_INSERT_SESSION, session_values).scalar_one()
    if route.pool_id is None:
        return _fixed_offer(public_id, route, route.kind)
    if bot:
        return _fixed_offer(public_id, route, "bot")
    if not wants_pool:
        return _fixed_offer(public_id, route, "lazy")
    return _allocate(conn, site, route, session_row_id, public_id, now, visit, record_overflow=True, claim=claim)


def _create_on_pg(conn: Connection, site: SiteRouting, route: Route, public_id: str, session_values: dict[str, Any],
                  now: dt.datetime, visit: Mapping[str, Any], first_hold: int | None) -> Offer:
    """The new session and its number in one statement (``_create_with_pick``), the general
    path when that statement cannot decide."""
    expires, hard = _new_hold(site, now, first_hold)
    adaptive = _adaptive(site)
    # adaptive hold: a full pool takes the general path, which ends stale holds before it overflows
    created = conn.execute(_CREATE_WITH_PICK_COUNTED if adaptive else _CREATE_WITH_PICK, {
        **session_values, "pool": route.pool_id, "now": now, "c_expires": expires, "c_hard": hard,
        "c_count_overflow": site.overflow_policy != "reuse_oldest" and not adaptive,
        "c_visitor": _overflow_snapshot(visit)}).one()
    if created.a_id is not None:
        if adaptive and _short(site, created.p_free - 1, created.p_size):
            _end_stale(conn, site, route.pool_id, now)
        return Offer(public_id, created.number, "pool", expires, route.source)
    if created.o_id is not None:
        return Offer(public_id, route.number, "fallback", None, route.source)
    # Pool full (or every pick lost a race): the general path, overflow accounting included.
    with _atomic(conn):
        return _allocate(conn, site, route, created.s_id, public_id, now, visit, record_overflow=True,
                         first_hold=first_hold)


def _touch(conn: Connection, row, now: dt.datetime, page: str | None, count_view: bool, interacted: bool) -> None:
    new_page = page if page and page != row.current_page else None
    conn.execute(_TOUCH, {"s_id": row.id, "p_now": now, "p_views": int(count_view), "p_page": new_page,
                          "p_interacted": interacted})


def _keep_or_allocate(conn: Connection, site: SiteRouting, row, now: dt.datetime,
                      interacted: bool, allow_reuse: bool, claim: _Claim) -> Offer:
    route = _stored_route(site, row)
    if row.a_id is not None:
        expires = _extend(conn, site, row, now)
        if expires is not None:
            return Offer(row.public_id, row.a_number, "reused" if row.a_reused else "pool", expires, route.source)
    if route.pool_id is None:
        return _fixed_offer(row.public_id, route, route.kind)
    if row.is_bot:
        return _fixed_offer(row.public_id, route, "bot")
    if site.lazy_allocation and not (interacted or row.interacted):
        return _fixed_offer(row.public_id, route, "lazy")
    # A lazy session's first interaction, or a number lost to the hard cap or the unload
    # grace, is a real attempt and may overflow; a session already counted is not counted twice.
    counted = conn.execute(_HAS_OVERFLOW, {"s_id": row.id}).first()
    stored = {name: getattr(row, name) for name in _STORED_VISIT}
    return _allocate(conn, site, route, row.id, row.public_id, now, stored,
                     record_overflow=counted is None, allow_reuse=allow_reuse, claim=claim)


def _continue(conn: Connection, site: SiteRouting, row, visit: Mapping[str, Any],
              now: dt.datetime, interacted: bool, claim: _Claim) -> Offer:
    _touch(conn, row, now, visit.get("current_page"), True, interacted)
    return _keep_or_allocate(conn, site, row, now, interacted, allow_reuse=True, claim=claim)


def heartbeat(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime,
              current_page: str | None = None, interacted: bool = False, *, limits: Limits = UNLIMITED,
              browser: bool = True) -> Offer | None:
    """The visitor is still on the page: slide the hold.  None when the session is unknown;
    ``live=False`` when it idled past its hold: the snippet then starts a new one.

    A session that got the fallback number because the pool was full takes a pool number
    here as soon as one is free.  It never takes one over (``reuse_oldest``): two displaced
    sessions would otherwise take each other's number back on every heartbeat.  A heartbeat
    is the real-browser signal a short first hold waits for: what it takes, it holds in full.
    """
    _write_lock(db)
    return heartbeat_with(db.connection(), site, session_public_id, now, current_page, interacted,
                          limits=limits, browser=browser)


def heartbeat_with(conn: Connection, site: SiteRouting, session_public_id: str, now: dt.datetime,
                   current_page: str | None = None, interacted: bool = False, *, limits: Limits = UNLIMITED,
                   browser: bool = True) -> Offer | None:
    """``heartbeat`` on a Connection; see ``start_with``."""
    if _is_pg(conn):
        held = conn.execute(_HEARTBEAT_IN_ONE, {
            "h_sid": session_public_id[:32], "h_site": site.id, "h_now": now,
            "h_extended": now + dt.timedelta(seconds=site.hold_seconds), "h_page": current_page,
            "h_interacted": interacted}).first()
        if held is not None:
            return Offer(held.public_id, held.number, "reused" if held.reused else "pool",
                         held.expires_at.astimezone(dt.UTC), _stored_route(site, held).source)
    row = _find_session(conn, site, session_public_id, None, now)
    if row is None:
        return None
    if row.a_id is None and not _session_alive(site, row, now):
        return Offer(row.public_id, None, "expired", None, None, live=False)
    navigated = bool(current_page and current_page != row.current_page)
    claim = _Claim(row.ip, row.visitor_id, browser, True, limits)
    with _atomic(conn):
        # An SPA navigation arrives as a heartbeat with a new page: count it as a page view.
        _touch(conn, row, now, current_page, navigated, interacted)
        return _keep_or_allocate(conn, site, row, now, interacted, allow_reuse=False, claim=claim)


def unload(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime) -> bool:
    """The page is going away: keep the number only for the short unload grace, so the next
    page of the visit keeps it and an abandoned visit frees it soon.  True if a hold changed."""
    _write_lock(db)
    return unload_with(db.connection(), site, session_public_id, now)


def unload_with(conn: Connection, site: SiteRouting, session_public_id: str, now: dt.datetime) -> bool:
    """``unload`` on a Connection; see ``start_with``."""
    row = _find_session(conn, site, session_public_id, None, now)
    if row is None:
        return False
    grace = now + dt.timedelta(seconds=site.unload_grace_seconds)
    shorten = row.a_id is not None and grace < row.a_expires
    with _atomic(conn) if shorten else contextlib.nullcontext():
        _touch(conn, row, now, None, False, False)
        if shorten:
            conn.execute(_SHORTEN, {"a_id": row.a_id, "p_expires": grace})
    return shorten


def release_expired(db: Session, now: dt.datetime, limit: int = 1000) -> int:
    """Sweep holds that ran out: mark them released at the moment they expired and stamp
    the number's ``last_released_at``.  Allocation treats expired holds as free anyway; the
    sweep keeps ``released_at`` truthful for reports and the least-recently-released order."""
    _write_lock(db)
    conn = db.connection()
    rows = conn.execute(_EXPIRED, {"now": now, "limit": limit}).all()
    for row in rows:
        _release_number(conn, row.id, row.number_id, row.expires_at, "expired")
    return len(rows)


def release_for_call(db: Session, number_id: int, now: dt.datetime) -> bool:
    """Free a pool number after the call it was shown for (the caller binding stays on the
    Call row, so repeat calls are still attributed).  For the AGI/AMI side to use."""
    row = db.execute(select(_na.c.id).where(_na.c.number_id == number_id, _na.c.released_at.is_(None))).first()
    if row is None:
        return False
    _release_number(db.connection(), row.id, number_id, now, "call")
    return True


def live_count(db: Session, pool_id: int, now: dt.datetime) -> int:
    """Numbers of the pool held by a live session right now."""
    return db.execute(
        select(func.count()).select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
        .where(_tn.c.pool_id == pool_id, _na.c.released_at.is_(None), _na.c.expires_at > now)
    ).scalar_one()
