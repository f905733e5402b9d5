"""The simulated site: one pool shared by the model's sources, in a scratch database or any Session.

Why a scratch database: a simulation writes tens of thousands of sessions and holds; they must
never mix with a site's real data (the admin's "what if" runs beside production).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from astertrack.db import config_revision
from astertrack.db.engine import make_engine
from astertrack.db.models import Base
from astertrack.samples.factories import add_dynamic_source, add_pool, add_site, number_range
from astertrack.simulation.model import ProductSettings, TrafficModel

FIRST_NUMBER = "+74955550000"
FALLBACK_NUMBER = "+74955559999"  # shown when the pool is full


@dataclass(frozen=True)
class SimSite:
    site_id: int
    public_key: str
    pool_id: int
    numbers: tuple[str, ...]
    sources: dict[str | None, int | None]  # utm_source -> Source id (None: organic, the pool's default)


def populate(session: Session, model: TrafficModel, settings: ProductSettings,
             first_number: str = FIRST_NUMBER, fallback_number: str = FALLBACK_NUMBER) -> SimSite:
    """The site, its pool of ``settings.pool_size`` numbers and one dynamic source per utm_source of the
    model, committed.  Organic visits draw from the same pool as the site's default pool."""
    site = add_site(session, "simulated", domains=["shop.example", "127.0.0.1", "localhost"],
                    hold_seconds=settings.hold_seconds, heartbeat_seconds=settings.heartbeat_seconds,
                    hold_cap_seconds=settings.hold_cap_seconds, unload_grace_seconds=settings.unload_grace_seconds,
                    overflow_policy=settings.overflow_policy, lazy_allocation=False,
                    adaptive_hold=settings.adaptive_hold, adaptive_free_percent=settings.adaptive_free_percent)
    numbers = number_range(first_number, settings.pool_size)
    pool = add_pool(session, site, "simulated", numbers, fallback_number=fallback_number, default=True)
    sources: dict[str | None, int | None] = {None: None}
    for priority, (name, _) in enumerate(model.sources):
        if name is None:
            continue
        source = add_dynamic_source(session, site, name, pool, priority=priority + 1,
                                    match_rules=[{"field": "utm_source", "op": "equals", "value": name}])
        sources[name] = source.id
    session.commit()
    return SimSite(site.id, site.public_key, pool.id, tuple(numbers), sources)


def scratch_engine() -> Engine:
    """An empty in-memory SQLite database with the whole schema (one connection, this thread's)."""
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        config_revision.seed(conn)  # idempotent: the counter's row, if create_all left it out
    return engine
