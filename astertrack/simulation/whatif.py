"""Pool health's "what if": expected accuracy of one pool at other sizes, from the site's own traffic.

Why bounded: the admin waits for the page, so the simulated time is cut to a budget of simulated
visits over all sizes (``VISIT_BUDGET``, a few seconds of work); a short run simulates the
site's working day (from 08:00 local), not its quiet night.  The page says how many calls each
figure rests on, so a noisy figure reads as one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from astertrack.db.models import NumberPool, Site, TrackingNumber
from astertrack.simulation.fit import FitReport, fit_model
from astertrack.simulation.generate import DEFAULT_START, generate
from astertrack.simulation.model import ProductSettings
from astertrack.simulation.run import simulate
from astertrack.simulation.score import score

VISIT_BUDGET = 3000  # simulated visits over all sizes of one page
MAX_DAYS = 2.0
MIN_DAYS = 0.1
MAX_SIZES = 8  # sizes simulated for one page (typed ones included)
MAX_TYPED = 4
MAX_SIZE = 500
FIT_DAYS = 28


@dataclass(frozen=True)
class WhatIf:
    pool_id: int
    current: int
    recommended: int | None
    fit: FitReport
    days: float
    rows: list[dict[str, Any]]  # per size: size, accuracy, accuracy_all, calls, counts..., marks

    def as_dict(self) -> dict[str, Any]:
        return {"pool_id": self.pool_id, "current": self.current, "recommended": self.recommended,
                "days": self.days, "fit": self.fit.as_dict(), "rows": self.rows}


def parse_sizes(raw: str | None) -> tuple[list[int], str | None]:
    """Sizes an admin typed ("5, 8 12"): (sizes, error or None); at most MAX_TYPED, each 1..MAX_SIZE."""
    if not raw or not raw.strip():
        return [], None
    parts = raw.replace(",", " ").replace(";", " ").split()
    if len(parts) > MAX_TYPED:
        return [], f"at most {MAX_TYPED} sizes"
    sizes = []
    for part in parts:
        if not part.isdigit() or len(part) > 4 or not 1 <= int(part) <= MAX_SIZE:
            return [], f"each size is a whole number from 1 to {MAX_SIZE}"
        sizes.append(int(part))
    return sorted(set(sizes)), None


def chart_sizes(current: int, recommended: int | None, typed: list[int]) -> list[int]:
    """The sizes to simulate: the current, recommended and typed ones, filled with a spread up to
    a third beyond the largest, MAX_SIZES in all."""
    wanted = {current, *typed} | ({recommended} if recommended else set())
    top = max(max(wanted) * 4 // 3, 3)
    step = max(1, top // max(1, MAX_SIZES - len(wanted)))
    size = step
    while len(wanted) < MAX_SIZES and size <= top:
        wanted.add(size)
        size += step
    return sorted(s for s in wanted if 1 <= s <= MAX_SIZE)[:MAX_SIZES]


def pool_size(session: Session, pool_id: int) -> int:
    return session.scalar(select(func.count()).select_from(TrackingNumber)
                          .where(TrackingNumber.pool_id == pool_id, TrackingNumber.enabled.is_(True))) or 0


def what_if(session: Session, pool: NumberPool, now: dt.datetime, typed: list[int], recommended: int | None,
            release_grace_seconds: int = 900, seed: int = 1) -> WhatIf:
    """Accuracy of ``pool`` at its current size, the recommended one and ``typed`` ones."""
    site = session.get(Site, pool.site_id)
    fit = fit_model(session, site.id, now - dt.timedelta(days=FIT_DAYS), now)
    current = pool_size(session, pool.id)
    sizes = chart_sizes(max(current, 1), recommended, typed)
    days = max(MIN_DAYS, min(MAX_DAYS, VISIT_BUDGET / (len(sizes) * max(fit.model.visits_per_day, 1.0))))
    base = ProductSettings(pool_size=max(current, 1), hold_seconds=site.hold_seconds,
                           heartbeat_seconds=site.heartbeat_seconds, hold_cap_seconds=site.hold_cap_seconds,
                           unload_grace_seconds=site.unload_grace_seconds, release_grace_seconds=release_grace_seconds,
                           adaptive_hold=bool(site.adaptive_hold), adaptive_free_percent=site.adaptive_free_percent,
                           overflow_policy=site.overflow_policy)
    start = DEFAULT_START + (dt.timedelta(hours=8) if days < 1 else dt.timedelta(0))
    traffic = generate(fit.model, base, days, seed, start=start)
    rows = []
    for size in sizes:
        settings = ProductSettings(**{**base.as_dict(), "pool_size": size})
        _, result = simulate(fit.model, settings, days, seed, traffic=traffic)
        found = score(traffic, result)
        rows.append({"size": size, "accuracy": found.accuracy, "accuracy_all": found.accuracy_all,
                     "calls": found.calls, "pool_calls": found.pool_calls, **found.counts,
                     "overflows": found.overflows, "current": size == current, "recommended": size == recommended,
                     "typed": size in typed})
    return WhatIf(pool.id, current, recommended, fit, round(days, 2), rows)
