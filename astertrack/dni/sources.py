"""Choose the traffic source of a visit and what number it should see.

Pure functions over a snapshot of a site's configuration (``SiteRouting``), so the hot path
of the tracker does not load ORM objects on every request and the rules can be tested
without a database.  A source rule is a list of conditions that must all match::

    [{"field": "utm_source", "op": "equals", "value": "yandex"},
     {"field": "utm_medium", "op": "prefix", "value": "cpc"}]

Sources are tried by ``priority`` (lower first, then id).  A matching static source shows its
own number; a dynamic one hands out a pool number.  No match: the site's default pool, or
the site's default number.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import NumberPool, Site, Source, TrackingNumber

log = logging.getLogger(__name__)

MATCH_FIELDS = (
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
    "gclid", "yclid", "fbclid", "referrer", "referrer_host", "landing_page", "keyword",
)
OPS = ("equals", "contains", "prefix", "regex", "present", "absent")
VALUELESS_OPS = ("present", "absent")  # their ``value`` is ignored
SOURCE_KINDS = ("static", "dynamic")  # a fixed number of its own, or numbers drawn from a pool
# Query parameters search engines put the user's query in (Google q, Yandex text, Bing q,
# Mail.ru q, Yahoo p, Baidu wd, DuckDuckGo q, Rambler query).
_SEARCH_QUERY_PARAMS = ("q", "text", "query", "p", "wd", "searchfor", "etext")
_MAX_MATCH_INPUT = 2048


@dataclass(frozen=True)
class SourceRule:
    id: int
    name: str
    kind: str  # one of SOURCE_KINDS
    channel: str | None
    priority: int
    conditions: tuple[tuple[str, str, str], ...]
    pool_id: int | None
    fallback_number: str | None
    static_number: str | None  # the TrackingNumber bound to a static source


@dataclass(frozen=True)
class SiteRouting:
    """What the tracker needs to know about a site, loaded once and cached briefly."""

    id: int
    public_key: str
    domains: tuple[str, ...]
    display_format: str
    hold_seconds: int
    heartbeat_seconds: int
    hold_cap_seconds: int
    unload_grace_seconds: int
    overflow_policy: str
    lazy_allocation: bool
    replace_selectors: tuple[str, ...]
    replace_numbers: tuple[str, ...]
    default_number: str | None
    default_pool_id: int | None
    sources: tuple[SourceRule, ...] = ()
    pool_fallbacks: Mapping[int, str | None] = field(default_factory=dict)
    adaptive_hold: bool = False  # end stale holds early when the pool runs short (allocation)
    adaptive_free_percent: int = 20  # ... below this share of free numbers


@dataclass(frozen=True)
class Route:
    """The decision for one visit: a pool to draw from, or a fixed number."""

    source: SourceRule | None
    pool_id: int | None
    number: str | None  # fixed number (static source / default), or the fallback when pool_id is set
    kind: str  # static|pool|default


def referrer_host(referrer: str | None) -> str | None:
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def extract_keyword(utm_term: str | None, referrer: str | None) -> str | None:
    """The search phrase: ``utm_term`` first, else the query in a search engine referrer."""
    if utm_term and utm_term.strip():
        return utm_term.strip()
    if not referrer:
        return None
    try:
        query = urlsplit(referrer).query
    except ValueError:
        return None
    params = dict(parse_qsl(query, keep_blank_values=False))
    for name in _SEARCH_QUERY_PARAMS:
        value = params.get(name, "").strip()
        if value:
            return value
    return None


def visit_fields(visit: Mapping[str, Any]) -> dict[str, str]:
    """The values rules match against, lower-cased; derived fields filled in."""
    fields: dict[str, str] = {}
    for name in MATCH_FIELDS:
        value = visit.get(name)
        if isinstance(value, str) and value:
            fields[name] = value[:_MAX_MATCH_INPUT]
    host = referrer_host(visit.get("referrer"))
    if host:
        fields["referrer_host"] = host
    keyword = visit.get("keyword") or extract_keyword(visit.get("utm_term"), visit.get("referrer"))
    if keyword:
        fields["keyword"] = keyword[:_MAX_MATCH_INPUT]
    return fields


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        log.warning("source rule has an invalid regex %r: %s; it never matches", pattern, exc)
        return None


def condition_matches(field_name: str, op: str, value: str, fields: Mapping[str, str]) -> bool:
    actual = fields.get(field_name)
    if op == "present":
        return bool(actual)
    if op == "absent":
        return not actual
    if actual is None:
        return False
    if op == "regex":
        compiled = _compiled(value)
        return bool(compiled and compiled.search(actual))
    actual_l, value_l = actual.lower(), value.lower()
    if op == "equals":
        return actual_l == value_l
    if op == "contains":
        return value_l in actual_l
    if op == "prefix":
        return actual_l.startswith(value_l)
    return False


def parse_conditions(raw: Any) -> tuple[tuple[str, str, str], ...]:
    """Validate a Source.match_rules list; raises ValueError naming the bad entry."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("match rules must be a list of {field, op, value}")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ValueError(f"rule {index}: expected an object, got {type(item).__name__}")
        field_name, op, value = item.get("field"), item.get("op", "equals"), item.get("value", "")
        if field_name not in MATCH_FIELDS:
            raise ValueError(f"rule {index}: unknown field {field_name!r} (known: {', '.join(MATCH_FIELDS)})")
        if op not in OPS:
            raise ValueError(f"rule {index}: unknown op {op!r} (known: {', '.join(OPS)})")
        if not isinstance(value, str):
            value = str(value)
        if op == "regex" and _compiled(value) is None:
            raise ValueError(f"rule {index}: invalid regular expression {value!r}")
        parsed.append((field_name, op, value))
    return tuple(parsed)


def choose_source(sources: tuple[SourceRule, ...], fields: Mapping[str, str]) -> SourceRule | None:
    """First source (by priority) whose conditions all match.  A source with no conditions
    never matches: it is only reachable as a site default or by static number."""
    for source in sources:
        if source.conditions and all(condition_matches(f, op, v, fields) for f, op, v in source.conditions):
            return source
    return None


def route_visit(site: SiteRouting, visit: Mapping[str, Any]) -> Route:
    fields = visit_fields(visit)
    source = choose_source(site.sources, fields)
    if source is not None:
        if source.kind == "dynamic" and source.pool_id is not None:
            fallback = source.fallback_number or site.pool_fallbacks.get(source.pool_id) or site.default_number
            return Route(source, source.pool_id, fallback, "pool")
        return Route(source, None, source.static_number or source.fallback_number or site.default_number, "static")
    if site.default_pool_id is not None:
        fallback = site.pool_fallbacks.get(site.default_pool_id) or site.default_number
        return Route(None, site.default_pool_id, fallback, "pool")
    return Route(None, None, site.default_number, "default")


def load_site_routing(session: Session, public_key: str) -> SiteRouting | None:
    site = session.scalar(select(Site).where(Site.public_key == public_key))
    if site is None or site.archived_at is not None:  # an archived site's snippet shows no numbers
        return None
    return build_site_routing(session, site)


def build_site_routing(session: Session, site: Site) -> SiteRouting:
    static_numbers: dict[int, str] = {}
    for source_id, number in session.execute(
        select(TrackingNumber.source_id, TrackingNumber.number)
        .where(TrackingNumber.site_id == site.id, TrackingNumber.enabled.is_(True),
               TrackingNumber.archived_at.is_(None),
               TrackingNumber.source_id.is_not(None), TrackingNumber.pool_id.is_(None))
        .order_by(TrackingNumber.id)
    ):
        static_numbers.setdefault(source_id, number)
    # archived pools hand out nothing: their sources fall back to a fixed number
    pools = {pool_id: fallback for pool_id, fallback in session.execute(
        select(NumberPool.id, NumberPool.fallback_number)
        .where(NumberPool.site_id == site.id, NumberPool.archived_at.is_(None)))}
    rules = []
    for source in session.scalars(
        select(Source).where(Source.site_id == site.id, Source.enabled.is_(True), Source.archived_at.is_(None))
        .order_by(Source.priority, Source.id)
    ):
        try:
            conditions = parse_conditions(source.match_rules)
        except ValueError as exc:
            log.warning("source %s (%s) has bad match rules, skipped: %s", source.id, source.name, exc)
            continue
        rules.append(SourceRule(
            id=source.id, name=source.name, kind=source.kind, channel=source.channel, priority=source.priority,
            conditions=conditions, pool_id=source.pool_id if source.pool_id in pools else None,
            fallback_number=source.fallback_number,
            static_number=static_numbers.get(source.id),
        ))
    return SiteRouting(
        id=site.id, public_key=site.public_key,
        domains=tuple(str(d).lower() for d in (site.domains or []) if d),
        display_format=site.display_format,
        hold_seconds=site.hold_seconds, heartbeat_seconds=site.heartbeat_seconds,
        hold_cap_seconds=site.hold_cap_seconds, unload_grace_seconds=site.unload_grace_seconds,
        overflow_policy=site.overflow_policy, lazy_allocation=bool(site.lazy_allocation),
        replace_selectors=tuple(str(s) for s in (site.replace_selectors or []) if s),
        replace_numbers=tuple(str(n) for n in (site.replace_numbers or []) if n),
        default_number=site.default_number,
        default_pool_id=site.default_pool_id if site.default_pool_id in pools else None,
        sources=tuple(rules), pool_fallbacks=pools,
        adaptive_hold=bool(site.adaptive_hold), adaptive_free_percent=site.adaptive_free_percent,
    )
