"""Pool health: is each number pool big enough for its traffic?

A pool that is too small silently ruins attribution (two visitors on one number, or
fallback numbers that say nothing).  We measure concurrency exactly from the assignments
(each hold is an interval from ``assigned_at`` to its release or expiry), report the peak
and the time-weighted 95th percentile, count overflows, and recommend a size:

* measured: ``ceil((p95 + overflow demand) × (1 + margin))``, never below the peak plus the
  overflow demand.  Overflow demand is Little's law on the visitors we turned away:
  overflows in the busiest hour × mean hold length in hours.
* rule of thumb, shown next to it: ``visits per day ÷ 100 + 1``.

Drained pools are shown apart from small ones: ``refused`` counts the pool numbers refused to
a client that already held its share or sent no browser Origin (``allocation.REFUSALS``; not
demand, so left out of the overflows and the recommendation), ``unconfirmed`` the holds that
saw neither a heartbeat nor an interaction (a bot, a drain script, or a visitor gone within the
first heartbeat), and ``clients`` the addresses that held or were refused more than one number.
``adaptive_ended`` counts the holds the adaptive hold ended early while the pool was short
(``release_reason`` ``adaptive``), and ``adaptive_share`` their share of the holds that ended in
the window: often means the pool is too small even after abandoned tabs are reclaimed.

``sample_pools`` writes ``PoolUsageSample`` rows (live holds and pool size per minute) for
utilisation charts; the tracker's maintenance thread calls it, and so can cron via
``astertrack pool-health --sample``.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import case, func, or_, select, text
from sqlalchemy.orm import Session

from astertrack.db.models import (
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    PoolUsageSample,
    TrackingNumber,
    VisitorSession,
)
from astertrack.dni.allocation import ADAPTIVE, OVERFLOW_POLICIES, REFUSALS, live_count

DEFAULT_MARGIN = 0.25
TIGHT_UTILISATION = 0.75  # Call Dynamics' "add numbers above 75 %"
TOP_CLIENTS = 5


@dataclass
class PoolHealth:
    pool_id: int
    site_id: int
    name: str
    size: int
    since: dt.datetime
    until: dt.datetime
    live_now: int
    peak: int
    p95: int
    mean_concurrency: float
    p95_utilisation: float
    overflow_count: int
    assignments: int
    never_heartbeat: int  # holds that never saw a heartbeat: bots or visitors who left at once
    mean_hold_minutes: float
    visits_per_day: float
    rule_of_thumb: int
    recommended: int
    status: str  # ok|tight|exhausted|idle
    refused: dict[str, int] = field(default_factory=dict)  # reason (allocation.REFUSALS) -> count
    unconfirmed: int = 0  # holds with no heartbeat and no interaction
    clients: list[dict[str, Any]] = field(default_factory=list)  # {"ip", "holds", "refused"}, busiest first
    hourly: list[dict[str, Any]] = field(default_factory=list)  # {"hour", "peak", "mean", "overflows"}
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"at", "live", "size"}
    adaptive_ended: int = 0  # holds ended early under pool pressure (adaptive hold)
    adaptive_share: float = 0.0  # ... of the holds released in the window

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("since", "until"):
            data[key] = data[key].isoformat()
        for sample in data["samples"]:
            sample["at"] = sample["at"].isoformat()
        for bucket in data["hourly"]:
            bucket["hour"] = bucket["hour"].isoformat()
        return data


def rule_of_thumb(visits_per_day: float) -> int:
    """The common starting point: one number per hundred daily visits, plus one."""
    return math.ceil(visits_per_day / 100 + 1)


def recommend(p95: int, peak: int, overflow_demand: float, margin: float = DEFAULT_MARGIN) -> int:
    demand = p95 + overflow_demand
    return max(1, math.ceil(demand * (1 + margin)), math.ceil(peak + overflow_demand))


def _intervals(db: Session, pool_id: int, since: dt.datetime, until: dt.datetime, now: dt.datetime):
    """[(start, end, last heartbeat, session id, session interacted, session address)]."""
    na, tn, vs = NumberAssignment, TrackingNumber, VisitorSession
    rows = db.execute(
        select(na.assigned_at, na.released_at, na.expires_at, na.last_heartbeat_at, na.session_id,
               vs.interacted, vs.ip)
        .join(tn, tn.id == na.number_id)
        .join(vs, vs.id == na.session_id)
        .where(tn.pool_id == pool_id, na.assigned_at < until,
               or_(na.released_at.is_(None), na.released_at > since))
    ).all()
    intervals = []
    for assigned, released, expires, heartbeat, session_id, interacted, ip in rows:
        end = released if released is not None else min(expires, now)
        intervals.append((assigned, end, heartbeat, session_id, interacted, ip))
    return intervals


def _timeline(intervals, since: dt.datetime, until: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """Concurrency as a step function: [(time, level from this time on)], clipped to the window."""
    deltas: dict[dt.datetime, int] = defaultdict(int)
    level = 0
    for start, end, *_ in intervals:
        if end <= since or start >= until or end <= start:
            continue
        if start <= since:
            level += 1
        else:
            deltas[start] += 1
        if end < until:
            deltas[end] -= 1
    steps = [(since, level)]
    for at in sorted(deltas):
        level += deltas[at]
        steps.append((at, level))
    return steps


def _weighted_stats(steps, until: dt.datetime) -> tuple[int, int, float]:
    """(peak, time-weighted 95th percentile, mean) of a step function."""
    durations: dict[int, float] = defaultdict(float)
    peak = 0
    for (at, level), nxt in zip(steps, [*steps[1:], (until, None)], strict=True):
        seconds = (nxt[0] - at).total_seconds()
        if seconds > 0:
            durations[level] += seconds
            peak = max(peak, level)
    total = sum(durations.values())
    if total <= 0:
        return 0, 0, 0.0
    mean = sum(level * secs for level, secs in durations.items()) / total
    running = 0.0
    p95 = 0
    for level in sorted(durations):
        running += durations[level]
        p95 = level
        if running >= 0.95 * total:
            break
    return peak, p95, mean


def _hourly(steps, until: dt.datetime, overflow_times: list[dt.datetime]) -> list[dict[str, Any]]:
    buckets: dict[dt.datetime, dict[str, float]] = {}

    def bucket(at: dt.datetime) -> dict[str, float]:
        hour = at.replace(minute=0, second=0, microsecond=0)
        return buckets.setdefault(hour, {"peak": 0, "level_seconds": 0.0, "seconds": 0.0, "overflows": 0})

    for (at, level), nxt in zip(steps, [*steps[1:], (until, None)], strict=True):
        cursor = at
        while cursor < nxt[0]:
            hour_end = cursor.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
            stop = min(hour_end, nxt[0])
            b = bucket(cursor)
            secs = (stop - cursor).total_seconds()
            b["peak"] = max(b["peak"], level)
            b["level_seconds"] += level * secs
            b["seconds"] += secs
            cursor = stop
    for at in overflow_times:
        bucket(at)["overflows"] += 1
    return [{"hour": hour, "peak": int(b["peak"]),
             "mean": round(b["level_seconds"] / b["seconds"], 2) if b["seconds"] else 0.0,
             "overflows": int(b["overflows"])}
            for hour, b in sorted(buckets.items())]


def _adaptive_ends(db: Session, pool_id: int, since: dt.datetime, until: dt.datetime) -> tuple[int, float]:
    """(holds the adaptive hold ended early, their share of all holds released) in the window."""
    na, tn = NumberAssignment, TrackingNumber
    released, adaptive = db.execute(
        select(func.count(), func.coalesce(func.sum(case((na.release_reason == ADAPTIVE, 1), else_=0)), 0))
        .select_from(na).join(tn, tn.id == na.number_id)
        .where(tn.pool_id == pool_id, na.released_at >= since, na.released_at < until)).one()
    return int(adaptive), round(adaptive / released, 3) if released else 0.0


def pool_health(db: Session, pool: NumberPool, since: dt.datetime, until: dt.datetime, now: dt.datetime,
                margin: float = DEFAULT_MARGIN) -> PoolHealth:
    size = db.scalar(select(func.count()).select_from(TrackingNumber)
                     .where(TrackingNumber.pool_id == pool.id, TrackingNumber.enabled.is_(True))) or 0
    intervals = _intervals(db, pool.id, since, until, now)
    steps = _timeline(intervals, since, until)
    peak, p95, mean = _weighted_stats(steps, until)
    event_rows = db.execute(select(OverflowEvent.occurred_at, OverflowEvent.session_id, OverflowEvent.policy,
                                   VisitorSession.ip)
                            .outerjoin(VisitorSession, VisitorSession.id == OverflowEvent.session_id)
                            .where(OverflowEvent.pool_id == pool.id, OverflowEvent.occurred_at >= since,
                                   OverflowEvent.occurred_at < until)).all()
    overflow_rows = [row for row in event_rows if row.policy in OVERFLOW_POLICIES]
    refusal_rows = [row for row in event_rows if row.policy in REFUSALS]
    overflow_times = [row[0] for row in overflow_rows]
    hourly = _hourly(steps, until, overflow_times)
    in_window = [i for i in intervals if i[0] >= since]
    holds = [(end - start).total_seconds() for start, end, *_ in in_window if end > start]
    mean_hold_minutes = (sum(holds) / len(holds) / 60) if holds else 0.0
    never_heartbeat = sum(1 for start, _, heartbeat, *_ in in_window if heartbeat <= start)
    unconfirmed = sum(1 for start, _, heartbeat, _, interacted, _ in in_window
                      if heartbeat <= start and not interacted)
    sessions = {i[3] for i in in_window} | {row[1] for row in overflow_rows if row[1] is not None}
    days = max((until - since).total_seconds() / 86400, 1 / 24)
    visits_per_day = len(sessions) / days
    busiest_hour_overflows = max((b["overflows"] for b in hourly), default=0)
    overflow_demand = busiest_hour_overflows * (mean_hold_minutes / 60 if mean_hold_minutes else 0.25)
    samples = [{"at": at, "live": live, "size": sample_size} for at, live, sample_size in db.execute(
        select(PoolUsageSample.sampled_at, PoolUsageSample.live, PoolUsageSample.size)
        .where(PoolUsageSample.pool_id == pool.id, PoolUsageSample.sampled_at >= since,
               PoolUsageSample.sampled_at <= until).order_by(PoolUsageSample.sampled_at))]
    p95_utilisation = (p95 / size) if size else 0.0
    adaptive_ended, adaptive_share = _adaptive_ends(db, pool.id, since, until)
    if overflow_times:
        status = "exhausted"
    elif not intervals:
        status = "idle"
    elif p95_utilisation >= TIGHT_UTILISATION:
        status = "tight"
    else:
        status = "ok"
    return PoolHealth(
        pool_id=pool.id, site_id=pool.site_id, name=pool.name, size=size, since=since, until=until,
        live_now=live_count(db, pool.id, now), peak=peak, p95=p95, mean_concurrency=round(mean, 3),
        p95_utilisation=round(p95_utilisation, 3), overflow_count=len(overflow_times),
        assignments=len(in_window), never_heartbeat=never_heartbeat, mean_hold_minutes=round(mean_hold_minutes, 2),
        visits_per_day=round(visits_per_day, 1), rule_of_thumb=rule_of_thumb(visits_per_day),
        recommended=recommend(p95, peak, overflow_demand, margin), status=status, hourly=hourly, samples=samples,
        refused={reason: n for reason in REFUSALS if (n := sum(1 for row in refusal_rows if row.policy == reason))},
        unconfirmed=unconfirmed, clients=_busy_clients(in_window, refusal_rows),
        adaptive_ended=adaptive_ended, adaptive_share=adaptive_share,
    )


def _busy_clients(in_window, refusal_rows) -> list[dict[str, Any]]:
    """The addresses that held or were refused more than one number in the window, busiest first."""
    by_ip: dict[str, dict[str, Any]] = {}
    for *_, ip in in_window:
        if ip:
            by_ip.setdefault(ip, {"ip": ip, "holds": 0, "refused": 0})["holds"] += 1
    for row in refusal_rows:
        if row.ip:
            by_ip.setdefault(row.ip, {"ip": row.ip, "holds": 0, "refused": 0})["refused"] += 1
    busy = [c for c in by_ip.values() if c["holds"] + c["refused"] > 1]
    busy.sort(key=lambda c: (-(c["holds"] + c["refused"]), c["ip"]))
    return busy[:TOP_CLIENTS]


def all_pools_health(db: Session, since: dt.datetime, until: dt.datetime, now: dt.datetime,
                     site_id: int | None = None, pool_id: int | None = None,
                     margin: float = DEFAULT_MARGIN) -> list[PoolHealth]:
    query = select(NumberPool).order_by(NumberPool.site_id, NumberPool.id)
    if site_id is not None:
        query = query.where(NumberPool.site_id == site_id)
    if pool_id is not None:
        query = query.where(NumberPool.id == pool_id)
    return [pool_health(db, pool, since, until, now, margin) for pool in db.scalars(query)]


_SAMPLER_LOCK_KEY = zlib.crc32(b"astertrack.poolhealth.sample")  # the key of every release: kept when the module moved


def sample_pools(db: Session, now: dt.datetime, min_interval_seconds: int = 60) -> int:
    """Write one PoolUsageSample per pool unless one was written in the last interval.
    Safe to call from every tracker worker: on PostgreSQL one sampler runs at a time."""
    if db.get_bind().dialect.name == "postgresql":
        if not db.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _SAMPLER_LOCK_KEY}).scalar():
            return 0
    threshold = now - dt.timedelta(seconds=min_interval_seconds * 0.9)
    last = dict(db.execute(select(PoolUsageSample.pool_id, func.max(PoolUsageSample.sampled_at))
                           .group_by(PoolUsageSample.pool_id)).all())
    sizes = dict(db.execute(select(TrackingNumber.pool_id, func.count())
                            .where(TrackingNumber.pool_id.is_not(None), TrackingNumber.enabled.is_(True))
                            .group_by(TrackingNumber.pool_id)).all())
    written = 0
    for pool_id in db.scalars(select(NumberPool.id)):
        if last.get(pool_id) is not None and last[pool_id] > threshold:
            continue
        db.add(PoolUsageSample(pool_id=pool_id, sampled_at=now, live=live_count(db, pool_id, now),
                               size=sizes.get(pool_id, 0)))
        written += 1
    db.flush()
    return written


def render_table(reports: list[PoolHealth]) -> str:
    """Plain-text table for the CLI."""
    if not reports:
        return "no number pools"
    headers = ("site", "pool", "size", "live", "peak", "p95", "p95 util", "overflows", "refused", "unconfirmed",
               "visits/day", "rule of thumb", "recommended", "status", "ended early")
    rows = [(str(r.site_id), f"{r.pool_id} {r.name}"[:30], str(r.size), str(r.live_now), str(r.peak), str(r.p95),
             f"{r.p95_utilisation:.0%}", str(r.overflow_count), str(sum(r.refused.values())), str(r.unconfirmed),
             f"{r.visits_per_day:g}", str(r.rule_of_thumb), str(r.recommended), r.status,
             f"{r.adaptive_ended} ({r.adaptive_share:.0%})") for r in reports]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    since, until = reports[0].since, reports[0].until
    lines.append(f"window {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC; recommended = p95 concurrency "
                 f"plus turned-away demand, with margin; rule of thumb = visits per day / 100 + 1; refused = "
                 f"numbers refused to a client over its share or without a browser Origin; unconfirmed = holds "
                 f"with no heartbeat and no interaction; ended early = holds of visitors "
                 f"who stopped sending heartbeats, ended while the pool was short (adaptive hold)")
    for r in reports:
        for client in r.clients:
            lines.append(f"pool {r.pool_id}: client {client['ip']} held {client['holds']}, "
                         f"refused {client['refused']}")
    return "\n".join(lines)
