"""Fit the traffic model from a site's stored sessions and calls.

Why: "what if" is only worth asking of the site's own traffic.  Every parameter is a plain
estimate from the rows (counts, shares, the log-normal's mean and spread of the logarithm);
what the rows cannot say (heartbeat behaviours, cookie loss, sources' weights beyond the
visits' own) keeps its default, and the report says which.  Tolerances on a synthetic history
of a few thousand visits: ``model.TOLERANCES`` (tests/simulation/test_fit.py).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Site, Source, VisitorSession
from astertrack.simulation.model import DEFAULT_DAILY, DEFAULT_WEEKLY, TrafficModel

DURING_SLACK = dt.timedelta(seconds=90)  # a call this soon after the last heartbeat was made during the visit
AFTER_LIMIT = dt.timedelta(hours=6)  # later than this: a number written down
MAX_ROWS = 200_000  # sessions read at most (the newest): the admin's page stays bounded
MIN_SESSIONS = 20  # fewer: the defaults are kept and the report says so


@dataclass
class FitReport:
    model: TrafficModel
    sessions: int
    calls: int
    days: float
    fitted: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)  # parameters the rows could not say

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model.as_dict(), "sessions": self.sessions, "calls": self.calls,
                "days": round(self.days, 2), "fitted": self.fitted, "defaults": self.defaults}


def _offset_hours(timezone: str | None, at: dt.datetime) -> int:
    try:
        offset = at.astimezone(ZoneInfo(timezone or "UTC")).utcoffset()
    except (KeyError, ValueError):
        return 0
    return round(offset.total_seconds() / 3600) if offset else 0


def _shares(counts: Counter, size: int, fallback: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(counts.values())
    if total == 0:
        return fallback
    return tuple(round(counts.get(i, 0) / total, 5) for i in range(size))


def fit_model(session: Session, site_id: int, since: dt.datetime, until: dt.datetime,
              base: TrafficModel | None = None) -> FitReport:
    """The model of the site's traffic in [since, until)."""
    base = base or TrafficModel()
    site = session.get(Site, site_id)
    offset = _offset_hours(site.timezone if site else None, until)
    rows = session.execute(
        select(VisitorSession.id, VisitorSession.first_seen, VisitorSession.last_seen, VisitorSession.page_views,
               VisitorSession.is_bot, VisitorSession.source_id)
        .where(VisitorSession.site_id == site_id, VisitorSession.first_seen >= since,
               VisitorSession.first_seen < until)
        .order_by(VisitorSession.first_seen.desc()).limit(MAX_ROWS)).all()
    calls = session.execute(
        select(Call.started_at, Call.session_id, Call.is_first_call)
        .where(Call.site_id == site_id, Call.started_at >= since, Call.started_at < until)).all()
    # a site younger than the window: its visits per day over the days it has had visits
    begun = max(since, min((row.first_seen for row in rows), default=since))
    days = max((until - begun).total_seconds() / 86400, 1 / 24)
    report = FitReport(base, len(rows), len(calls), days)
    if len(rows) < MIN_SESSIONS:
        report.defaults = [f"everything: fewer than {MIN_SESSIONS} sessions"]
        return report
    values: dict[str, Any] = {"timezone_offset_hours": offset}
    humans = [row for row in rows if not row.is_bot]
    values["visits_per_day"] = round(len(rows) / days, 2)
    values["bot_share"] = round(1 - len(humans) / len(rows), 4)
    local = [row.first_seen + dt.timedelta(hours=offset) for row in rows]
    values["daily_curve"] = _shares(Counter(at.hour for at in local), 24, DEFAULT_DAILY)
    if days >= 7:
        values["weekly_curve"] = _shares(Counter(at.weekday() for at in local), 7, DEFAULT_WEEKLY)
    else:
        report.defaults.append("weekly_curve")
    logs = [math.log((row.last_seen - row.first_seen).total_seconds()) for row in humans
            if (row.last_seen - row.first_seen).total_seconds() >= 1]
    if len(logs) >= 2:
        mean = sum(logs) / len(logs)
        values["session_median_seconds"] = round(math.exp(mean), 1)
        values["session_sigma"] = round(math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)), 3)
    if humans:
        values["pages_per_visit"] = round(sum(row.page_views or 1 for row in humans) / len(humans), 3)
    by_id = {row.id: row for row in rows}
    first = [call for call in calls if call.is_first_call is not False]
    repeats = [call for call in calls if call.is_first_call is False]
    timed = [(call, by_id[call.session_id]) for call in first if call.session_id in by_id]
    if humans and timed:
        values["caller_share"] = round(min(1.0, len({row.id for _, row in timed}) / len(humans)), 4)
        during = [c for c, row in timed if c.started_at <= row.last_seen + DURING_SLACK]
        after = [(c, row) for c, row in timed
                 if row.last_seen + DURING_SLACK < c.started_at <= row.last_seen + AFTER_LIMIT]
        values["call_during_share"] = round(len(during) / len(timed), 4)
        values["call_after_share"] = round(len(after) / len(timed), 4)
        if after:
            values["call_after_minutes"] = round(
                sum((c.started_at - row.last_seen).total_seconds() for c, row in after) / len(after) / 60, 2)
    if first:
        values["repeat_caller_share"] = round(min(1.0, len(repeats) / len(first)), 4)
    names = dict(session.execute(select(Source.id, Source.name).where(Source.site_id == site_id)).all())
    by_source = Counter(names.get(row.source_id) for row in humans)
    if by_source:
        values["sources"] = tuple((name, round(n / len(humans), 4)) for name, n in sorted(
            by_source.items(), key=lambda item: (-item[1], item[0] or "")))
    report.fitted = sorted(values)
    report.defaults += sorted({"tab_left_open_share", "closed_without_unload_share", "mobile_share",
                               "mobile_suspend_share", "cookie_loss_share", "return_visit_share",
                               "written_down_days", "repeat_after_days"})
    report.model = base.with_values(**values)
    return report
