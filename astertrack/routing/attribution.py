"""Where did a call come from?  The dialled number, the visitor session holding it, the caller's history.

* A **static** number belongs to one source: confidence 1.0.
* A **pool** number is shown to one visitor session at a time: the session holding it now
  wins (confidence 1.0, lower for bots).  If nobody holds it, the session that released it
  most recently within the grace period gets it with a lower confidence that falls with the
  time since release, and falls again when several sessions released it within the grace
  period (the caller could have seen any of them).  An assignment past its expiry that the
  sweeper has not released yet counts as released at its expiry.
* A number we do not know is ``unknown``; a site's default number is ``default``.
* A **repeat** caller (seen within the site's attribution window) keeps the first touch's
  source by default (``attribution_model = first_touch``) or takes this call's
  (``last_touch``); either way the call is marked as not the first.

Numbers, sources and sites come from a ``Directory`` snapshot; only the visitor-session and
caller-profile lookups query the database per call.  The scoring is plain functions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from astertrack.db.models import (
    CallerProfile,
    NumberAssignment,
    NumberPool,
    Site,
    Source,
    TrackingNumber,
    VisitorSession,
)

Executor = Session | Connection  # anything with .execute(): the AGI's hot path uses a plain Connection

# A repeat caller within the window keeps the source of their first call, or takes this one's.
ATTRIBUTION_MODELS = ("first_touch", "last_touch")
GRACE_BEST = 0.9  # confidence of a session that released the number a moment ago
GRACE_WORST = 0.5  # ... and at the very end of the grace period
AMBIGUITY_FACTOR = 0.8  # several sessions released the number within the grace period
BOT_CONFIDENCE = 0.5
POOL_NO_SESSION_CONFIDENCE = 0.2
REPEAT_CONFIDENCE = 0.9
GRACE_CANDIDATES = 5


@dataclass(frozen=True)
class Attribution:
    kind: str  # static|dynamic|grace|repeat|default|unknown
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


@dataclass(frozen=True)
class SiteSettings:
    id: int
    timezone: str = "Europe/Moscow"
    attribution_window_days: int = 30
    attribution_model: str = "first_touch"


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
    archived_pools = set(session.scalars(select(NumberPool.id).where(NumberPool.archived_at.is_not(None))))
    names: dict[int, str] = {}
    live_sources: set[int] = set()
    pool_sources: dict[int, tuple[int, str]] = {}
    for row in session.execute(select(Source.id, Source.name, Source.pool_id, Source.enabled, Source.archived_at)
                               .order_by(Source.priority.desc(), Source.id.desc())):
        names[row.id] = row.name
        if row.archived_at is not None:
            continue
        live_sources.add(row.id)
        if row.pool_id is not None and row.enabled and row.pool_id not in archived_pools:
            pool_sources[row.pool_id] = (row.id, row.name)  # written last = lowest priority, then id
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
    for row in session.execute(select(Site.id, Site.timezone, Site.attribution_window_days,
                                      Site.attribution_model, Site.default_number)):
        sites[row.id] = SiteSettings(id=row.id, timezone=row.timezone or "UTC",
                                     attribution_window_days=row.attribution_window_days or 30,
                                     attribution_model=row.attribution_model or "first_touch")
        if row.default_number and row.id not in archived_sites:
            defaults.setdefault(row.default_number, row.id)
    return Directory(numbers, names, pool_sources, sites, defaults)


_VISIT_COLUMNS = (VisitorSession.id, VisitorSession.source_id, VisitorSession.utm_source,
                  VisitorSession.utm_medium, VisitorSession.utm_campaign, VisitorSession.utm_term,
                  VisitorSession.keyword, VisitorSession.landing_page, VisitorSession.is_bot)


# Statements of the per-call lookups, built once: a call only binds values (building and
# cache-keying a statement costs more than running it).
_RECENT_ASSIGNMENTS = (
    select(NumberAssignment.released_at, NumberAssignment.expires_at, *_VISIT_COLUMNS)
    .join(VisitorSession, VisitorSession.id == NumberAssignment.session_id)
    .where(
        NumberAssignment.number_id == bindparam("number_id"),
        NumberAssignment.assigned_at <= bindparam("now"),
        or_(NumberAssignment.released_at.is_(None), NumberAssignment.released_at >= bindparam("released_since")),
    )
    .order_by(NumberAssignment.assigned_at.desc())
    .limit(GRACE_CANDIDATES + 1)
)
_HISTORY_COLUMNS = (CallerProfile.id, CallerProfile.last_call_at, CallerProfile.first_source_id,
                    CallerProfile.first_session_id, CallerProfile.calls_count, CallerProfile.personal_manager_id,
                    CallerProfile.personal_manager_at, CallerProfile.is_vip, CallerProfile.tags)
_HISTORY_BY_SITE = select(*_HISTORY_COLUMNS).where(CallerProfile.site_id == bindparam("site_id"),
                                                   CallerProfile.number == bindparam("number"))
_HISTORY_NO_SITE = select(*_HISTORY_COLUMNS).where(CallerProfile.site_id.is_(None),
                                                   CallerProfile.number == bindparam("number"))
_VISIT_BY_ID = select(*_VISIT_COLUMNS).where(VisitorSession.id == bindparam("session_id"))


def _with_visit(base: Attribution, visit, source_name: str | None) -> Attribution:
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
    )


def attribute_number(session: Executor, directory: Directory, did: str | None, now: dt.datetime,
                     grace_seconds: int) -> Attribution:
    """Attribution of a call to ``did`` (E.164) at ``now``, from numbers, pools and sessions."""
    if not did:
        return UNKNOWN
    number = directory.numbers.get(did)
    if number is None:
        site_id = directory.default_numbers.get(did)
        if site_id is None:
            return UNKNOWN
        return Attribution(kind="default", confidence=0.0, site_id=site_id)
    base = Attribution(kind="static", confidence=1.0, site_id=number.site_id, number_id=number.id,
                       source_id=number.source_id, source_name=directory.source_name(number.source_id))
    if number.pool_id is None:
        return base
    pool_source_id, pool_source_name = directory.pool_sources.get(number.pool_id, (None, None))
    base = replace(base, kind="dynamic", source_id=number.source_id or pool_source_id,
                   source_name=base.source_name or pool_source_name)
    recent = session.execute(_RECENT_ASSIGNMENTS, {
        "number_id": number.id, "now": now, "released_since": now - dt.timedelta(seconds=grace_seconds),
    }).all()
    live = [row for row in recent if row.released_at is None and row.expires_at >= now]
    if live:
        visit = live[0]
        confidence = BOT_CONFIDENCE if visit.is_bot else 1.0
        return replace(_with_visit(base, visit, directory.source_name(visit.source_id)), confidence=confidence)
    released = []
    for row in recent:
        ended = row.released_at or row.expires_at
        if ended <= now and (now - ended).total_seconds() <= grace_seconds:
            released.append((ended, row))
    if not released:
        return replace(base, confidence=POOL_NO_SESSION_CONFIDENCE)
    released.sort(key=lambda pair: pair[0], reverse=True)
    ended, visit = released[0]
    confidence = grace_confidence((now - ended).total_seconds(), grace_seconds, len(released))
    if visit.is_bot:
        confidence = min(confidence, BOT_CONFIDENCE)
    return replace(_with_visit(base, visit, directory.source_name(visit.source_id)), kind="grace",
                   confidence=confidence)


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
                    keyword=None, landing_page=None)
    if history.first_session_id is not None:
        visit = session.execute(_VISIT_BY_ID, {"session_id": history.first_session_id}).first()
        if visit is not None:
            first = replace(_with_visit(first, visit, name), source_id=history.first_source_id, source_name=name)
    return first, False
