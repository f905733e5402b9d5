"""Database side of a routing decision: plan from fresh facts, then reserve and record.

Each function opens its own short transaction on a plain SQLAlchemy connection and runs on the
event loop when the database is on this machine, else in a worker thread (``agi.app``,
``agi.database``).  The inbound route's statements are built once with bind parameters;
SQLAlchemy's statement cache keeps their compiled form.  The read (``plan_inbound``/``plan_next``)
is separate from the write (``commit_inbound``/``commit_next``) because between the two the route asks
Asterisk for device states; the write re-checks everything that matters atomically
(``astertrack.routing.reservations``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import Select, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from agi.database import INLINE_BUSY_MS, InlineBusy, running_inline
from agi.settings import AgiSettings
from agi.snapshot import DEFAULT_RULE_NAME, ManagerProfile, SnapshotCache
from astertrack.db.models import (
    Call,
    Manager,
    RoutingRule,
    new_uid,
)
from astertrack.db.types import IdList, one_of
from astertrack.routing import attribution as attr
from astertrack.routing import reservations, rules
from astertrack.routing.recording import recording_name
from astertrack.routing.rules import CallContext, Destination, ManagerView, RuleView
from astertrack.routing.schedule import is_open, local_day_start

log = logging.getLogger(__name__)

# SQLite has one writer at a time and makes the others sleep-and-retry (1, 2, 5, 10 ... 100 ms
# steps).  Queueing our own writers on a lock first keeps those sleeps out of the latency.
_sqlite_writer = threading.Lock()


def _engine(factory: sessionmaker[Session]) -> Engine:
    return factory.kw["bind"]


@contextlib.contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A plain Core connection: the hot path needs no ORM unit of work (about half the overhead).
    On the AGI's PostgreSQL engines it is in autocommit (``agi.database``): one-statement reads
    need no BEGIN and ROLLBACK round trips."""
    with _engine(factory).connect() as conn:
        yield conn


@contextlib.contextmanager
def write_session(factory: sessionmaker[Session], autocommit: bool = False) -> Iterator[Connection]:
    """A connection for a write step.

    SQLite: one transaction that holds the write lock from its first statement (``BEGIN
    IMMEDIATE``, through ``astertrack.db.engine``'s begin event), committed by the step.  Writers
    of this process queue on ``_sqlite_writer`` first; on the event loop (``running_inline``)
    only for ``INLINE_BUSY_MS``, then the step goes to the threads.

    PostgreSQL with ``autocommit``: every statement commits by itself, with no BEGIN or COMMIT
    round trip (the AGI's engines are in autocommit, ``agi.database``).  For steps whose writes
    are each one statement: the holds, then the call's record (``commit_inbound``).  Without
    it the step gets a transaction, committed by the step.
    """
    engine = _engine(factory)
    serialise = engine.dialect.name == "sqlite"
    if serialise:
        # inline on the event loop: never wait behind a writer thread that may be waiting itself
        if not _sqlite_writer.acquire(timeout=INLINE_BUSY_MS / 1000 if running_inline() else -1):
            raise InlineBusy("another decision is writing")
    try:
        with engine.connect() as conn:
            if serialise:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            elif not autocommit:
                conn.execution_options(isolation_level="READ COMMITTED")
            yield conn
    finally:
        if serialise:
            _sqlite_writer.release()


@dataclass
class CallerInfo:
    did: str | None
    caller: str | None  # E.164, or None for anonymous / unparsable
    caller_raw: str | None
    caller_name: str | None
    uniqueid: str | None
    linkedid: str | None


@dataclass
class Plan:
    """Everything decided before asking Asterisk which candidates are free."""

    call_uid: str
    now: dt.datetime
    info: CallerInfo
    attribution: attr.Attribution
    is_first_call: bool
    history: attr.CallerHistory | None
    timezone: str | None
    rule: RuleView | None
    candidates: list[ManagerView] = field(default_factory=list)
    sticky_id: int | None = None
    after_hours: bool = False
    fallback: Destination | None = None
    ring_timeout: int = 20
    max_attempts: int = 3
    attempts_so_far: int = 0
    tried: list[int] = field(default_factory=list)
    recording: str = ""
    call_id: int | None = None  # set for `next`

    @property
    def strategy(self) -> str:
        return self.rule.strategy if self.rule else "round_robin"


@dataclass
class Decision:
    """What the route announces to the dialplan."""

    call_uid: str
    source: str = ""
    campaign: str = ""
    managers: list[ManagerView] = field(default_factory=list)
    queue: str = ""
    timeout: int = 20
    recording: str = ""
    routed_by: str = ""
    fallback: Destination | None = None
    attempt: int = 0
    use_fallback_now: bool = False  # no candidate: the dialplan should go to CT_FALLBACK

    @property
    def dial(self) -> str:
        return rules.dial_string(self.managers)

    @property
    def manager_label(self) -> str:
        if self.queue:
            return f"queue:{self.queue}"
        return rules.manager_label(self.managers)


# Core tables, not the mapped classes: a statement on a Connection then skips the ORM's compile step.
_managers, _calls, _rules = Manager.__table__, Call.__table__, RoutingRule.__table__

# Only the live columns: endpoint, name, extension and working hours come from the snapshot.
_MANAGER_COLUMNS = tuple(_managers.c[name] for name in (
    "id", "enabled", "paused", "device_state", "reserved_until", "reserved_call_uid", "last_routed_at"))


# The hot path's statements are built once, with bind parameters: a call binds values only.
# (SQLAlchemy memoizes a statement object's cache key; building the same statement per call
# and computing its key again cost about as much as SQLite running it.)
_CAN_TAKE_CALLS = (
    one_of(_managers.c.id, bindparam("ids", type_=IdList())), _managers.c.enabled.is_(True),
    _managers.c.paused.is_(False), _managers.c.archived_at.is_(None),
    or_(_managers.c.reserved_until.is_(None), _managers.c.reserved_until < bindparam("now"),
        _managers.c.reserved_call_uid == bindparam("call_uid")),
)
_LOAD_MANAGERS = select(*_MANAGER_COLUMNS).where(*_CAN_TAKE_CALLS)
# ... and with the rule's round-robin position as a column, so it rides along in the same round trip
_LOAD_MANAGERS_WITH_CURSOR = _LOAD_MANAGERS.add_columns(
    select(_rules.c.rr_cursor).where(_rules.c.id == bindparam("rule_id")).scalar_subquery().label("rr_cursor"))
_CALLS_TODAY = (select(_calls.c.routed_manager_id, func.count())
                .where(one_of(_calls.c.routed_manager_id, bindparam("ids", type_=IdList())),
                       _calls.c.started_at >= bindparam("since"))
                .group_by(_calls.c.routed_manager_id))
_LAST_ANSWERED_BY = (select(_calls.c.manager_id)
                     .where(_calls.c.caller_number == bindparam("caller"), _calls.c.manager_id.is_not(None),
                            _calls.c.answered_at.is_not(None), _calls.c.started_at >= bindparam("since"))
                     .order_by(_calls.c.started_at.desc()).limit(1))
_LAST_ANSWERED_ON_SITE = _LAST_ANSWERED_BY.where(_calls.c.site_id == bindparam("site_id"))


def load_managers(session: Connection, ids: set[int], now: dt.datetime, call_uid: str,
                  profiles: Mapping[int, ManagerProfile],
                  rr_rule_id: int | None = None) -> tuple[dict[int, ManagerView], int | None]:
    """Fresh state of the candidates that could take a call now: enabled, not paused, not held
    for another call (pauses and reservations change by the second, so never cached).  The rest
    of each manager comes from ``profiles`` (the snapshot); a manager created since the snapshot
    was read is left out until the next one.

    With ``rr_rule_id`` the rule's round-robin cursor comes back in the same round trip.
    """
    if not ids:
        return {}, None
    params = {"ids": sorted(ids), "now": now, "call_uid": call_uid}
    statement = _LOAD_MANAGERS
    if rr_rule_id:
        statement, params["rule_id"] = _LOAD_MANAGERS_WITH_CURSOR, rr_rule_id
    views = {}
    cursor = None
    # a call reads a whole group: fetched at once, rows unpacked by position (_MANAGER_COLUMNS)
    for row in session.execute(statement, params).all():
        manager_id, enabled, paused, device_state, reserved_until, reserved_call_uid, last_routed_at = row[:7]
        if rr_rule_id:
            cursor = row[7]
        profile = profiles.get(manager_id)
        if profile is None:
            continue
        views[manager_id] = ManagerView(
            id=manager_id, endpoint=profile.endpoint, name=profile.name, extension=profile.extension,
            enabled=bool(enabled), paused=bool(paused), schedule=profile.schedule,
            device_state=device_state or "UNKNOWN", reserved_until=reserved_until,
            reserved_call_uid=reserved_call_uid, last_routed_at=last_routed_at)
    return views, cursor


def _calls_today(session: Connection, ids: set[int], now: dt.datetime, tz: str | None) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(_CALLS_TODAY, {"ids": sorted(ids), "since": local_day_start(now, tz)})
    return {mid: count for mid, count in rows}


def _sticky_manager_id(session: Session | Connection, rule: RuleView, history: attr.CallerHistory | None,
                       caller: str | None, site_id: int | None, now: dt.datetime) -> int | None:
    """The manager who last talked to this caller within the rule's sticky window."""
    if not rule.sticky or not caller or rule.sticky_days <= 0:
        return None
    since = now - dt.timedelta(days=rule.sticky_days)
    if history and history.personal_manager_id and history.personal_manager_at and history.personal_manager_at >= since:
        return history.personal_manager_id
    if site_id is None:
        return session.execute(_LAST_ANSWERED_BY, {"caller": caller, "since": since}).scalar_one_or_none()
    return session.execute(_LAST_ANSWERED_ON_SITE,
                           {"caller": caller, "since": since, "site_id": site_id}).scalar_one_or_none()


def _candidates(session: Session | Connection, plan: Plan, exclude: set[int],
                profiles: Mapping[int, ManagerProfile]) -> list[ManagerView]:
    rule = plan.rule
    if rule is None or rule.strategy == "queue":
        return []
    wanted = set(rule.member_ids)
    if plan.sticky_id:
        wanted.add(plan.sticky_id)
    round_robin = rule.strategy == "round_robin" and rule.id
    views, cursor = load_managers(session, wanted, plan.now, plan.call_uid, profiles,
                                  rule.id if round_robin else None)
    if rule.strategy == "fewest_today":
        counts = _calls_today(session, set(views), plan.now, plan.timezone)
        views = {mid: replace(view, calls_today=counts.get(mid, 0)) for mid, view in views.items()}
    cursor = (cursor or 0) if round_robin else rule.rr_cursor
    ordered = rules.order_candidates(rule.strategy, [views[i] for i in rule.member_ids if i in views], cursor)
    sticky = views.get(plan.sticky_id) if plan.sticky_id else None
    ordered = rules.with_sticky_first(ordered, sticky)
    return [m for m in ordered
            if m.id not in exclude and rules.is_available(m, plan.now, plan.timezone, plan.call_uid)]


def _finish_plan(session: Session | Connection, plan: Plan, settings: AgiSettings, exclude: set[int],
                 profiles: Mapping[int, ManagerProfile], check_hours: bool = True) -> Plan:
    rule = plan.rule
    plan.fallback = rules.fallback_for(rule, settings.fallback_dial)
    plan.ring_timeout = (rule.ring_timeout if rule and rule.ring_timeout else None) or settings.ring_timeout
    plan.max_attempts = (rule.max_attempts if rule and rule.max_attempts else None) or settings.max_attempts
    if check_hours and rule is not None and not is_open(rule.schedule, plan.now, plan.timezone):
        plan.after_hours = True
        plan.fallback = rules.after_hours_for(rule, settings.fallback_dial)
        return plan
    plan.candidates = _candidates(session, plan, exclude, profiles)
    return plan


def plan_inbound(factory: sessionmaker[Session], cache: SnapshotCache, info: CallerInfo, settings: AgiSettings,
                 now: dt.datetime) -> Plan:
    """Attribute the call and list the managers that could take it, best first (read only)."""
    snapshot = cache.get(factory)
    with read_connection(factory) as session:
        directory = snapshot.directory
        found = attr.attribute_call(session, directory, info.did, info.caller, now, settings.release_grace_seconds)
        attribution, history, first = found.attribution, found.history, found.is_first_call
        ctx = CallContext(
            did=info.did, caller=info.caller, site_id=attribution.site_id, source_id=attribution.source_id,
            source_name=attribution.source_name, utm_campaign=attribution.utm_campaign,
            landing_page=attribution.landing_page, caller_tags=history.tags if history else (),
            caller_is_vip=history.is_vip if history else False,
        )
        rule = rules.select_rule(snapshot.rules, ctx) or snapshot.implicit_rule()
        call_uid = new_uid()
        plan = Plan(call_uid=call_uid, now=now, info=info, attribution=attribution, is_first_call=first,
                    history=history, timezone=directory.timezone_for(attribution.site_id), rule=rule,
                    recording=recording_name(call_uid, now))
        if rule is not None and not first:
            plan.sticky_id = _sticky_manager_id(session, rule, history, info.caller, attribution.site_id, now)
        return _finish_plan(session, plan, settings, exclude=set(), profiles=snapshot.managers)


# ---------------------------------------------------------------- writes


def _reserve_first(session: Session | Connection, plan: Plan, free: list[ManagerView], ring_all: bool,
                   seconds: int) -> list[ManagerView]:
    won = []
    for manager in free:
        if reservations.reserve(session, manager.id, plan.call_uid, plan.now, seconds):
            won.append(manager)
            if not ring_all:
                break
    return won


def _routed_by(plan: Plan, won: list[ManagerView]) -> str:
    if plan.after_hours:
        return "after_hours"
    if not won and not (plan.rule and plan.rule.strategy == "queue" and plan.rule.queue_name):
        return "fallback"
    if plan.sticky_id and won and won[0].id == plan.sticky_id:
        return "sticky"
    return plan.rule.name if plan.rule else DEFAULT_RULE_NAME


def _decision(plan: Plan, won: list[ManagerView], attempt: int) -> Decision:
    a = plan.attribution
    queue = ""
    if not plan.after_hours and plan.rule and plan.rule.strategy == "queue" and plan.rule.queue_name:
        queue = plan.rule.queue_name
    return Decision(
        call_uid=plan.call_uid, source=a.source_name or "", campaign=a.utm_campaign or "", managers=won,
        queue=queue, timeout=plan.ring_timeout, recording=plan.recording, routed_by=_routed_by(plan, won),
        fallback=plan.fallback, attempt=attempt, use_fallback_now=not won and not queue,
    )


def _call_row(plan: Plan, decision: Decision, won: list[ManagerView], settings: AgiSettings) -> dict:
    """What the AGI knows of a new call (the AMI listener fills in the outcome later)."""
    a, info = plan.attribution, plan.info
    return {
        "call_uid": plan.call_uid, "node": settings.node, "linkedid": info.linkedid, "uniqueid": info.uniqueid,
        "site_id": a.site_id, "did": info.did, "caller_number": info.caller, "caller_raw": info.caller_raw,
        "caller_name": info.caller_name, "started_at": plan.now, "state": "ringing",
        "routed_manager_id": won[0].id if won else None, "routed_by": decision.routed_by,
        "routing_attempts": 1 if won else 0,
        "routing_rule_id": plan.rule.id if plan.rule and plan.rule.id else None,
        "routing_tried": [m.id for m in won], "recording_path": f"{plan.recording}.{settings.recording_format}",
        "source_id": a.source_id, "session_id": a.session_id, "attribution_kind": a.kind,
        "attribution_confidence": a.confidence, "attribution_reason": a.reason,
        "attribution_candidates": a.candidates, "utm_source": a.utm_source, "utm_medium": a.utm_medium,
        "utm_campaign": a.utm_campaign, "keyword": a.keyword, "is_first_call": plan.is_first_call,
        # the columns' defaults, given: an INSERT inside another statement (PostgreSQL's record)
        # is not promised Python-side defaults
        "transferred": False, "lead_channel": "call",
    }


# The columns of ``_call_row``, bound as ``call_<column>``: the call's record binds the call, the
# caller's profile (``p_*``) and the round-robin move (``rr_*``) in one set of parameters, and an
# INSERT or UPDATE given a parameter named like one of its columns would write that column too.
CALL_ROW_COLUMNS = (
    "call_uid", "node", "linkedid", "uniqueid", "site_id", "did", "caller_number", "caller_raw", "caller_name",
    "started_at", "state", "routed_manager_id", "routed_by", "routing_attempts", "routing_rule_id",
    "routing_tried", "recording_path", "source_id", "session_id", "attribution_kind", "attribution_confidence",
    "attribution_reason", "attribution_candidates", "utm_source", "utm_medium", "utm_campaign", "keyword",
    "is_first_call", "transferred", "lead_channel",
)
_INSERT_CALL = insert(_calls).values({name: bindparam(f"call_{name}") for name in CALL_ROW_COLUMNS})
_MOVE_ROUND_ROBIN = (update(_rules).where(_rules.c.id == bindparam("rr_rule"))
                     .values(rr_cursor=bindparam("rr_next", type_=_rules.c.rr_cursor.type)))


def _in_one_statement(profile_write) -> Select:
    """PostgreSQL: the call, its caller's profile and the rule's round-robin position written by
    one statement (data-modifying CTEs): one round trip, atomic in autocommit.  SQLite runs the
    same three statements one after the other in its transaction."""
    parts = [statement.cte(name) for statement, name in ((profile_write, "caller_profile"),
                                                         (_MOVE_ROUND_ROBIN, "round_robin")) if statement is not None]
    new_call = _INSERT_CALL.returning(_calls.c.id).cte("new_call")
    return select(new_call.c.id).add_cte(*parts)


# one per statement the profile write may be (or none: a caller without a number), built once
_RECORD_ON_POSTGRES = {write: _in_one_statement(write) for write in (None, *attr.PROFILE_WRITES["postgresql"])}


def _record_call(conn: Connection, plan: Plan, decision: Decision, won: list[ManagerView],
                 settings: AgiSettings) -> None:
    """The new call's row, its caller's profile (the core's ``profile_write``) and, for a
    round-robin rule that chose someone, the rule's next start."""
    params = {f"call_{name}": value for name, value in _call_row(plan, decision, won, settings).items()}
    found = attr.CallAttribution(plan.attribution, plan.history, plan.is_first_call)
    profile = attr.profile_write(conn.dialect.name, plan.info.caller, plan.info.caller_name, found, plan.now,
                                 plan.sticky_id)
    moves = won and plan.rule and plan.rule.id and plan.strategy == "round_robin"
    params.update(rr_rule=plan.rule.id if moves else None, rr_next=won[0].id if moves else None)
    if profile is not None:
        params.update(profile[1])
    if conn.dialect.name == "postgresql":
        conn.execute(_RECORD_ON_POSTGRES[profile[0] if profile else None], params)
        return
    conn.execute(_INSERT_CALL, params)
    if profile is not None:
        conn.execute(profile[0], params)
    if moves:
        conn.execute(_MOVE_ROUND_ROBIN, params)


def commit_inbound(factory: sessionmaker[Session], plan: Plan, free: list[ManagerView], settings: AgiSettings,
                   final: bool) -> Decision | None:
    """Reserve the first free candidate (all of them for ring-all) and record the call.

    Returns None when every offered manager was taken by a concurrent call and ``final`` is
    False: the route then checks more candidates and calls again.

    On PostgreSQL each hold commits as it is taken, so a concurrent call that wants the same
    manager waits on the manager's row for one statement (``astertrack.routing.reservations``),
    and the record is one more statement.  Should the record fail, the holds stay until they
    expire (``[agi] reservation_seconds``), like those of a call whose phone never rang, and a
    retry of the step (``run_with_retry``) renews them: a call may always renew its own hold.
    """
    ring_all = plan.strategy == "ring_all"
    with write_session(factory, autocommit=True) as session:
        won = _reserve_first(session, plan, free, ring_all, settings.reservation_seconds)
        if not won and not final:
            session.rollback()
            return None
        decision = _decision(plan, won, attempt=1 if won else 0)
        _record_call(session, plan, decision, won, settings)
        session.commit()
        return decision


# ---------------------------------------------------------------- `next`


class UnknownCall(LookupError):
    """``next`` was asked about a call id we never routed."""


def plan_next(factory: sessionmaker[Session], cache: SnapshotCache, call_uid: str, settings: AgiSettings,
              now: dt.datetime) -> Plan:
    """Release the failed candidate and list the next ones (none when the attempt budget is spent)."""
    with write_session(factory) as session:
        call = session.execute(select(_calls).where(_calls.c.call_uid == call_uid)).first()
        if call is None:
            raise UnknownCall(f"no call with id {call_uid!r}")
        reservations.release(session, call_uid)
        session.commit()
        snapshot = cache.get(factory)
        rule = snapshot.rule(call.routing_rule_id) if call.routing_rule_id else None
        rule = rule or snapshot.implicit_rule()
        a = attr.Attribution(kind=call.attribution_kind or "unknown", confidence=call.attribution_confidence or 0.0,
                             site_id=call.site_id, source_id=call.source_id,
                             source_name=snapshot.directory.source_name(call.source_id),
                             session_id=call.session_id, utm_campaign=call.utm_campaign)
        info = CallerInfo(did=call.did, caller=call.caller_number, caller_raw=call.caller_raw,
                          caller_name=call.caller_name, uniqueid=call.uniqueid, linkedid=call.linkedid)
        plan = Plan(call_uid=call_uid, now=now, info=info, attribution=a, is_first_call=bool(call.is_first_call),
                    history=None, timezone=snapshot.directory.timezone_for(call.site_id), rule=rule,
                    attempts_so_far=call.routing_attempts or 0, tried=list(call.routing_tried or []),
                    recording=(call.recording_path or "").rsplit(".", 1)[0], call_id=call.id)
        # The call was accepted in hours: no switch to after-hours half-way through it.
        plan = _finish_plan(session, plan, settings, exclude=set(plan.tried), profiles=snapshot.managers,
                            check_hours=False)
        if plan.attempts_so_far >= plan.max_attempts or plan.strategy in ("ring_all", "queue"):
            plan.candidates = []
        return plan


def release_call(factory: sessionmaker[Session], call_uid: str) -> int:
    """Drop every hold of a call (the dialplan is done with it)."""
    with write_session(factory) as session:
        count = reservations.release(session, call_uid)
        session.commit()
        return count


def commit_next(factory: sessionmaker[Session], plan: Plan, free: list[ManagerView], settings: AgiSettings,
                final: bool) -> Decision | None:
    with write_session(factory, autocommit=True) as session:
        won = _reserve_first(session, plan, free, False, settings.reservation_seconds)
        if not won and not final:
            session.rollback()
            return None
        attempt = plan.attempts_so_far + (1 if won else 0)
        decision = _decision(replace(plan, sticky_id=None), won, attempt)
        values: dict = {"routed_by": decision.routed_by, "routing_attempts": attempt}
        if won:
            values.update(routed_manager_id=won[0].id, routing_tried=plan.tried + [won[0].id])
        session.execute(update(_calls).where(_calls.c.id == plan.call_id).values(values))
        session.commit()
        return decision
