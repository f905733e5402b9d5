"""Builders of the rows a call-tracking setup starts from: sites, pools, numbers, sources, managers, rules.

The demo data set, the tests, the benchmarks and the lab checks all build on these, so a
schema change is made here once.  Each builder adds its rows and flushes (ids are known
afterwards) but does not commit: the caller says when its data set is whole.  Keyword
defaults give a working row; every other model field passes through as a keyword, so a
caller states only what its scenario is about.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from astertrack.db.models import Manager, ManagerGroup, NumberPool, RoutingRule, Site, Source, TrackingNumber

FALLBACK_NUMBER = "+74957770000"  # what a visitor sees when the pool is exhausted
DEFAULT_NUMBER = "+74957770001"  # what a site shows when it has no pool at all

_site_index = itertools.count(1)


def add_site(session: Session, name: str = "Shop", **fields: Any) -> Site:
    site = Site(name=name, **fields)
    session.add(site)
    session.flush()
    return site


def add_numbers(session: Session, site: Site, numbers: Iterable[str], *, pool: NumberPool | None = None,
                source: Source | None = None, labels: Iterable[str | None] | None = None) -> list[TrackingNumber]:
    """Tracking numbers of a pool (dynamic) or of a source (static)."""
    numbers = list(numbers)
    labels = list(labels) if labels is not None else [None] * len(numbers)
    rows = [TrackingNumber(number=number, site_id=site.id, pool_id=pool.id if pool else None,
                           source_id=source.id if source else None, label=label)
            for number, label in zip(numbers, labels, strict=True)]
    session.add_all(rows)
    session.flush()
    return rows


def number_range(first: str, count: int) -> list[str]:
    """``count`` consecutive E.164 numbers from ``first``: the block a carrier hands out."""
    base = int(first.lstrip("+"))
    return [f"+{base + i}" for i in range(count)]


def add_pool(session: Session, site: Site, name: str = "main", numbers: Iterable[str] = (), *,
             labels: Iterable[str | None] | None = None, default: bool = False, **fields: Any) -> NumberPool:
    """A number pool with its numbers; ``default=True`` makes it the pool the site's visitors draw from."""
    pool = NumberPool(site_id=site.id, name=name, **fields)
    session.add(pool)
    session.flush()
    if default:
        site.default_pool_id = pool.id
    add_numbers(session, site, numbers, pool=pool, labels=labels)
    return pool


def add_static_source(session: Session, site: Site, name: str, numbers: Iterable[str] = (), *,
                      label: str | None = None, **fields: Any) -> Source:
    """A source that owns its numbers (a billboard, a radio spot): a call to one of them is that source's."""
    source = Source(site_id=site.id, name=name, kind="static", **fields)
    session.add(source)
    session.flush()
    numbers = list(numbers)
    add_numbers(session, site, numbers, source=source, labels=[label] * len(numbers))
    return source


def add_dynamic_source(session: Session, site: Site, name: str, pool: NumberPool | None, **fields: Any) -> Source:
    """A source whose visitors are handed numbers from ``pool`` (ads, search): the visit says who called."""
    source = Source(site_id=site.id, name=name, kind="dynamic", pool_id=pool.id if pool else None, **fields)
    session.add(source)
    session.flush()
    return source


def add_managers(session: Session, extensions: Iterable[str], *, tech: str = "PJSIP",
                 names: Iterable[str] | None = None, **fields: Any) -> list[Manager]:
    """One manager per extension, endpoint ``tech/extension``, named "Manager <extension>" unless ``names``.

    ``fields`` apply to every manager (a copy each, so no two rows share a schedule dict) and
    may override the defaults, e.g. ``extension=None``.
    """
    extensions = [str(extension) for extension in extensions]
    names = list(names) if names is not None else [f"Manager {extension}" for extension in extensions]
    rows = [Manager(**{"name": name, "endpoint": f"{tech}/{extension}", "extension": extension,
                       **copy.deepcopy(fields)})
            for extension, name in zip(extensions, names, strict=True)]
    session.add_all(rows)
    session.flush()
    return rows


def add_group(session: Session, name: str, managers: Iterable[Manager], **fields: Any) -> ManagerGroup:
    group = ManagerGroup(name=name, managers=list(managers), **fields)
    session.add(group)
    session.flush()
    return group


def add_rule(session: Session, name: str, group: ManagerGroup | None = None, *, site: Site | None = None,
             priority: int = 100, **fields: Any) -> RoutingRule:
    """A routing rule; without ``site`` it applies to calls of every site."""
    rule = RoutingRule(site_id=site.id if site else None, name=name, priority=priority,
                       group_id=group.id if group else None, **fields)
    session.add(rule)
    session.flush()
    return rule


def add_did_route(session: Session, source: Source, did: str, managers: Sequence[Manager], *,
                  group_name: str | None = None, queue_name: str | None = None, rule_name: str | None = None,
                  priority: int = 10, **rule_fields: Any) -> RoutingRule:
    """A DID of a static source that rings its own group: one number, one group, one global rule.

    How the lab checks wire each number to the phones that must answer it.
    """
    group = add_group(session, group_name or f"group {did}", managers, queue_name=queue_name)
    add_numbers(session, source.site, [did], source=source)
    return add_rule(session, rule_name or f"did-{did[-3:]}", group, priority=priority, match={"dids": [did]},
                    **rule_fields)


def pool_number(site_index: int, i: int) -> str:
    """+7 49S SSS NNNN: unique per site (up to 10,000 per process) and position in its pool."""
    return f"+749{site_index % 10000:04d}{i:04d}"


def pooled_site(session: Session, pool_size: int = 5, *, name: str | None = None, first_number: str | None = None,
                domains: Iterable[str] = ("127.0.0.1", "localhost"), replace_numbers: Iterable[str] = ("+74950000000",),
                selectors: Iterable[str] = (".phone",), hold: int = 600, heartbeat: int = 60, cap: int = 3600,
                grace: int = 120, policy: str = "fallback", lazy: bool = False,
                display_format: str = "+7 (XXX) XXX-XX-XX", with_default_pool: bool = True,
                commit: bool = True, **fields: Any) -> Site:
    """A site the tracker can serve at once: a pool of ``pool_size`` numbers with the fallback number.

    Numbers run from ``first_number`` (default: a block unique to this site in this process).
    Committed unless ``commit=False``: the tracker under test reads it over its own connection.
    """
    index = next(_site_index)
    site = add_site(session, name or f"site {index}", domains=list(domains), default_number=DEFAULT_NUMBER,
                    display_format=display_format, hold_seconds=hold, heartbeat_seconds=heartbeat,
                    hold_cap_seconds=cap, unload_grace_seconds=grace, overflow_policy=policy,
                    lazy_allocation=lazy, replace_numbers=list(replace_numbers), replace_selectors=list(selectors),
                    **fields)
    add_pool(session, site, "main", number_range(first_number or pool_number(index, 0), pool_size),
             fallback_number=FALLBACK_NUMBER, default=with_default_pool)
    if commit:
        session.commit()
    return site
