"""Where did a call come from?  The dialled number, the visitor session holding it, the caller's history.

* A **static** number belongs to one source: confidence 1.0.
* A **pool** number is shown to one visitor session at a time: the session holding it now
  wins (confidence 1.0, lower for bots), unless its hold began within the grace period after
  another session's hold on the number ended: that visitor may be the one calling (they left and
  rang minutes later, or wrote the number down), so ``RECENTLY_REASSIGNED_CONFIDENCE`` with the
  previous holder as the other candidate.  If nobody holds it, the session that released it
  most recently within the grace period gets it with a lower confidence that falls with the
  time since release, and falls again when several sessions released it within the grace
  period (the caller could have seen any of them).  An assignment past its expiry that the
  sweeper has not released yet counts as released at its expiry.
  A hold taken over from another session under ``reuse_oldest`` (``NumberAssignment.reused``)
  is only ``REUSED_CONFIDENCE``: the displaced visitor may still have the number on screen,
  and lower still when that visitor lost it within the grace period.
* A number we do not know is ``unknown``; a site's default number is ``default``.  When such a
  number is a pool's **fallback** (what a visitor sees when the pool is full) and exactly one
  visit was shown it in the last ``FALLBACK_WINDOW_MINUTES``, that visit gets the call at
  ``FALLBACK_CONFIDENCE``; otherwise the call stays unattributed with the count of candidates.
* A **repeat** caller (seen within the site's attribution window) keeps the first touch's
  source by default (``attribution_model = first_touch``) or takes this call's
  (``last_touch``); either way the call is marked as not the first.
* ``last_non_direct`` (Yandex Metrica's and Calltouch's default): a direct winning visit never
  overwrites the same person's last advertising visit within the window (``apply_model``).

Every attribution carries a ``reason`` code (``REASONS``) and the count of candidate visits, so
the call card can say how sure it is and why (docs/attribution.md).

Numbers, sources and sites come from a ``Directory`` snapshot; only the visitor-session and
caller-profile lookups query the database per call (and, off the common path, the fallback
and last-non-direct lookups).  The scoring is plain functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Boolean,
    Executable,
    Integer,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from astertrack.db.models import (
    Call,
    CallerProfile,
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    Site,
    Source,
    TrackingNumber,
    VisitorSession,
)
from astertrack.db.types import IdList, one_of

Executor = Session | Connection  # anything with .execute(): the AGI's hot path uses a plain Connection

# A repeat caller within the window keeps the source of their first call, or takes this one's.
# ``last_non_direct``: as last touch, but a direct visit never overwrites an advertising one.
ATTRIBUTION_MODELS = ("first_touch", "last_touch", "last_non_direct")
GRACE_BEST = 0.9  # confidence of a session that released the number a moment ago
GRACE_WORST = 0.5  # ... and at the very end of the grace period
AMBIGUITY_FACTOR = 0.8  # several sessions released the number within the grace period
BOT_CONFIDENCE = 0.5
POOL_NO_SESSION_CONFIDENCE = 0.2
REPEAT_CONFIDENCE = 0.9
GRACE_CANDIDATES = 5
# reuse_oldest took the number from another live session, which may still show it
REUSED_CONFIDENCE = 0.6
# ... and that session lost it within the grace period: either visitor could be calling
REUSED_CONTESTED_CONFIDENCE = 0.4
# a hold (not reused) that began within the grace period after another session's hold ended:
# the previous holder may still call the number they saw.  Calibrated on the simulator (#27,
# docs/benchmarks.md): at the recommended pool size about 98 % of such calls are the holder's,
# against about 99.5 % of the other held_now calls — less sure, not doubtful.
RECENTLY_REASSIGNED_CONFIDENCE = 0.9
# The pool's fallback number: one visit was shown it lately (many visitors see the same number)
FALLBACK_CONFIDENCE = 0.3
FALLBACK_WINDOW_MINUTES = 10
FALLBACK_CANDIDATES = 20  # overflow rows read at most: enough to say "several"
# OverflowEvent.policy values whose visitor was shown the fallback number (reuse_oldest got a
# pool number; no_origin was no browser, so nobody saw it)
FALLBACK_POLICIES = ("fallback", "limit_ip", "limit_visitor")
LAST_NON_DIRECT_CONFIDENCE = 0.9  # the earlier visit is the same person's, linked by id or phone
LOOKBACK_VISITS = 20  # earlier visits read for last_non_direct (non-direct ones first in SQL)
CLICK_IDS = ("gclid", "yclid", "fbclid")

# Why an attribution is what it is (Call.attribution_reason; words in webadmin/labels.py).
REASONS = (
    "static_number",  # a static source's own number
    "held_now",  # the pool number's live holder
    "held_now_reassigned",  # ... whose hold began within the grace period after another's ended
    "reused_number",  # ... whose hold was taken over from another session (reuse_oldest)
    "reused_contested",  # ... from one that lost it within the grace period
    "released_recently",  # the one session that released the number within the grace period
    "several_released",  # the latest of several that did
    "pool_no_visit",  # a pool number nobody held lately: the pool's source only
    "fallback_single_visit",  # the one visit shown the fallback number lately
    "fallback_ambiguous",  # several were: unattributed
    "fallback_no_visit",  # none was: unattributed
    "repeat_first_touch",  # a repeat caller keeps their first call's source
    "last_non_direct",  # a direct visit gave way to the same person's last advertising visit
    "default_number",  # the site's untracked number
    "unknown_number",  # a number astertrack does not track
)


@dataclass(frozen=True)
class Visit:
    """A visitor session as attribution reads it: what it brought and who it was."""

    id: int
    source_id: int | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    keyword: str | None = None
    landing_page: str | None = None
    is_bot: bool = False
    visitor_id: str | None = None
    ga_client_id: str | None = None
    ym_client_id: str | None = None
    gclid: str | None = None
    yclid: str | None = None
    fbclid: str | None = None
    referrer: str | None = None
    first_seen: dt.datetime | None = None

    @classmethod
    def from_row(cls, row) -> Visit:
        return cls(**{name: getattr(row, name) for name in _VISIT_FIELDS})


@dataclass(frozen=True)
class Attribution:
    kind: str  # static|dynamic|grace|fallback|repeat|non_direct|default|unknown
    confidence: float
    site_id: int | None = None
    number_id: int | None = None
    source_id: int | None = None
    source_name: str | None = None
    session_id: int | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    keyword: str | None = None
    landing_page: str | None = None
    reason: str = "unknown_number"  # REASONS
    candidates: int = 0  # visits (or sources) that could have made the call
    visit: Visit | None = field(default=None, compare=False)  # the winning visit, when there is one
    # the other candidate visit, when the reason names one (held_now_reassigned)
    other_session_id: int | None = None


@dataclass(frozen=True)
class SiteSettings:
    id: int
    timezone: str = "Europe/Moscow"
    attribution_window_days: int = 30
    attribution_model: str = "first_touch"
    domains: tuple[str, ...] = ()  # the site's own hosts: a referrer from them is not external


@dataclass(frozen=True)
class CallerHistory:
    """The caller's profile as seen before this call."""

    profile_id: int
    last_call_at: dt.datetime
    first_source_id: int | None
    first_session_id: int | None
    calls_count: int
    personal_manager_id: int | None
    personal_manager_at: dt.datetime | None
    is_vip: bool
    tags: tuple[str, ...]


UNKNOWN = Attribution(kind="unknown", confidence=0.0)


def _host(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def is_external_referrer(referrer: str | None, domains: Iterable[str]) -> bool:
    """A referrer from another host than the site's own (and their subdomains).  A site with
    no domains configured counts every referrer as external."""
    if not referrer or not referrer.strip():
        return False
    try:
        host = urlsplit(referrer.strip()).hostname or ""
    except ValueError:
        return True  # unparsable, but it came from somewhere
    host = _host(host)
    if not host:
        return False
    own = [_host(d) for d in domains if d]
    return not any(host == d or host.endswith("." + d) for d in own)


def is_direct(visit: Visit, domains: Iterable[str] = ()) -> bool:
    """Direct: no utm_source, no click id (gclid, yclid, fbclid) and no external referrer.
    The one definition last_non_direct uses."""
    if (visit.utm_source or "").strip():
        return False
    if any((getattr(visit, name) or "").strip() for name in CLICK_IDS):
        return False
    return not is_external_referrer(visit.referrer, domains)


def latest_non_direct(visits: Iterable[Visit], domains: Iterable[str] = ()) -> Visit | None:
    """The latest (by first_seen) visit that is not direct and not a bot's, or None."""
    domains = tuple(domains)
    best: Visit | None = None
    for visit in visits:
        if visit.is_bot or is_direct(visit, domains):
            continue
        if best is None or (visit.first_seen or dt.datetime.min.replace(tzinfo=dt.UTC)) > (
                best.first_seen or dt.datetime.min.replace(tzinfo=dt.UTC)):
            best = visit
    return best


def pool_hold_score(reused: bool, previous_ended_age: float | None, grace_seconds: int,
                    is_bot: bool, reassigned_after: float | None = None) -> tuple[float, str, int]:
    """(confidence, reason, candidates) of a call on a pool number held now.

    ``previous_ended_age``: seconds since the number's previous holder lost it, when that was
    within the grace period (None otherwise).  ``reassigned_after``: seconds between another
    session's hold on the number ending and this hold beginning (None: no such hold); within the
    grace period that visitor may be the caller, so a hold not reused is no longer certain."""
    if not reused:
        if reassigned_after is not None and reassigned_after <= grace_seconds:
            confidence, reason, candidates = RECENTLY_REASSIGNED_CONFIDENCE, "held_now_reassigned", 2
        else:
            confidence, reason, candidates = 1.0, "held_now", 1
    elif previous_ended_age is not None and previous_ended_age <= grace_seconds:
        confidence, reason, candidates = REUSED_CONTESTED_CONFIDENCE, "reused_contested", 2
    else:
        confidence, reason, candidates = REUSED_CONFIDENCE, "reused_number", 1
    if is_bot:
        confidence = min(confidence, BOT_CONFIDENCE)
    return confidence, reason, candidates


def reassignment_gap(held_since: dt.datetime, previous_released: dt.datetime | None,
                     previous_expires: dt.datetime | None) -> float | None:
    """Seconds from the end of the previous holder's hold to the start of this one (never below 0).

    The hold ended at its release or, when the sweeper released it late, at its expiry."""
    if previous_released is None and previous_expires is None:
        return None
    ended = min(t for t in (previous_released, previous_expires) if t is not None)
    return max((held_since - ended).total_seconds(), 0.0)


def fallback_score(candidates: int) -> tuple[float, str]:
    """(confidence, reason) of a call on a fallback number shown to ``candidates`` visits lately."""
    if candidates == 1:
        return FALLBACK_CONFIDENCE, "fallback_single_visit"
    return 0.0, "fallback_ambiguous" if candidates > 1 else "fallback_no_visit"


def grace_confidence(age_seconds: float, grace_seconds: int, candidates: int) -> float:
    """Falls linearly from GRACE_BEST to GRACE_WORST over the grace period; lower when ambiguous."""
    if grace_seconds <= 0:
        share = 1.0
    else:
        share = min(max(age_seconds / grace_seconds, 0.0), 1.0)
    value = GRACE_BEST - (GRACE_BEST - GRACE_WORST) * share
    if candidates > 1:
        value *= AMBIGUITY_FACTOR
    return round(value, 3)


@dataclass(frozen=True)
class NumberInfo:
    id: int
    site_id: int
    source_id: int | None
    pool_id: int | None


@dataclass(frozen=True)
class FallbackRoute:
    """A way a visitor is shown a fallback number: the pool that was full, and the dynamic
    source of the visit (None: the site's default pool, visits without a source)."""

    site_id: int
    pool_id: int
    source_id: int | None


@dataclass
class Directory:
    """Read-only snapshot of numbers, sources and sites: what changes when an admin edits, not per call.

    The AGI keeps one for a few seconds (``[agi] cache_seconds``) so a static number costs
    no query at all; the visitor-session lookups for pool numbers always hit the database.
    """

    numbers: dict[str, NumberInfo]
    source_names: dict[int, str]
    pool_sources: dict[int, tuple[int, str]]  # pool id -> its dynamic source (lowest priority first)
    sites: dict[int, SiteSettings]
    default_numbers: dict[str, int]  # a site's default (untracked) number -> site id
    # a number shown when a pool is full -> the pools (and sources) that show it
    fallbacks: dict[str, tuple[FallbackRoute, ...]] = field(default_factory=dict)

    def source_name(self, source_id: int | None) -> str | None:
        return self.source_names.get(source_id) if source_id is not None else None

    def timezone_for(self, site_id: int | None) -> str | None:
        """The site's zone; for a call to no known site, the zone of the only site if there is one
        (a single-site install expects its office hours to hold for every number)."""
        if site_id is not None and site_id in self.sites:
            return self.sites[site_id].timezone
        zones = {site.timezone for site in self.sites.values()}
        return zones.pop() if len(zones) == 1 else None


def load_directory(session: Session) -> Directory:
    """Archived rows leave routing: an archived number, or one of an archived site, is not
    tracked; an archived source is no longer given to a call (its static number's calls go to
    the site), nor an archived pool's source.  Names stay, so history still reads."""
    archived_sites = set(session.scalars(select(Site.id).where(Site.archived_at.is_not(None))))
    site_rows = session.execute(select(Site.id, Site.timezone, Site.attribution_window_days, Site.attribution_model,
                                       Site.default_number, Site.default_pool_id, Site.domains)).all()
    site_defaults = {row.id: row.default_number for row in site_rows}
    pool_rows = session.execute(select(NumberPool.id, NumberPool.site_id, NumberPool.fallback_number)
                                .where(NumberPool.archived_at.is_(None))).all()
    pool_fallbacks = {row.id: row.fallback_number for row in pool_rows}
    fallbacks: dict[str, list[FallbackRoute]] = {}

    def shown_when_full(number: str | None, site_id: int, pool_id: int, source_id: int | None) -> None:
        # the tracker's choice (dni.sources.route_visit): source's, else pool's, else site default
        if number and site_id not in archived_sites:
            fallbacks.setdefault(number, []).append(FallbackRoute(site_id, pool_id, source_id))

    names: dict[int, str] = {}
    live_sources: set[int] = set()
    pool_sources: dict[int, tuple[int, str]] = {}
    for row in session.execute(select(Source.id, Source.name, Source.pool_id, Source.enabled, Source.archived_at,
                                      Source.site_id, Source.kind, Source.fallback_number)
                               .order_by(Source.priority.desc(), Source.id.desc())):
        names[row.id] = row.name
        if row.archived_at is not None:
            continue
        live_sources.add(row.id)
        if row.pool_id is not None and row.enabled and row.pool_id in pool_fallbacks:
            pool_sources[row.pool_id] = (row.id, row.name)  # written last = lowest priority, then id
            if row.kind == "dynamic":
                shown_when_full(row.fallback_number or pool_fallbacks[row.pool_id] or site_defaults.get(row.site_id),
                                row.site_id, row.pool_id, row.id)
    numbers = {
        row.number: NumberInfo(row.id, row.site_id, row.source_id if row.source_id in live_sources else None,
                               row.pool_id)
        for row in session.execute(select(TrackingNumber.number, TrackingNumber.id, TrackingNumber.site_id,
                                          TrackingNumber.source_id, TrackingNumber.pool_id)
                                   .where(TrackingNumber.enabled.is_(True), TrackingNumber.archived_at.is_(None)))
        if row.site_id not in archived_sites
    }
    sites = {}
    defaults: dict[str, int] = {}
    for row in site_rows:
        sites[row.id] = SiteSettings(id=row.id, timezone=row.timezone or "UTC",
                                     attribution_window_days=row.attribution_window_days or 30,
                                     attribution_model=row.attribution_model or "first_touch",
                                     domains=tuple(str(d).lower() for d in (row.domains or []) if d))
        if row.default_number and row.id not in archived_sites:
            defaults.setdefault(row.default_number, row.id)
        if row.default_pool_id in pool_fallbacks:  # visits no source matched draw from it
            shown_when_full(pool_fallbacks[row.default_pool_id] or row.default_number, row.id, row.default_pool_id,
                            None)
    return Directory(numbers, names, pool_sources, sites, defaults,
                     {number: tuple(routes) for number, routes in fallbacks.items()})


_VISIT_FIELDS = ("id", "source_id", "utm_source", "utm_medium", "utm_campaign", "utm_term", "keyword", "landing_page",
                 "is_bot", "visitor_id", "ga_client_id", "ym_client_id", "gclid", "yclid", "fbclid", "referrer",
                 "first_seen")
_VISIT_COLUMNS = tuple(getattr(VisitorSession, name) for name in _VISIT_FIELDS)


# Statements of the per-call lookups, built once: a call only binds values (building and
# cache-keying a statement costs more than running it).
_RECENT_ASSIGNMENTS = (
    select(NumberAssignment.released_at, NumberAssignment.expires_at, NumberAssignment.reused,
           NumberAssignment.assigned_at, *_VISIT_COLUMNS)
    .join(VisitorSession, VisitorSession.id == NumberAssignment.session_id)
    .where(
        NumberAssignment.number_id == bindparam("number_id"),
        NumberAssignment.assigned_at <= bindparam("now"),
        or_(NumberAssignment.released_at.is_(None), NumberAssignment.released_at >= bindparam("released_since")),
    )
    .order_by(NumberAssignment.assigned_at.desc())
    .limit(GRACE_CANDIDATES + 1)
)
# The hold on a number before the live one: the latest released hold of another session.  While a
# hold is live every other hold on the number is released (uq_number_assignments_live_number), so
# ix_number_assignments_number_released (number_id, released_at) answers it from one index range.
_PREVIOUS_HOLD = (
    select(NumberAssignment.session_id, NumberAssignment.released_at, NumberAssignment.expires_at)
    .where(NumberAssignment.number_id == bindparam("number_id"),
           NumberAssignment.released_at.is_not(None),
           NumberAssignment.released_at <= bindparam("now"),
           NumberAssignment.session_id != bindparam("session_id"))
    .order_by(NumberAssignment.released_at.desc())
    .limit(1)
)
_HISTORY_COLUMNS = (CallerProfile.id, CallerProfile.last_call_at, CallerProfile.first_source_id,
                    CallerProfile.first_session_id, CallerProfile.calls_count, CallerProfile.personal_manager_id,
                    CallerProfile.personal_manager_at, CallerProfile.is_vip, CallerProfile.tags)
_HISTORY_BY_SITE = select(*_HISTORY_COLUMNS).where(CallerProfile.site_id == bindparam("site_id"),
                                                   CallerProfile.number == bindparam("number"))
_HISTORY_NO_SITE = select(*_HISTORY_COLUMNS).where(CallerProfile.site_id.is_(None),
                                                   CallerProfile.number == bindparam("number"))
_VISIT_BY_ID = select(*_VISIT_COLUMNS).where(VisitorSession.id == bindparam("session_id"))
# Visits shown a fallback number lately: an overflow of one of the pools that show it, a session
# seen since ``since`` that did not take a pool number between the overflow and ``since``.
_oe, _na = OverflowEvent.__table__, NumberAssignment.__table__
_FALLBACK_VISITS = (
    select(OverflowEvent.pool_id, *_VISIT_COLUMNS)  # a session with two overflows: deduplicated by id
    .join(VisitorSession, VisitorSession.id == OverflowEvent.session_id)
    .where(one_of(OverflowEvent.pool_id, bindparam("pools", type_=IdList())),
           OverflowEvent.policy.in_(FALLBACK_POLICIES),
           OverflowEvent.occurred_at <= bindparam("now"),
           VisitorSession.last_seen >= bindparam("since"),
           VisitorSession.is_bot.is_(False),
           ~exists().where(_na.c.session_id == VisitorSession.id, _na.c.assigned_at >= OverflowEvent.occurred_at,
                           _na.c.assigned_at < bindparam("since")))
    .order_by(VisitorSession.last_seen.desc())
    .limit(FALLBACK_CANDIDATES)
)
# The same person's earlier visits within the window: the same first-party visitor id, GA or
# Metrica client id, or a visit an earlier call of the same caller number was attributed to.
# Each branch is indexed (site+visitor_id, site+ga/ym ids, calls by caller number).
_NOT_DIRECT_IN_SQL = or_(func.coalesce(VisitorSession.utm_source, "") != "",
                         VisitorSession.gclid.is_not(None), VisitorSession.yclid.is_not(None),
                         VisitorSession.fbclid.is_not(None), func.coalesce(VisitorSession.referrer, "") != "")
_EARLIER_VISITS = (
    select(*_VISIT_COLUMNS)
    .where(VisitorSession.site_id == bindparam("site_id"),
           VisitorSession.id != bindparam("current_id"),
           VisitorSession.first_seen >= bindparam("since"),
           VisitorSession.first_seen <= bindparam("before"),
           VisitorSession.is_bot.is_(False),
           _NOT_DIRECT_IN_SQL,
           or_(and_(VisitorSession.visitor_id.is_not(None), VisitorSession.visitor_id == bindparam("visitor_id")),
               and_(VisitorSession.ga_client_id.is_not(None), VisitorSession.ga_client_id == bindparam("ga")),
               and_(VisitorSession.ym_client_id.is_not(None), VisitorSession.ym_client_id == bindparam("ym")),
               VisitorSession.id.in_(select(Call.session_id).where(
                   Call.caller_number == bindparam("caller"), Call.started_at >= bindparam("since"),
                   Call.site_id == bindparam("site_id"), Call.session_id.is_not(None)))))
    .order_by(VisitorSession.first_seen.desc())
    .limit(LOOKBACK_VISITS)
)


def _with_visit(base: Attribution, visit: Visit, source_name: str | None) -> Attribution:
    return replace(
        base,
        source_id=visit.source_id if visit.source_id is not None else base.source_id,
        source_name=source_name if visit.source_id is not None else base.source_name,
        session_id=visit.id,
        utm_source=visit.utm_source,
        utm_medium=visit.utm_medium,
        utm_campaign=visit.utm_campaign,
        keyword=visit.keyword or visit.utm_term,
        landing_page=visit.landing_page,
        visit=visit,
    )


def attribute_number(session: Executor, directory: Directory, did: str | None, now: dt.datetime,
                     grace_seconds: int, fallback_minutes: int = FALLBACK_WINDOW_MINUTES) -> Attribution:
    """Attribution of a call to ``did`` (E.164) at ``now``, from numbers, pools and sessions.

    A static number costs no query, a pool number one, and one more (indexed) when it is held now
    and the hold was not reused; only a fallback number asks again."""
    if not did:
        return UNKNOWN
    number = directory.numbers.get(did)
    if number is None:
        site_id = directory.default_numbers.get(did)
        base = UNKNOWN if site_id is None else Attribution(kind="default", confidence=0.0, site_id=site_id,
                                                          reason="default_number")
        routes = directory.fallbacks.get(did)
        if routes:
            return attribute_fallback(session, directory, base, routes, now, fallback_minutes)
        return base
    base = Attribution(kind="static", confidence=1.0, site_id=number.site_id, number_id=number.id,
                       source_id=number.source_id, source_name=directory.source_name(number.source_id),
                       reason="static_number", candidates=1)
    if number.pool_id is None:
        return base
    pool_source_id, pool_source_name = directory.pool_sources.get(number.pool_id, (None, None))
    base = replace(base, kind="dynamic", source_id=number.source_id or pool_source_id,
                   source_name=base.source_name or pool_source_name)
    recent = session.execute(_RECENT_ASSIGNMENTS, {
        "number_id": number.id, "now": now, "released_since": now - dt.timedelta(seconds=grace_seconds),
    }).all()
    live = [row for row in recent if row.released_at is None and row.expires_at >= now]
    released = []
    for row in recent:
        ended = row.released_at or row.expires_at
        if ended <= now and (now - ended).total_seconds() <= grace_seconds:
            released.append((ended, row))
    released.sort(key=lambda pair: pair[0], reverse=True)
    if live:
        row = live[0]
        previous_age = (now - released[0][0]).total_seconds() if released else None
        gap, previous_session = None, None
        if not row.reused:  # a reused hold has reasons of its own; otherwise one indexed query
            previous = session.execute(_PREVIOUS_HOLD, {"number_id": number.id, "now": now,
                                                        "session_id": row.id}).first()
            if previous is not None:
                gap = reassignment_gap(row.assigned_at, previous.released_at, previous.expires_at)
                previous_session = previous.session_id
        confidence, reason, candidates = pool_hold_score(bool(row.reused), previous_age, grace_seconds,
                                                         bool(row.is_bot), gap)
        visit = Visit.from_row(row)
        return replace(_with_visit(base, visit, directory.source_name(visit.source_id)), confidence=confidence,
                       reason=reason, candidates=candidates,
                       other_session_id=previous_session if reason == "held_now_reassigned" else None)
    if not released:
        return replace(base, confidence=POOL_NO_SESSION_CONFIDENCE, reason="pool_no_visit", candidates=0)
    ended, row = released[0]
    confidence = grace_confidence((now - ended).total_seconds(), grace_seconds, len(released))
    if row.is_bot:
        confidence = min(confidence, BOT_CONFIDENCE)
    visit = Visit.from_row(row)
    return replace(_with_visit(base, visit, directory.source_name(visit.source_id)), kind="grace",
                   confidence=confidence, reason="released_recently" if len(released) == 1 else "several_released",
                   candidates=len(released))


def attribute_fallback(session: Executor, directory: Directory, base: Attribution,
                       routes: tuple[FallbackRoute, ...], now: dt.datetime,
                       minutes: int = FALLBACK_WINDOW_MINUTES) -> Attribution:
    """A call on a number pools show when full: the one visit shown it in the last ``minutes``
    gets it at ``FALLBACK_CONFIDENCE``; none or several leave ``base`` (unattributed) with the
    count.  One query, on calls to fallback numbers only."""
    wanted = {(route.pool_id, route.source_id) for route in routes}
    rows = session.execute(_FALLBACK_VISITS, {
        "pools": sorted({route.pool_id for route in routes}), "now": now,
        "since": now - dt.timedelta(minutes=minutes)}).all()
    visits: dict[int, tuple[int, Visit]] = {}
    for row in rows:
        if (row.pool_id, row.source_id) in wanted:
            visits.setdefault(row.id, (row.pool_id, Visit.from_row(row)))
    confidence, reason = fallback_score(len(visits))
    site_id = base.site_id if base.site_id is not None else routes[0].site_id
    if len(visits) != 1:
        return replace(base, site_id=site_id, reason=reason, candidates=len(visits))
    (pool_id, visit), = visits.values()
    site_id = next(route.site_id for route in routes if route.pool_id == pool_id)
    pool_source_id, pool_source_name = directory.pool_sources.get(pool_id, (None, None))
    found = replace(base, kind="fallback", confidence=confidence, site_id=site_id, source_id=pool_source_id,
                    source_name=pool_source_name, reason=reason, candidates=1)
    return _with_visit(found, visit, directory.source_name(visit.source_id))


def caller_history(session: Executor, site_id: int | None, caller: str | None) -> CallerHistory | None:
    if not caller:
        return None
    if site_id is None:
        row = session.execute(_HISTORY_NO_SITE, {"number": caller}).first()
    else:
        row = session.execute(_HISTORY_BY_SITE, {"site_id": site_id, "number": caller}).first()
    if row is None:
        return None
    return CallerHistory(
        profile_id=row.id, last_call_at=row.last_call_at, first_source_id=row.first_source_id,
        first_session_id=row.first_session_id, calls_count=row.calls_count or 0,
        personal_manager_id=row.personal_manager_id, personal_manager_at=row.personal_manager_at,
        is_vip=bool(row.is_vip), tags=tuple(str(t) for t in (row.tags or [])),
    )


def is_repeat(history: CallerHistory | None, site: SiteSettings | None, now: dt.datetime) -> bool:
    """Seen within the attribution window (30 days unless the site says otherwise)."""
    if history is None:
        return False
    window = site.attribution_window_days if site else 30
    return history.last_call_at >= now - dt.timedelta(days=window)


def apply_history(session: Executor, directory: Directory, current: Attribution, history: CallerHistory | None,
                  site: SiteSettings | None, now: dt.datetime) -> tuple[Attribution, bool]:
    """(attribution to store, is_first_call) once the caller's history is taken into account."""
    if not is_repeat(history, site, now):
        return current, True
    model = site.attribution_model if site else "first_touch"
    if model != "first_touch" or history.first_source_id is None:
        return current, False
    name = directory.source_name(history.first_source_id)
    first = replace(current, kind="repeat", confidence=REPEAT_CONFIDENCE, source_id=history.first_source_id,
                    source_name=name, session_id=None, utm_source=None, utm_medium=None, utm_campaign=None,
                    keyword=None, landing_page=None, reason="repeat_first_touch", candidates=1, visit=None)
    if history.first_session_id is not None:
        row = session.execute(_VISIT_BY_ID, {"session_id": history.first_session_id}).first()
        if row is not None:
            first = replace(_with_visit(first, Visit.from_row(row), name), source_id=history.first_source_id,
                            source_name=name)
    return first, False


def wants_lookback(current: Attribution, site: SiteSettings | None) -> bool:
    """Only a last_non_direct site whose winning visit is direct looks further back."""
    return (site is not None and site.attribution_model == "last_non_direct" and current.visit is not None
            and current.kind != "repeat" and is_direct(current.visit, site.domains))


def apply_model(session: Executor, directory: Directory, current: Attribution, site: SiteSettings | None,
                caller: str | None, now: dt.datetime) -> Attribution:
    """last_non_direct: a direct winning visit gives way to the same person's latest advertising
    visit within the attribution window.  At most one indexed query, and none unless the site
    uses the model and the winning visit is direct."""
    if not wants_lookback(current, site):
        return current
    visit = current.visit
    rows = session.execute(_EARLIER_VISITS, {
        "site_id": site.id, "current_id": visit.id, "since": now - dt.timedelta(days=site.attribution_window_days),
        "before": visit.first_seen or now, "visitor_id": visit.visitor_id, "ga": visit.ga_client_id,
        "ym": visit.ym_client_id, "caller": caller}).all()
    earlier = latest_non_direct((Visit.from_row(row) for row in rows), site.domains)
    if earlier is None:
        return current
    found = replace(current, kind="non_direct", confidence=min(current.confidence, LAST_NON_DIRECT_CONFIDENCE),
                    reason="last_non_direct")
    return _with_visit(found, earlier, directory.source_name(earlier.source_id))


@dataclass(frozen=True)
class CallAttribution:
    """A call's attribution with the caller's history it was read with (what the call's record needs)."""

    attribution: Attribution
    history: CallerHistory | None
    is_first_call: bool


def attribute_call(session: Executor, directory: Directory, did: str | None, caller: str | None,
                   now: dt.datetime, grace_seconds: int) -> CallAttribution:
    """The whole attribution of a new call: the number, the caller's history, the site's model.

    The one sequence the AGI's inbound route and the simulator both run, so what the simulator
    measures is what a call gets."""
    current = attribute_number(session, directory, did, now, grace_seconds)
    site = directory.sites.get(current.site_id) if current.site_id is not None else None
    history = caller_history(session, current.site_id, caller)
    attribution, first = apply_history(session, directory, current, history, site, now)
    # last_non_direct only: one indexed query when the winning visit is direct, else none
    attribution = apply_model(session, directory, attribution, site, caller, now)
    return CallAttribution(attribution, history, first)


_profiles = CallerProfile.__table__


def _after_call(column: str, when: str, value: str):
    """The column after this call: ``value`` if the flag ``when`` is set, else what it was."""
    kept = _profiles.c[column]
    return case((bindparam(when, type_=Boolean), bindparam(value, type_=kept.type)), else_=kept)


# A constant written into the SQL, not bound: the statement may ride inside another (``agi.store``),
# whose parameters come from the outer statement's caller.
_ONE = literal_column("1", Integer)
# What a call changes in a caller's existing profile.  One fixed statement with the choices as
# bound flags (``profile_write``), so every call binds values only.
_CALL_CHANGES = {
    "last_call_at": bindparam("p_now", type_=_profiles.c.last_call_at.type),
    "calls_count": _profiles.c.calls_count + _ONE,
    "first_call_at": _after_call("first_call_at", "p_first", "p_now"),
    "first_source_id": _after_call("first_source_id", "p_first", "p_source"),
    "first_session_id": _after_call("first_session_id", "p_first", "p_session"),
    "last_source_id": _after_call("last_source_id", "p_last", "p_source"),
    "last_session_id": _after_call("last_session_id", "p_last", "p_session"),
    "name": func.coalesce(_profiles.c.name, bindparam("p_name", type_=_profiles.c.name.type)),
    "personal_manager_id": _after_call("personal_manager_id", "p_personal", "p_sticky"),
    "personal_manager_at": _after_call("personal_manager_at", "p_personal", "p_now"),
}
_FIRST_CALL = {
    "site_id": bindparam("p_site"), "number": bindparam("p_number"), "name": bindparam("p_name"),
    "first_call_at": bindparam("p_now"), "first_source_id": bindparam("p_source"),
    "first_session_id": bindparam("p_session"), "last_call_at": bindparam("p_now"),
    "last_source_id": bindparam("p_source"), "last_session_id": bindparam("p_session"), "calls_count": _ONE,
    "personal_manager_id": bindparam("p_sticky"), "personal_manager_at": bindparam("p_sticky_at"),
    # the columns' own defaults, written out: an INSERT inside another statement gets no
    # Python-side defaults filled in
    "is_vip": false(), "tags": literal_column("'[]'", _profiles.c.tags.type),
}
# The profile read with the history, by id.
_UPDATE_PROFILE = update(_profiles).where(_profiles.c.id == bindparam("p_id")).values(_CALL_CHANGES)
# No history was read: a new profile, or, if a call of the same caller created it meanwhile
# (the same caller on two lines at once), that one changed as the first branch would.
_UPSERT_PROFILE = {
    dialect: make(_profiles).values(_FIRST_CALL).on_conflict_do_update(
        index_elements=[_profiles.c.site_id, _profiles.c.number], set_=_CALL_CHANGES)
    for dialect, make in {"sqlite": sqlite_insert, "postgresql": pg_insert}.items()}
# Every statement ``profile_write`` may return on a dialect (``agi.store`` builds its record from them).
PROFILE_WRITES = {dialect: (upsert, _UPDATE_PROFILE) for dialect, upsert in _UPSERT_PROFILE.items()}


def profile_write(dialect: str, caller: str | None, caller_name: str | None, found: CallAttribution,
                  now: dt.datetime, sticky_id: int | None = None) -> tuple[Executable, dict[str, Any]] | None:
    """The one statement that records a call in its caller's profile (first/last touch, call
    count, personal manager), with its parameters; None for a caller without a number.
    The parameters are named ``p_*``: an INSERT or UPDATE executed with a parameter named
    like one of its table's columns would write that column too.
    The AGI runs it inside the call's own record (``agi.store``); ``record_caller`` alone."""
    if not caller:
        return None
    a, history = found.attribution, found.history
    params = {
        "p_now": now, "p_name": caller_name, "p_source": a.source_id, "p_session": a.session_id,
        "p_first": found.is_first_call,  # outside the attribution window: a new first touch
        "p_last": a.kind != "repeat",
        "p_personal": bool(sticky_id) and (history is None or history.personal_manager_id != sticky_id),
        "p_sticky": sticky_id,
    }
    if history is not None:
        return _UPDATE_PROFILE, {**params, "p_id": history.profile_id}
    return _UPSERT_PROFILE[dialect], {**params, "p_site": a.site_id, "p_number": caller,
                                      "p_sticky_at": now if sticky_id else None}


def record_caller(conn: Connection, caller: str | None, caller_name: str | None, found: CallAttribution,
                  now: dt.datetime, sticky_id: int | None = None) -> None:
    """First/last touch, call count and personal manager of the caller after this call: what the
    next call's ``caller_history`` reads."""
    write = profile_write(conn.dialect.name, caller, caller_name, found, now, sticky_id)
    if write is not None:
        conn.execute(*write)
