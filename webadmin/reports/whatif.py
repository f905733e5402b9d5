"""Pool health's "what if" (#27): one pool's expected accuracy at other sizes, with the monthly cost.

Reached from the pool-health page; the simulation (``astertrack.simulation.whatif``) is bounded to a
few seconds and its answer kept briefly, so the CSV and JSON exports of what the page showed do not
simulate again.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

from flask import abort, jsonify, render_template, request
from flask_babel import gettext as _

from astertrack.db.models import NumberPool
from astertrack.db.types import utcnow
from astertrack.dni import poolhealth
from astertrack.simulation import whatif
from webadmin.db import get_session
from webadmin.filters import csv_response
from webadmin.reports import bp
from webadmin.security import STAFF, roles_required

try:  # the tracking-costs half of #27; without it the page shows no cost column
    from astertrack.reporting.costs import pool_monthly_cost
except ImportError:  # pragma: no cover - only before the costs module exists
    pool_monthly_cost = None

HEALTH_DAYS = 7  # the recommended size: pool health over the last week
CACHE_SECONDS = 600
CSV_COLUMNS = ["size", "accuracy", "accuracy_all", "calls", "pool_calls", "correct", "right_source", "wrong_source",
               "unattributed", "overflows", "monthly_cost", "current", "recommended", "typed"]
_cache: dict[tuple, tuple[float, whatif.WhatIf]] = {}
_lock = threading.Lock()


def _computed(pool: NumberPool, typed: list[int]) -> whatif.WhatIf:
    key = (pool.id, tuple(typed))
    with _lock:
        hit = _cache.get(key)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    db, now = get_session(), utcnow()
    recommended = poolhealth.pool_health(db, pool, now - dt.timedelta(days=HEALTH_DAYS), now, now).recommended
    found = whatif.what_if(db, pool, now, typed, recommended)
    with _lock:
        for stale in [k for k, (at, _) in _cache.items() if time.monotonic() - at >= CACHE_SECONDS]:
            del _cache[stale]
        _cache[key] = (time.monotonic(), found)
    return found


def _cost(pool_id: int, size: int) -> Decimal | None:
    if pool_monthly_cost is None:
        return None
    return pool_monthly_cost(get_session(), pool_id, size)


@bp.get("/pools/<int:pool_id>/what-if")
@roles_required(*STAFF)
def pool_what_if(pool_id: int):
    pool = get_session().get(NumberPool, pool_id)
    if pool is None or pool.archived_at is not None:
        abort(404)
    raw = request.args.get("sizes", "")[:100]
    typed, error = whatif.parse_sizes(raw)
    found = _computed(pool, typed)
    rows = [{**row, "monthly_cost": _cost(pool.id, row["size"])} for row in found.rows]
    fmt = request.args.get("format")
    if fmt == "csv":
        return csv_response(f"pool-{pool.id}-what-if.csv", CSV_COLUMNS, ([r[c] for c in CSV_COLUMNS] for r in rows))
    if fmt == "json":
        return jsonify({**found.as_dict(), "pool": pool.name,
                        "rows": [{**r, "monthly_cost": None if r["monthly_cost"] is None else str(r["monthly_cost"])}
                                 for r in rows]})
    chart = {"labels": [r["size"] for r in rows],
             "datasets": [{"key": "total", "label": _("Accuracy, %"),
                           "data": [round(r["accuracy"] * 100, 1) for r in rows]},
                          {"key": "all", "label": _("All calls, %"),
                           "data": [round(r["accuracy_all"] * 100, 1) for r in rows]}]}
    daily = found.fit.model.daily_curve
    shape = {"labels": [f"{hour:02d}" for hour in range(24)],
             "datasets": [{"key": "visits", "label": _("Share of a day's visits, %"),
                           "data": [round(w / sum(daily) * 100, 2) for w in daily]}]}
    return render_template("reports/pool_whatif.html", pool=pool, found=found, rows=rows, chart=chart, shape=shape, sizes=raw,
                           error=_("Sizes: at most %(n)d whole numbers from 1 to %(max)d.", n=whatif.MAX_TYPED,
                                   max=whatif.MAX_SIZE) if error else None,
                           costs=pool_monthly_cost is not None)
