"""Build sites, pools and sources for tracker tests."""

from __future__ import annotations

import itertools

from astertrack.db.models import NumberPool, Site, Source, TrackingNumber

_counter = itertools.count(1)

FALLBACK = "+74957770000"
DEFAULT = "+74957770001"


def pool_number(site_index: int, i: int) -> str:
    # +7 49S SSS NNNN: unique per site (up to 10,000 per test process) and position
    return f"+749{site_index % 10000:04d}{i:04d}"


def make_site(session, pool_size: int = 5, *, hold: int = 600, heartbeat: int = 60, cap: int = 3600,
              grace: int = 120, policy: str = "fallback", lazy: bool = False, domains=("127.0.0.1", "localhost"),
              display_format: str = "+7 (XXX) XXX-XX-XX", replace_numbers=("+74950000000",),
              selectors=(".phone",), with_default_pool: bool = True) -> Site:
    index = next(_counter)
    site = Site(name=f"site {index}", domains=list(domains), default_number=DEFAULT, display_format=display_format,
                hold_seconds=hold, heartbeat_seconds=heartbeat, hold_cap_seconds=cap, unload_grace_seconds=grace,
                overflow_policy=policy, lazy_allocation=lazy, replace_numbers=list(replace_numbers),
                replace_selectors=list(selectors))
    session.add(site)
    session.flush()
    pool = NumberPool(site_id=site.id, name="main", fallback_number=FALLBACK)
    session.add(pool)
    session.flush()
    for i in range(pool_size):
        session.add(TrackingNumber(number=pool_number(index, i), site_id=site.id, pool_id=pool.id))
    if with_default_pool:
        site.default_pool_id = pool.id
    session.commit()
    return site


def add_static_source(session, site: Site, name: str, rules: list, number: str, priority: int = 10) -> Source:
    source = Source(site_id=site.id, name=name, kind="static", match_rules=rules, priority=priority)
    session.add(source)
    session.flush()
    session.add(TrackingNumber(number=number, site_id=site.id, source_id=source.id))
    session.commit()
    return source


def add_dynamic_source(session, site: Site, name: str, rules: list, size: int, fallback: str,
                       priority: int = 20, first_number: str = "+74997000000") -> tuple[Source, NumberPool]:
    pool = NumberPool(site_id=site.id, name=name)
    session.add(pool)
    session.flush()
    base = int(first_number[1:])
    for i in range(size):
        session.add(TrackingNumber(number=f"+{base + i}", site_id=site.id, pool_id=pool.id))
    source = Source(site_id=site.id, name=name, kind="dynamic", match_rules=rules, priority=priority,
                    pool_id=pool.id, fallback_number=fallback)
    session.add(source)
    session.commit()
    return source, pool
