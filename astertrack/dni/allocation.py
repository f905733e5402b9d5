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

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

try:
    from psycopg.pq import TransactionStatus
    from psycopg.rows import namedtuple_row
    from psycopg.types.json import Json

    _IDLE = TransactionStatus.IDLE
except ImportError:  # SQLite-only installs
    namedtuple_row = Json = _IDLE = None

from astertrack.db.engine import begin_write
from astertrack.db.models import NumberAssignment, OverflowEvent, TrackingNumber, VisitorSession, new_uid
from astertrack.dni.bots import is_bot
from astertrack.dni.sources import Route, SiteRouting, SourceRule, extract_keyword, route_visit

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
RAW_POSTGRES = True  # the psycopg fast path; False runs every backend through SQLAlchemy Core


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


def _new_hold(site: SiteRouting, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    hard = now + dt.timedelta(seconds=site.hold_cap_seconds)
    return min(now + dt.timedelta(seconds=site.hold_seconds), hard), hard


def _extended(site: SiteRouting, now: dt.datetime, hard: dt.datetime) -> dt.datetime:
    return min(now + dt.timedelta(seconds=site.hold_seconds), hard).astimezone(dt.UTC)


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
        # released_at IS NULL: an allocator may have just taken over this hold as expired
        # (the heartbeat arrived at the very moment it ran out); then the visitor must not
        # be told they still hold the number.
        self.extend = (update(_na).where(_na.c.id == bindparam("a_id"), _na.c.released_at.is_(None))
                       .values(expires_at=bindparam("p_expires"), last_heartbeat_at=bindparam("p_now"))
                       .returning(_na.c.id))
        self.shorten = update(_na).where(_na.c.id == bindparam("a_id")).values(expires_at=bindparam("p_expires"))
        self.release = (update(_na).where(_na.c.id == bindparam("a_id"), _na.c.released_at.is_(None))
                        .values(released_at=bindparam("p_at"), release_reason=bindparam("p_reason")))
        self.stamp_number = (update(_tn).where(_tn.c.id == bindparam("n_id"),
                                               or_(_tn.c.last_released_at.is_(None),
                                                   _tn.c.last_released_at < bindparam("p_at")))
                             .values(last_released_at=bindparam("p_at")))
        self.has_overflow = select(_oe.c.id).where(_oe.c.session_id == bindparam("s_id")).limit(1)
        self.seen = update(_vs).where(_vs.c.id == bindparam("s_id")).values(last_seen=bindparam("p_now"))

    def touch(self, count_view: bool, new_page: bool, interacted: bool) -> str:
        """The name of the session update for this combination (built once, then prepared)."""
        name = f"touch_{count_view:d}{new_page:d}{interacted:d}"
        if name not in self.__dict__:
            changes: dict[str, Any] = {"last_seen": bindparam("p_now")}
            if count_view:
                changes["page_views"] = _vs.c.page_views + 1
            if new_page:
                changes["current_page"] = bindparam("p_page")
            if interacted:
                changes["interacted"] = True
            setattr(self, name, update(_vs).where(_vs.c.id == bindparam("s_id")).values(**changes))
        return name


_STATEMENTS: dict[str, _Statements] = {}
_INSERT_KEYS = {
    "insert_assignment": ("number_id", "session_id", "assigned_at", "last_heartbeat_at", "expires_at",
                          "hard_expires_at", "reused"),
    "insert_session": ("public_id", "site_id", "source_id", "is_bot", "interacted", "page_views", "first_seen",
                       "last_seen", *VISIT_FIELDS),
    "insert_overflow": ("site_id", "pool_id", "session_id", "occurred_at", "policy", "visitor"),
}


class _Executor:
    """Runs the prepared statements by name inside the caller's transaction."""

    create_in_one_statement = False  # PostgreSQL only: see _CREATE_WITH_PICK

    def __init__(self, conn: Connection, q: _Statements):
        self.conn = conn
        self.q = q

    def first(self, name: str, params: dict[str, Any]):
        return self.conn.execute(getattr(self.q, name), params).first()

    def scalar(self, name: str, params: dict[str, Any]):
        return self.conn.execute(getattr(self.q, name), params).scalar_one()

    def run(self, name: str, params: dict[str, Any]) -> None:
        self.conn.execute(getattr(self.q, name), params)

    def json(self, value: Any) -> Any:
        return value

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        """The writes that must stand or fall together.  Session-bound executors already run
        in the caller's transaction; an autocommit connection opens one here."""
        return contextlib.nullcontext()

    def batch(self, items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Run independent statements; the first row of each (None for no rows / no result)."""
        results = []
        for name, params in items:
            result = self.conn.execute(getattr(self.q, name), params)
            results.append(result.first() if result.returns_rows else None)
        return results


class _PsycopgExecutor(_Executor):
    """PostgreSQL fast path: the same statements, compiled once to SQL text and run on the
    transaction's own psycopg connection.  It skips SQLAlchemy's per-execution machinery,
    which was most of the tracker's CPU per page view; psycopg prepares them server-side.

    Built either on a Session's connection (inside the caller's transaction) or, by the
    tracker, on a bare psycopg connection in autocommit mode (``raw_executor``): then a
    single statement is its own transaction and ``atomic()`` groups the multi-statement writes.
    """

    create_in_one_statement = True
    _compiled: dict[str, tuple[str, dict[str, Any]]] = {}

    def __init__(self, raw: Any, dialect: Any, q: _Statements, conn: Connection | None = None):
        self.conn = conn  # type: ignore[assignment]
        self.q = q
        self.raw = raw
        self.dialect = dialect
        self.cursor = raw.cursor(row_factory=namedtuple_row)

    def _sql(self, name: str) -> tuple[str, dict[str, Any]]:
        compiled = self._compiled.get(name)
        if compiled is None:
            stmt = getattr(self.q, name)
            result = stmt.compile(dialect=self.dialect, column_keys=_INSERT_KEYS.get(name))
            defaults = {k: v for k, v in result.params.items() if v is not None}
            compiled = self._compiled[name] = (result.string, defaults)
        return compiled

    def _execute(self, name: str, params: dict[str, Any]):
        sql, defaults = self._sql(name)
        self.cursor.execute(sql, {**defaults, **params} if defaults else params)
        return self.cursor

    def first(self, name: str, params: dict[str, Any]):
        return self._execute(name, params).fetchone()

    def first_sql(self, sql: str, params: dict[str, Any]):
        return self.cursor.execute(sql, params).fetchone()

    def scalar(self, name: str, params: dict[str, Any]):
        return self._execute(name, params).fetchone()[0]

    def run(self, name: str, params: dict[str, Any]) -> None:
        self._execute(name, params)

    def json(self, value: Any) -> Any:
        return Json(value)

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        if self.raw.info.transaction_status != _IDLE:
            return contextlib.nullcontext()  # already in a transaction (a Session's, or ours)
        return self.raw.transaction()

    def batch(self, items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """One network round trip for several statements (and the BEGIN before them) with
        libpq pipeline mode: the page view waits on the database half as often."""
        raw = self.raw
        cursors = []
        with raw.pipeline():
            for name, params in items:
                sql, defaults = self._sql(name)
                cursor = raw.cursor(row_factory=namedtuple_row)
                cursor.execute(sql, {**defaults, **params} if defaults else params)
                cursors.append(cursor)
        return [cursor.fetchone() if cursor.description else None for cursor in cursors]


def _statements(dialect: str) -> _Statements:
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        statements = _STATEMENTS[dialect] = _Statements(dialect)
    return statements


def _executor(db: Session) -> _Executor:
    conn = db.connection()
    dialect = conn.dialect.name
    statements = _statements(dialect)
    if dialect == "postgresql" and conn.dialect.driver == "psycopg" and RAW_POSTGRES:
        return _PsycopgExecutor(conn.connection.dbapi_connection, conn.dialect, statements, conn)
    return _Executor(conn, statements)


def session_executor(db: Session) -> _Executor:
    """An executor on the Session's transaction (taking SQLite's write lock first)."""
    _write_lock(db)
    return _executor(db)


def raw_executor(raw: Any, dialect: Any) -> _Executor:
    """An executor on a bare psycopg connection in autocommit mode (the tracker's hot path:
    no Session, no pool checkout, one statement = one transaction).  ``dialect`` is the
    engine's SQLAlchemy dialect, used once per statement to compile it."""
    return _PsycopgExecutor(raw, dialect, _statements("postgresql"))


# ---------------------------------------------------------------- one-statement create
#
# A new visitor who should get a pool number costs a single round trip on PostgreSQL: the
# session row, the locked pick of the least recently released free number, the release of
# that number's expired-but-unswept hold and the new hold, in one data-modifying WITH.
# ``r`` is pulled by ``a``'s WHERE (an InitPlan) so the stale hold is released before the
# new one meets it in the live-number unique index.  A full pool under the ``fallback`` policy
# stores its OverflowEvent in the same statement (``o``).  A lost race (ON CONFLICT DO
# NOTHING), or a full pool under ``reuse_oldest``, leaves ``a_id`` and ``o_id`` NULL and the
# caller takes the exact slow path (_allocate).

_SESSION_COLUMNS = _INSERT_KEYS["insert_session"]
_CREATE_WITH_PICK = f"""\
WITH s AS (
  INSERT INTO visitor_sessions ({", ".join(_SESSION_COLUMNS)})
  VALUES ({", ".join(f"%({c})s" for c in _SESSION_COLUMNS)})
  RETURNING id
), p AS (
  SELECT tn.id, tn.number, na.id AS stale_id, na.expires_at AS stale_expires_at
  FROM tracking_numbers tn
  LEFT OUTER JOIN number_assignments na ON na.number_id = tn.id AND na.released_at IS NULL
  WHERE tn.pool_id = %(c_pool)s AND tn.enabled IS true
    AND (na.id IS NULL OR na.expires_at <= %(c_now)s)
  ORDER BY coalesce(na.expires_at, tn.last_released_at) ASC NULLS FIRST, tn.id
  LIMIT 1
  FOR UPDATE OF tn SKIP LOCKED
), r AS (
  UPDATE number_assignments SET released_at = p.stale_expires_at, release_reason = 'expired'
  FROM p WHERE number_assignments.id = p.stale_id AND number_assignments.released_at IS NULL
  RETURNING p.id
), st AS (
  UPDATE tracking_numbers SET last_released_at = p.stale_expires_at
  FROM p WHERE tracking_numbers.id = p.id AND p.stale_id IS NOT NULL
    AND (tracking_numbers.last_released_at IS NULL OR tracking_numbers.last_released_at < p.stale_expires_at)
), a AS (
  INSERT INTO number_assignments (number_id, session_id, assigned_at, last_heartbeat_at, expires_at,
                                  hard_expires_at, reused)
  SELECT p.id, s.id, %(c_now)s, %(c_now)s, %(c_expires)s, %(c_hard)s, false FROM p, s
  WHERE (SELECT count(*) FROM r) >= 0
  ON CONFLICT (number_id) WHERE released_at IS NULL DO NOTHING
  RETURNING id
), o AS (
  INSERT INTO overflow_events (site_id, pool_id, session_id, occurred_at, policy, visitor)
  SELECT %(site_id)s, %(c_pool)s, s.id, %(c_now)s, 'fallback', %(c_visitor)s FROM s
  WHERE %(c_count_overflow)s AND NOT EXISTS (SELECT 1 FROM p)
  RETURNING id
)
SELECT s.id AS s_id, p.number, a.id AS a_id, o.id AS o_id
FROM s LEFT JOIN p ON true LEFT JOIN a ON true LEFT JOIN o ON true"""

# The common heartbeat in one statement: the session holds a live number, did not navigate
# and has nothing new to record, so slide the hold and stamp last_seen.  No row: anything
# else (no live hold, a navigation, a first interaction, a hold just taken over) and the
# caller takes the general path, which re-reads everything.
_STORED_VISIT = tuple(name for name in VISIT_FIELDS if name != "ip")
_HEARTBEAT = f"""\
WITH e AS (
  UPDATE number_assignments na
  SET expires_at = LEAST(%(h_extended)s, na.hard_expires_at), last_heartbeat_at = %(h_now)s
  FROM visitor_sessions vs
  WHERE vs.public_id = %(h_sid)s AND vs.site_id = %(h_site)s AND na.session_id = vs.id
    AND na.released_at IS NULL AND na.expires_at > %(h_now)s
    AND (%(h_page)s::varchar IS NULL OR vs.current_page = %(h_page)s::varchar)
    AND (vs.interacted OR NOT %(h_interacted)s)
  RETURNING na.number_id, na.expires_at, na.reused, vs.id AS s_id
), u AS (
  UPDATE visitor_sessions SET last_seen = %(h_now)s FROM e WHERE visitor_sessions.id = e.s_id
)
SELECT vs.public_id, e.expires_at, e.reused, tn.number, {", ".join(f"vs.{c}" for c in _STORED_VISIT)}
FROM e JOIN tracking_numbers tn ON tn.id = e.number_id JOIN visitor_sessions vs ON vs.id = e.s_id"""


# ---------------------------------------------------------------- pool primitives


def _release_number(ex: _Executor, assignment_id: int, number_id: int, at: dt.datetime,
                    reason: str) -> None:
    ex.batch(_release_statements(assignment_id, number_id, at, reason))


def _insert_assignment(ex: _Executor, site: SiteRouting, number_id: int, session_row_id: int,
                       now: dt.datetime, reused: bool = False,
                       before: list[tuple[str, dict[str, Any]]] = ()) -> dt.datetime | None:
    """Insert the hold (after ``before``, in the same round trip); None if the number is
    already held by someone else."""
    expires, hard = _new_hold(site, now)
    params = {"number_id": number_id, "session_id": session_row_id, "assigned_at": now, "last_heartbeat_at": now,
              "expires_at": expires, "hard_expires_at": hard, "reused": reused}
    row = ex.batch([*before, ("insert_assignment", params)])[-1]
    return expires if row else None


def _release_statements(assignment_id: int, number_id: int, at: dt.datetime,
                        reason: str) -> list[tuple[str, dict[str, Any]]]:
    return [("release", {"a_id": assignment_id, "p_at": at, "p_reason": reason}),
            ("stamp_number", {"n_id": number_id, "p_at": at})]


def _take_free(ex: _Executor, site: SiteRouting, pool_id: int, session_row_id: int,
               now: dt.datetime, first_pick: Any = ...) -> tuple[str, dt.datetime] | None:
    for attempt in range(_MAX_PICK_ATTEMPTS):
        if attempt == 0 and first_pick is not ...:
            picked = first_pick  # already fetched together with other statements
        else:
            picked = ex.first("pick", {"pool": pool_id, "now": now})
        if picked is None:
            return None
        # Expired but not yet swept: release it at the moment its hold really ended (the
        # statements run in order, so the new hold never meets the old one in the index).
        before = (_release_statements(picked.stale_id, picked.id, picked.stale_expires_at, "expired")
                  if picked.stale_id is not None else [])
        expires = _insert_assignment(ex, site, picked.id, session_row_id, now, before=before)
        if expires is not None:
            return picked.number, expires
        # Another transaction committed a hold on this number between our snapshot and our
        # lock (the unique index said so): pick again with a fresh snapshot.
        log.debug("lost the race for number %s; picking again", picked.number)
    log.warning("pool %s: gave up after %d contended picks", pool_id, _MAX_PICK_ATTEMPTS)
    return None


def _take_oldest(ex: _Executor, site: SiteRouting, pool_id: int, session_row_id: int,
                 now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """reuse_oldest policy: take the number from the live session that was idle the longest."""
    victim = ex.first("oldest", {"pool": pool_id})
    if victim is None:
        return None
    expires = _insert_assignment(ex, site, victim.number_id, session_row_id, now, reused=True,
                                 before=_release_statements(victim.id, victim.number_id, now, "reused"))
    return (victim.number, expires) if expires else None


def _overflow_snapshot(visit: Mapping[str, Any]) -> dict[str, Any]:
    """The visit as stored with an OverflowEvent (what the pool-sizing report shows)."""
    return {k: v for k, v in visit.items() if v is not None and k != "ip"}


def _allocate(ex: _Executor, site: SiteRouting, route: Route, session_row_id: int,
              public_id: str, now: dt.datetime, visit: Mapping[str, Any], record_overflow: bool,
              allow_reuse: bool = True, first_pick: Any = ...) -> Offer:
    assert route.pool_id is not None
    taken = _take_free(ex, site, route.pool_id, session_row_id, now, first_pick)
    if taken is not None:
        return Offer(public_id, taken[0], "pool", taken[1], route.source)
    policy = "reuse_oldest" if allow_reuse and site.overflow_policy == "reuse_oldest" else "fallback"
    reused = _take_oldest(ex, site, route.pool_id, session_row_id, now) if policy == "reuse_oldest" else None
    if record_overflow:
        ex.run("insert_overflow", {"site_id": site.id, "pool_id": route.pool_id, "session_id": session_row_id,
                                   "occurred_at": now, "policy": policy, "visitor": ex.json(_overflow_snapshot(visit))})
    if reused is not None:
        return Offer(public_id, reused[0], "reused", reused[1], route.source)
    return Offer(public_id, route.number, "fallback", None, route.source)


# ---------------------------------------------------------------- sessions


def _find_session(ex: _Executor, site: SiteRouting, public_id: str | None,
                  visitor_id: str | None, now: dt.datetime):
    """The session row (by id, else the visitor's latest) joined with its live hold."""
    if public_id:
        row = ex.first("by_sid", {"sid": public_id[:32], "site": site.id, "now": now})
        if row is not None:
            return row
    if visitor_id:
        return ex.first("by_visitor", {"site": site.id, "visitor": visitor_id, "now": now})
    return None


def _extend(ex: _Executor, site: SiteRouting, row, now: dt.datetime) -> dt.datetime | None:
    """Slide the hold; None if the hold was released meanwhile."""
    expires = _extended(site, now, row.a_hard)
    kept = ex.first("extend", {"a_id": row.a_id, "p_expires": expires, "p_now": now})
    return expires if kept is not None else None


def _session_alive(site: SiteRouting, row, now: dt.datetime) -> bool:
    return row.last_seen > now - dt.timedelta(seconds=site.hold_seconds)


def _fixed_offer(public_id: str, route: Route, kind: str) -> Offer:
    return Offer(public_id, route.number, kind, None, route.source)


def start(db: Session, site: SiteRouting, visit: Mapping[str, Any], now: dt.datetime,
          session_public_id: str | None = None, webdriver: bool = False, interacted: bool = False,
          new_visitor: bool = False) -> Offer:
    """A page load: continue the visitor's live session (same number) or start a new one.

    ``visit`` must come from ``clean_visit``.  ``new_visitor`` (the snippet just created the
    visitor id) skips looking for that visitor's earlier session.
    """
    _write_lock(db)
    return start_with(_executor(db), site, visit, now, session_public_id, webdriver, interacted, new_visitor)


def start_with(ex: _Executor, site: SiteRouting, visit: Mapping[str, Any], now: dt.datetime,
               session_public_id: str | None = None, webdriver: bool = False, interacted: bool = False,
               new_visitor: bool = False) -> Offer:
    """``start`` on an executor (the tracker's autocommit connection or a Session's).  The
    lookup is a plain read (READ COMMITTED gives a transaction no steadier view of it); the
    writes that belong together run under ``ex.atomic()``."""
    existing = _find_session(ex, site, session_public_id, None if new_visitor else visit.get("visitor_id"), now)
    if existing is not None and (existing.a_id is not None or _session_alive(site, existing, now)):
        with ex.atomic():
            return _continue(ex, site, existing, visit, now, interacted)

    bot = is_bot(visit.get("user_agent"), webdriver)
    route = route_visit(site, visit)
    public_id = new_uid()
    values = {name: visit.get(name) for name in VISIT_FIELDS}
    session_values = {
        "public_id": public_id, "site_id": site.id, "source_id": route.source.id if route.source else None,
        "is_bot": bot, "interacted": interacted, "page_views": 1, "first_seen": now, "last_seen": now, **values,
    }
    wants_pool = route.pool_id is not None and not bot and not (site.lazy_allocation and not interacted)
    if wants_pool and ex.create_in_one_statement:
        expires, hard = _new_hold(site, now)
        count_overflow = site.overflow_policy != "reuse_oldest"
        created = ex.first_sql(_CREATE_WITH_PICK, {
            **session_values, "c_pool": route.pool_id, "c_now": now, "c_expires": expires, "c_hard": hard,
            "c_count_overflow": count_overflow, "c_visitor": ex.json(_overflow_snapshot(visit))})
        if created.a_id is not None:
            return Offer(public_id, created.number, "pool", expires, route.source)
        if created.o_id is not None:
            return Offer(public_id, route.number, "fallback", None, route.source)
        # Pool full (or every pick lost a race): the exact slow path, overflow accounting included.
        with ex.atomic():
            return _allocate(ex, site, route, created.s_id, public_id, now, visit, record_overflow=True)
    if wants_pool:
        # The new session row and the free-number pick do not depend on each other: one round trip.
        inserted, picked = ex.batch([("insert_session", session_values),
                                     ("pick", {"pool": route.pool_id, "now": now})])
        return _allocate(ex, site, route, inserted[0], public_id, now, visit, record_overflow=True,
                         first_pick=picked)
    session_row_id = ex.scalar("insert_session", session_values)
    if route.pool_id is None:
        return _fixed_offer(public_id, route, route.kind)
    if bot:
        return _fixed_offer(public_id, route, "bot")
    if site.lazy_allocation and not interacted:
        return _fixed_offer(public_id, route, "lazy")
    return _allocate(ex, site, route, session_row_id, public_id, now, visit, record_overflow=True)


def _touch(ex: _Executor, row, now: dt.datetime, page: str | None, count_view: bool,
           interacted: bool) -> None:
    if not count_view and (not page or page == row.current_page) and (row.interacted or not interacted):
        ex.run("seen", {"s_id": row.id, "p_now": now})  # the common heartbeat
        return
    new_page = bool(page and page != row.current_page)
    name = ex.q.touch(count_view, new_page, interacted and not row.interacted)
    ex.run(name, {"s_id": row.id, "p_now": now, "p_page": page})


def _keep_or_allocate(ex: _Executor, site: SiteRouting, row, now: dt.datetime,
                      interacted: bool, allow_reuse: bool, held: bool = True) -> Offer:
    stored = {name: getattr(row, name) for name in VISIT_FIELDS if name != "ip"}
    route = route_visit(site, stored)
    if held and row.a_id is not None:
        expires = _extend(ex, site, row, now)
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
    picked, counted = ex.batch([("pick", {"pool": route.pool_id, "now": now}), ("has_overflow", {"s_id": row.id})])
    return _allocate(ex, site, route, row.id, row.public_id, now, stored,
                     record_overflow=counted is None, allow_reuse=allow_reuse, first_pick=picked)


def _continue(ex: _Executor, site: SiteRouting, row, visit: Mapping[str, Any],
              now: dt.datetime, interacted: bool) -> Offer:
    _touch(ex, row, now, visit.get("current_page"), True, interacted)
    return _keep_or_allocate(ex, site, row, now, interacted, allow_reuse=True)


def heartbeat(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime,
              current_page: str | None = None, interacted: bool = False) -> Offer | None:
    """The visitor is still on the page: slide the hold.  None when the session is unknown;
    ``live=False`` when it idled past its hold: the snippet then starts a new one.

    A session that got the fallback number because the pool was full takes a pool number
    here as soon as one is free.  It never takes one over (``reuse_oldest``): two displaced
    sessions would otherwise take each other's number back on every heartbeat.
    """
    _write_lock(db)
    return heartbeat_with(_executor(db), site, session_public_id, now, current_page, interacted)


def heartbeat_with(ex: _Executor, site: SiteRouting, session_public_id: str, now: dt.datetime,
                   current_page: str | None = None, interacted: bool = False) -> Offer | None:
    """``heartbeat`` on an executor; see ``start_with``."""
    if ex.create_in_one_statement:
        held = ex.first_sql(_HEARTBEAT, {
            "h_sid": session_public_id[:32], "h_site": site.id, "h_now": now,
            "h_extended": now + dt.timedelta(seconds=site.hold_seconds), "h_page": current_page,
            "h_interacted": interacted})
        if held is not None:
            source = route_visit(site, {name: getattr(held, name) for name in _STORED_VISIT}).source
            return Offer(held.public_id, held.number, "reused" if held.reused else "pool",
                         held.expires_at.astimezone(dt.UTC), source)
    row = _find_session(ex, site, session_public_id, None, now)
    if row is None:
        return None
    if row.a_id is None and not _session_alive(site, row, now):
        return Offer(row.public_id, None, "expired", None, None, live=False)
    navigated = bool(current_page and current_page != row.current_page)
    if row.a_id is not None and not navigated and (row.interacted or not interacted):
        # The common heartbeat: last_seen and the sliding hold in one round trip.
        expires = _extended(site, now, row.a_hard)
        with ex.atomic():
            _, kept = ex.batch([("seen", {"s_id": row.id, "p_now": now}),
                                ("extend", {"a_id": row.a_id, "p_expires": expires, "p_now": now})])
            if kept is None:
                return _keep_or_allocate(ex, site, row, now, interacted, allow_reuse=False, held=False)
        source = route_visit(site, {name: getattr(row, name) for name in VISIT_FIELDS if name != "ip"}).source
        return Offer(row.public_id, row.a_number, "reused" if row.a_reused else "pool", expires, source)
    # An SPA navigation arrives as a heartbeat with a new page: count it as a page view.
    with ex.atomic():
        _touch(ex, row, now, current_page, navigated, interacted)
        return _keep_or_allocate(ex, site, row, now, interacted, allow_reuse=False)


def unload(db: Session, site: SiteRouting, session_public_id: str, now: dt.datetime) -> bool:
    """The page is going away: keep the number only for the short unload grace, so the next
    page of the visit keeps it and an abandoned visit frees it soon.  True if a hold changed."""
    _write_lock(db)
    return unload_with(_executor(db), site, session_public_id, now)


def unload_with(ex: _Executor, site: SiteRouting, session_public_id: str, now: dt.datetime) -> bool:
    """``unload`` on an executor; see ``start_with``."""
    row = _find_session(ex, site, session_public_id, None, now)
    if row is None:
        return False
    grace = now + dt.timedelta(seconds=site.unload_grace_seconds)
    if row.a_id is None or grace >= row.a_expires:
        ex.run("seen", {"s_id": row.id, "p_now": now})
        return False
    with ex.atomic():
        ex.run("seen", {"s_id": row.id, "p_now": now})
        ex.run("shorten", {"a_id": row.a_id, "p_expires": grace})
    return True


def release_expired(db: Session, now: dt.datetime, limit: int = 1000) -> int:
    """Sweep holds that ran out: mark them released at the moment they expired and stamp
    the number's ``last_released_at``.  Allocation treats expired holds as free anyway; the
    sweep keeps ``released_at`` truthful for reports and the least-recently-released order."""
    _write_lock(db)
    stmt = (select(_na.c.id, _na.c.number_id, _na.c.expires_at)
            .select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
            .where(_na.c.released_at.is_(None), _na.c.expires_at <= now)
            .order_by(_na.c.expires_at).limit(limit))
    if _is_pg(db):
        # Lock the number too, and skip anything an allocator holds: the allocator locks the
        # number and then releases the stale hold, so waiting here could deadlock.
        stmt = stmt.with_for_update(skip_locked=True, of=[_na, _tn])
    ex = _executor(db)
    rows = ex.conn.execute(stmt).all()
    for row in rows:
        _release_number(ex, row.id, row.number_id, row.expires_at, "expired")
    return len(rows)


def release_for_call(db: Session, number_id: int, now: dt.datetime) -> bool:
    """Free a pool number after the call it was shown for (the caller binding stays on the
    Call row, so repeat calls are still attributed).  For the AGI/AMI side to use."""
    row = db.execute(select(_na.c.id).where(_na.c.number_id == number_id, _na.c.released_at.is_(None))).first()
    if row is None:
        return False
    ex = _executor(db)
    _release_number(ex, row.id, number_id, now, "call")
    return True


def live_count(db: Session, pool_id: int, now: dt.datetime) -> int:
    """Numbers of the pool held by a live session right now."""
    return db.execute(
        select(func.count()).select_from(_na.join(_tn, _tn.c.id == _na.c.number_id))
        .where(_tn.c.pool_id == pool_id, _na.c.released_at.is_(None), _na.c.expires_at > now)
    ).scalar_one()
