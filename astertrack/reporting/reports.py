"""Report queries: pure functions over a SQLAlchemy Session, shared by the web admin and the CLI.

Every number a report shows is defined once here, and ``FORMULAS`` states each definition in
words so the page can print exactly what was counted.  Aggregation happens in SQL (GROUP BY
over the ``ix_calls_*_started`` indexes) so a 30-day report over a million calls stays fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, distinct, func, literal, or_, select, text
from sqlalchemy.orm import Session, aliased, selectinload

from astertrack.db.models import (
    AdCost,
    Call,
    CallbackRequest,
    Deal,
    Enquiry,
    Lead,
    Manager,
    OutboundCall,
    Site,
    Source,
    VisitorSession,
)
from astertrack.reporting import costs as tracking_cost
from astertrack.review.conditions import handled_condition, review_columns, tag_condition


def N_(text: str) -> str:
    """Mark a string for translation extraction without translating it here (core has no Flask)."""
    return text


DEFAULT_TARGET_SECONDS = 30
ANSWERED = "answered"
MISSED_OUTCOMES = ("missed", "busy")

FORMULAS: dict[str, str] = {
    "total": N_("Total: every inbound call that started in the period (in progress included)."),
    "unique": N_("Unique: distinct caller numbers among those calls; hidden numbers are not counted."),
    "target": N_("Target: answered calls whose talk time is at least the site's target threshold "
                 "(Site → target call seconds)."),
    "unique_target": N_("Unique target: distinct caller numbers among target calls."),
    "answered": N_("Answered: the call was bridged to a manager (outcome = answered)."),
    "missed": N_("Missed: the call ended without being answered (no answer, all busy, caller hung up, "
                 "queue abandon or timeout)."),
    "answer_rate": N_("Answer rate = answered ÷ (answered + missed); calls in progress are left out."),
    "first_time": N_("First-time: the caller's number had never called this site before this call."),
    "repeat": N_("Repeat: the caller's number had called this site before."),
    "avg_wait": N_("Average wait: seconds from the call's start until answer or hang-up, averaged over calls "
                   "that have a wait time."),
    "avg_talk": N_("Average talk: seconds from answer to hang-up, averaged over answered calls."),
    "called_back": N_("Called back: a later answered call with the same number: the client called again and got "
                      "through, astertrack's callback connected, or a manager's outbound call to that number."),
    "callback_delay": N_("Time to call back: from the missed call's start to the start of the first such call."),
    "routed": N_("Routed: calls the router offered to this manager first."),
    "manager_answered": N_("Answered by manager: calls this manager picked up (whoever they were routed to)."),
    "manager_missed": N_("Missed by manager: routed to this manager and not answered by them."),
    "sessions": N_("Sessions: website visits (bots excluded) that started in the period with this source."),
    "leads": N_("Leads: customers whose first enquiry (a call, a web form, a callback request) falls in the period, "
                "counted once however often they came back, by that first enquiry's source; leads merged into "
                "another are not counted."),
    "unique_leads": N_("Unique leads: distinct leads with at least one enquiry in the period through this row "
                       "(a returning customer counts once per row)."),
    "deals": N_("Deals: won deals of those leads."),
    "revenue": N_("Revenue: sum of won deals' revenue."),
    "cost": N_("Ad cost: imported ad costs (source, day, amount) for days in the period."),
    "roi": N_("ROI (ROMI) = (revenue − ad cost) ÷ ad cost × 100 %; empty when there is no cost."),
    "cost_per_call": N_("Cost per call = ad cost ÷ calls; cost per lead = ad cost ÷ leads."),
    "tracking_cost": N_("Tracking cost: the numbers' rent (a number-month, pro rata for part of a month; a pool's "
                        "rent shared over the sources by their calls on the pool) plus the calls' minutes (talk "
                        "time of each answered call rounded up to whole minutes, as carriers bill) × the per-minute "
                        "price. Prices: a number's own, else its pool's."),
    "cost_per_call_tracking": N_("With tracking: (ad cost + tracking cost) ÷ calls; ÷ leads for the cost per lead."),
    "tracking_per_enquiry": N_("Per enquiry: the whole tracking cost ÷ every enquiry of the period (calls, web forms, "
                               "callback requests, messengers)."),
    "utilisation": N_("Utilisation (p95): the 95th percentile of numbers held at once, time-weighted over "
                      "the period, ÷ pool size; above 75 % the pool is tight."),
    "peak": N_("Peak concurrency: the most numbers held by visitors at the same moment (from the "
               "assignment intervals)."),
    "overflows": N_("Overflows: visitors who got no pool number because every number was taken."),
    "recommended": N_("Recommended size: (p95 + overflow demand) × 1.25, never below peak + overflow demand; "
                      "overflow demand = overflows in the busiest hour × mean hold in hours. Rule of thumb: "
                      "visits per day ÷ 100 + 1."),
}

DIMENSIONS = ("source", "channel", "campaign", "keyword", "utm_source")
# calls_by also groups by the enquiry channel (leads.CHANNELS); not yet offered on the admin page
LEAD_DIMENSIONS = (*DIMENSIONS, "lead_channel")


def confidence_condition(min_confidence: float) -> Any:
    """Calls attributed at least this sure (0..1): the one condition of the reports and the call
    log.  A call without a confidence (recorded before attribution had one) is left out."""
    return Call.attribution_confidence >= min_confidence


@dataclass(frozen=True)
class ReportFilter:
    """The period [start, end) in aware UTC and optional narrowing filters."""

    start: dt.datetime
    end: dt.datetime
    site_id: int | None = None
    source_id: int | None = None
    manager_id: int | None = None
    campaign: str | None = None
    tag: str | None = None
    handled: bool | None = None  # True: handled calls only, False: not handled ones
    lead_channel: str | None = None  # leads.CHANNELS: calls with it, leads whose first enquiry had it
    min_confidence: float | None = None  # only calls attributed at least this sure (0..1)

    def call_conditions(self) -> list[Any]:
        conds: list[Any] = [Call.started_at >= self.start, Call.started_at < self.end]
        if self.site_id is not None:
            conds.append(Call.site_id == self.site_id)
        if self.source_id is not None:
            conds.append(Call.source_id == self.source_id)
        if self.manager_id is not None:
            conds.append(or_(Call.manager_id == self.manager_id, Call.routed_manager_id == self.manager_id))
        if self.campaign:
            conds.append(Call.utm_campaign == self.campaign)
        if self.tag:
            conds.append(tag_condition(self.tag))
        if self.handled is not None:
            conds.append(handled_condition(self.handled))
        if self.lead_channel:
            conds.append(Call.lead_channel == self.lead_channel)
        if self.min_confidence is not None:
            conds.append(confidence_condition(self.min_confidence))
        return conds

    def reviewed_calls(self) -> Select | None:
        """The ids of the calls the review filters (tag, handled) and the confidence filter keep;
        None without them.  A report narrowed so counts only the leads such a call made."""
        conds: list[Any] = []
        if self.tag:
            conds.append(tag_condition(self.tag))
        if self.handled is not None:
            conds.append(handled_condition(self.handled))
        if self.min_confidence is not None:
            conds.append(confidence_condition(self.min_confidence))
        return select(Call.id).where(*conds) if conds else None

    def lead_conditions(self) -> list[Any]:
        """Leads counted in the period: first enquiry in it, not merged into another; with a review
        filter, only leads one of the kept calls made."""
        conds: list[Any] = [Lead.created_at >= self.start, Lead.created_at < self.end, Lead.merged_into_id.is_(None)]
        reviewed = self.reviewed_calls()
        if reviewed is not None:
            conds.append(Lead.id.in_(select(Enquiry.lead_id).where(Enquiry.call_id.in_(reviewed))))
        if self.site_id is not None:
            conds.append(Lead.site_id == self.site_id)
        if self.source_id is not None:
            conds.append(Lead.source_id == self.source_id)
        if self.manager_id is not None:
            conds.append(Lead.manager_id == self.manager_id)
        if self.lead_channel:
            conds.append(Lead.first_channel == self.lead_channel)
        return conds

    def enquiry_conditions(self) -> list[Any]:
        """Enquiries made in the period (for unique leads); with a review filter, the kept calls' only."""
        conds: list[Any] = [Enquiry.at >= self.start, Enquiry.at < self.end]
        reviewed = self.reviewed_calls()
        if reviewed is not None:
            conds.append(Enquiry.call_id.in_(reviewed))
        if self.site_id is not None:
            conds.append(Enquiry.site_id == self.site_id)
        if self.source_id is not None:
            conds.append(Enquiry.source_id == self.source_id)
        if self.manager_id is not None:
            conds.append(Enquiry.manager_id == self.manager_id)
        if self.campaign:
            conds.append(Enquiry.utm_campaign == self.campaign)
        if self.lead_channel:
            conds.append(Enquiry.channel == self.lead_channel)
        return conds

    def days(self, tz: str) -> int:
        """How many local calendar days the period covers."""
        zone = ZoneInfo(tz)
        first = self.start.astimezone(zone).date()
        last = (self.end - dt.timedelta(microseconds=1)).astimezone(zone).date()
        return (last - first).days + 1


def last_days(days: int, now: dt.datetime | None = None, tz: str = "UTC", **filters: Any) -> ReportFilter:
    """The last ``days`` whole days up to the end of today in the given time zone."""
    zone = ZoneInfo(tz)
    local_now = (now or dt.datetime.now(dt.UTC)).astimezone(zone)
    end_local = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), dt.time(), zone)
    start_local = end_local - dt.timedelta(days=days)
    return ReportFilter(start=start_local.astimezone(dt.UTC), end=end_local.astimezone(dt.UTC), **filters)


# ---------------------------------------------------------------- calls by dimension


def _threshold(session: Session):
    """Each site's target threshold as an inline CASE (no per-row join to sites)."""
    pairs = session.execute(select(Site.id, Site.target_call_seconds)).all()
    whens = [(Call.site_id == site_id, seconds) for site_id, seconds in pairs
             if seconds is not None and seconds != DEFAULT_TARGET_SECONDS]
    return case(*whens, else_=DEFAULT_TARGET_SECONDS) if whens else literal(DEFAULT_TARGET_SECONDS)


def _target_flag(threshold):
    return and_(Call.outcome == ANSWERED, Call.talk_seconds >= threshold)


def _per_caller_columns(threshold) -> list[Any]:
    """Partial sums per (group, caller number); the outer query adds them up and counts callers."""
    target = _target_flag(threshold)
    answered = Call.outcome == ANSWERED
    talk = case((answered, Call.talk_seconds), else_=None)
    return [
        func.count().label("total"),
        func.sum(case((target, 1), else_=0)).label("target"),
        func.sum(case((answered, 1), else_=0)).label("answered"),
        func.sum(case((Call.outcome.in_(MISSED_OUTCOMES), 1), else_=0)).label("missed"),
        func.sum(case((Call.is_first_call.is_(True), 1), else_=0)).label("first_time"),
        func.sum(case((Call.is_first_call.is_(False), 1), else_=0)).label("repeat"),
        func.sum(Call.wait_seconds).label("wait_sum"),
        func.count(Call.wait_seconds).label("wait_n"),
        func.sum(talk).label("talk_sum"),
        func.count(talk).label("talk_n"),
    ]


def _dimension(dimension: str) -> tuple[Any, bool]:
    """(group key expression, whether it needs the sources table)."""
    if dimension == "source":
        # "+ 0": SQLite would otherwise walk ix_calls_source_started to save the GROUP BY sort and
        # read the table once per call; the expression steers it to the covering ix_calls_report.
        return (Call.source_id + 0).label("source_key"), False
    if dimension == "channel":
        return Source.channel, True
    if dimension == "campaign":
        return Call.utm_campaign, False
    if dimension == "keyword":
        return Call.keyword, False
    if dimension == "utm_source":
        return Call.utm_source, False
    if dimension == "lead_channel":
        return Call.lead_channel, False
    raise ValueError(f"unknown dimension {dimension!r} (known: {', '.join(DIMENSIONS)})")


# ---------------------------------------------------------------- leads beside the calls

LEAD_COLUMNS = ("leads", "unique_leads", "deals", "revenue")


def _enquiry_key(dimension: str, enquiry) -> tuple[Any, bool]:
    """The group key of an enquiry (aliased) for a report dimension; True when it needs sources."""
    if dimension == "source":
        return enquiry.source_id, False
    if dimension == "channel":
        return Source.channel, True
    column = {"campaign": "utm_campaign", "keyword": "keyword", "utm_source": "utm_source",
              "lead_channel": "channel"}.get(dimension)
    if column is None:
        raise ValueError(f"unknown dimension {dimension!r} (known: {', '.join(LEAD_DIMENSIONS)})")
    return getattr(enquiry, column), False


def lead_figures(session: Session, f: ReportFilter, dimension: str = "source") -> dict[str, Any]:
    """Leads, unique leads, won deals and revenue per dimension value (the keys ``calls_by`` uses),
    and their totals (unique leads counted distinct over the whole period, not added up)."""
    first = aliased(Enquiry)  # a lead's first enquiry: its source, campaign, channel
    key, with_sources = _enquiry_key(dimension, first)
    if dimension == "source":
        key = Lead.source_id
    won = Deal.status == "won"
    stmt = (select(key.label("key"), func.count(distinct(Lead.id)).label("leads"),
                   func.count(distinct(case((won, Deal.id), else_=None))).label("deals"),
                   func.sum(case((won, Deal.revenue), else_=None)).label("revenue"))
            .select_from(Lead)
            .outerjoin(first, and_(first.lead_id == Lead.id, first.repeat.is_(False)))
            .outerjoin(Deal, Deal.lead_id == Lead.id)
            .where(*f.lead_conditions()))
    if f.campaign:
        stmt = stmt.where(first.utm_campaign == f.campaign)
    if with_sources:
        stmt = stmt.outerjoin(Source, Source.id == Lead.source_id)
    rows: dict[Any, dict[str, Any]] = {}
    for r in session.execute(stmt.group_by(key)).all():
        rows[r.key] = {"leads": int(r.leads), "unique_leads": 0, "deals": int(r.deals or 0),
                       "revenue": Decimal(r.revenue or 0)}
    any_enquiry = aliased(Enquiry)
    ekey, with_sources = _enquiry_key(dimension, any_enquiry)
    conds = f.enquiry_conditions()
    unique = (select(ekey.label("key"), func.count(distinct(any_enquiry.lead_id)).label("n"))
              .select_from(any_enquiry).join(Lead, Lead.id == any_enquiry.lead_id)
              .where(Lead.merged_into_id.is_(None)))
    total_unique = select(func.count(distinct(Enquiry.lead_id))).join(Lead, Lead.id == Enquiry.lead_id).where(
        *conds, Lead.merged_into_id.is_(None))
    unique = unique.where(*_aliased_conditions(f, any_enquiry))
    if with_sources:
        unique = unique.outerjoin(Source, Source.id == any_enquiry.source_id)
    for r in session.execute(unique.group_by(ekey)).all():
        rows.setdefault(r.key, {"leads": 0, "unique_leads": 0, "deals": 0, "revenue": Decimal(0)})["unique_leads"] = \
            int(r.n)
    totals = {"leads": sum(r["leads"] for r in rows.values()), "deals": sum(r["deals"] for r in rows.values()),
              "revenue": sum((r["revenue"] for r in rows.values()), Decimal(0)),
              "unique_leads": int(session.scalar(total_unique) or 0)}
    return {"rows": rows, "totals": totals}


def _aliased_conditions(f: ReportFilter, enquiry) -> list[Any]:
    conds: list[Any] = [enquiry.at >= f.start, enquiry.at < f.end]
    for value, column in ((f.site_id, enquiry.site_id), (f.source_id, enquiry.source_id),
                          (f.manager_id, enquiry.manager_id), (f.campaign or None, enquiry.utm_campaign),
                          (f.lead_channel or None, enquiry.channel)):
        if value is not None:
            conds.append(column == value)
    reviewed = f.reviewed_calls()
    if reviewed is not None:
        conds.append(enquiry.call_id.in_(reviewed))
    return conds


SUMMED = ("total", "target", "answered", "missed", "first_time", "repeat", "wait_sum", "wait_n", "talk_sum", "talk_n")


def _finish_row(values: dict[str, Any]) -> dict[str, Any]:
    for key in ("total", "unique", "target", "unique_target", "answered", "missed", "first_time", "repeat",
                "wait_n", "talk_n"):
        values[key] = int(values.get(key) or 0)
    values["avg_wait"] = round(float(values["wait_sum"]) / values["wait_n"], 1) if values["wait_n"] else None
    values["avg_talk"] = round(float(values["talk_sum"]) / values["talk_n"], 1) if values["talk_n"] else None
    decided = values["answered"] + values["missed"]
    values["answer_rate"] = values["answered"] / decided if decided else None
    return values


def _calls_from(stmt: Select, f: ReportFilter, with_sources: bool = False) -> Select:
    stmt = stmt.select_from(Call)
    if with_sources:
        stmt = stmt.outerjoin(Source, Source.id == Call.source_id)
    return stmt.where(*f.call_conditions())


def _roomy_sorts(session: Session) -> None:
    """Let PostgreSQL sort a month of calls for the DISTINCT counts in memory (this transaction only)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL work_mem = '32MB'"))


def calls_by(session: Session, f: ReportFilter, dimension: str = "source") -> dict[str, Any]:
    """Rows per dimension value (busiest first) and a totals row with true distinct counts.

    Distinct callers are counted in two hash-aggregation steps (group by value and caller,
    then by value) instead of COUNT(DISTINCT), which sorts per group and was the slowest part
    on a million calls.  Totals of distinct counts come from a per-caller pass, since distinct
    callers do not add up across rows; every other total is a sum of the rows.
    """
    key, with_sources = _dimension(dimension)
    _roomy_sorts(session)
    threshold = _threshold(session)
    per = _calls_from(select(key.label("key"), Call.caller_number.label("caller"), *_per_caller_columns(threshold)),
                      f, with_sources).group_by(key, Call.caller_number).subquery()
    stmt = select(per.c.key, *[func.sum(per.c[name]).label(name) for name in SUMMED],
                  func.count(per.c.caller).label("unique"),
                  func.count(case((per.c.target > 0, per.c.caller), else_=None)).label("unique_target")
                  ).group_by(per.c.key)
    rows = [dict(row) for row in session.execute(stmt).mappings()]
    totals: dict[str, Any] = {name: sum((row[name] or 0) for row in rows) for name in SUMMED}
    callers = _calls_from(select(Call.caller_number.label("caller"),
                                 func.max(case((_target_flag(threshold), 1), else_=0)).label("target")), f)
    callers = callers.where(Call.caller_number.is_not(None)).group_by(Call.caller_number).subquery()
    distinct_totals = session.execute(select(func.count().label("unique"),
                                             func.sum(callers.c.target).label("unique_target"))).one()
    totals.update(unique=distinct_totals.unique, unique_target=distinct_totals.unique_target or 0)
    figures = lead_figures(session, f, dimension)
    known = {row["key"] for row in rows}
    rows += [{"key": k, **{name: 0 for name in SUMMED}} for k in figures["rows"] if k not in known]  # leads, no calls
    for row in rows:
        row.update(figures["rows"].get(row["key"], {"leads": 0, "unique_leads": 0, "deals": 0,
                                                    "revenue": Decimal(0)}))
    totals.update(figures["totals"])
    names: dict[Any, str] = {}
    if dimension == "source":
        ids = [row["key"] for row in rows if row["key"] is not None]
        names = dict(session.execute(select(Source.id, Source.name).where(Source.id.in_(ids))).all()) if ids else {}
    for row in rows:
        row["label"] = names.get(row["key"], f"#{row['key']}") if dimension == "source" and row["key"] else row["key"]
        _finish_row(row)
    rows.sort(key=lambda r: (-r["total"], -r["leads"], str(r["label"] or "")))
    return {"rows": rows, "totals": _finish_row(totals), "dimension": dimension}


STEPS = ("hour", "day")


def step_for(f: ReportFilter, tz: str) -> str:
    """A one-day period is drawn by the hour; longer ones by the day."""
    return "hour" if f.days(tz) <= 1 else "day"


def _bucket_expr(session: Session, f: ReportFilter, tz: str, step: str):
    """The local day ("YYYY-MM-DD") or hour ("YYYY-MM-DD HH") a call started in, as text."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone(tz, Call.started_at), "YYYY-MM-DD HH24" if step == "hour" else "YYYY-MM-DD")
    # SQLite keeps naive UTC text; shift by the zone's offset at the period start (DST shifts
    # inside the period move at most an hour of calls to the neighbouring bucket).
    offset = ZoneInfo(tz).utcoffset(f.start.replace(tzinfo=None)) or dt.timedelta()
    minutes = int(offset.total_seconds() // 60)
    return func.strftime("%Y-%m-%d %H" if step == "hour" else "%Y-%m-%d", Call.started_at, f"{minutes:+d} minutes")


def buckets(f: ReportFilter, tz: str, step: str = "day") -> list[str]:
    """Every bucket key of the period, in order (the x axis, gaps included)."""
    zone = ZoneInfo(tz)
    keys: list[str] = []
    if step == "hour":
        at = f.start
        while at < f.end:
            key = at.astimezone(zone).strftime("%Y-%m-%d %H")
            if key not in keys:  # the repeated hour of a DST fall-back
                keys.append(key)
            at += dt.timedelta(hours=1)
        return keys
    current = f.start.astimezone(zone).date()
    last = (f.end - dt.timedelta(microseconds=1)).astimezone(zone).date()
    while current <= last:
        keys.append(current.isoformat())
        current += dt.timedelta(days=1)
    return keys


def bucket_label(key: str, step: str) -> str:
    """What the chart's axis says: "14:00" for an hour, the date for a day."""
    return f"{key[11:13]}:00" if step == "hour" else key


def time_series(session: Session, f: ReportFilter, tz: str = "UTC", step: str = "day") -> list[dict[str, Any]]:
    """Calls per local day (or hour): total, answered, missed, target; every bucket present."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r} (known: {', '.join(STEPS)})")
    bucket = _bucket_expr(session, f, tz, step)
    target = _target_flag(_threshold(session))
    stmt = _calls_from(select(
        bucket.label("bucket"),
        func.count().label("total"),
        func.sum(case((Call.outcome == ANSWERED, 1), else_=0)).label("answered"),
        func.sum(case((Call.outcome.in_(MISSED_OUTCOMES), 1), else_=0)).label("missed"),
        func.sum(case((target, 1), else_=0)).label("target"),
    ), f).group_by(bucket)
    found = {str(row.bucket): row for row in session.execute(stmt)}
    series = []
    for key in buckets(f, tz, step):
        row = found.get(key)
        series.append({"day": key, "label": bucket_label(key, step),
                       "total": int(row.total) if row else 0,
                       "answered": int(row.answered or 0) if row else 0,
                       "missed": int(row.missed or 0) if row else 0,
                       "target": int(row.target or 0) if row else 0})
    return series


def series_by(session: Session, f: ReportFilter, dimension: str, keys: list[Any], tz: str = "UTC",
              step: str = "day") -> dict[Any, list[int]]:
    """Calls per bucket for each of ``keys`` (values of ``dimension``, as ``calls_by`` reports
    them): the lines of the chart that follows the report's "group by"."""
    key, with_sources = _dimension(dimension)
    bucket = _bucket_expr(session, f, tz, step)
    stmt = _calls_from(select(bucket.label("bucket"), key.label("key"), func.count().label("n")), f, with_sources)
    found: dict[tuple[str, Any], int] = {}
    for row in session.execute(stmt.group_by(bucket, key)):
        found[(str(row.bucket), row.key)] = int(row.n)
    axis = buckets(f, tz, step)
    return {k: [found.get((b, k), 0) for b in axis] for k in keys}


# ---------------------------------------------------------------- missed calls


def missed_select(f: ReportFilter) -> Select:
    """Missed calls, newest first, with reason, wait, the first later answered call from the same
    number and the review marks: the one query of the page and its export."""
    later = aliased(Call)
    # A later answered call with the number: inbound (the caller again) or one astertrack originated
    # (callback / missed-call callback, whose caller_number is the visitor's); or a callback request
    # for this missed call that connected, with its call's start.
    callback = (select(func.min(later.started_at))
                .where(later.caller_number == Call.caller_number, later.started_at > Call.started_at,
                       later.outcome == ANSWERED)
                .correlate(Call).scalar_subquery())
    cb_call = aliased(Call)
    own = (select(func.min(cb_call.started_at))
           .select_from(CallbackRequest).join(cb_call, cb_call.id == CallbackRequest.call_id)
           .where(CallbackRequest.missed_call_id == Call.id, CallbackRequest.state == "connected",
                  cb_call.started_at > Call.started_at)
           .correlate(Call).scalar_subquery())
    # a manager dialling the number from their own phone, answered (seen by the AMI listener)
    dialled = (select(func.min(OutboundCall.started_at))
               .where(OutboundCall.number == Call.caller_number, OutboundCall.started_at > Call.started_at,
                      OutboundCall.answered_at.is_not(None))
               .correlate(Call).scalar_subquery())
    callback = _earliest(_earliest(callback, own), dialled)
    return (select(Call.id, Call.started_at, Call.caller_number, Call.caller_name, Call.missed_reason,
                   Call.wait_seconds, Source.name.label("source"), Manager.name.label("manager"),
                   callback.label("callback_at"), *review_columns())
            .select_from(Call)
            .outerjoin(Source, Source.id == Call.source_id)
            .outerjoin(Manager, Manager.id == Call.routed_manager_id)
            .where(*f.call_conditions(), Call.outcome.in_(MISSED_OUTCOMES),
                   Call.lead_channel == "call")  # a callback astertrack placed is no missed customer
            .order_by(Call.started_at.desc(), Call.id.desc()))


def _earliest(a: Any, b: Any) -> Any:
    """The earlier of two nullable times, in SQL (LEAST ignores NULLs on PostgreSQL only)."""
    return case((a.is_(None), b), (b.is_(None), a), (a < b, a), else_=b)


def _aware(value: Any) -> dt.datetime | None:
    if isinstance(value, str):  # SQLite returns the raw text from an aggregate subquery
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def iter_missed(session: Session, f: ReportFilter, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every missed call of the period as a dict, streamed ``batch`` rows at a time (a
    server-side cursor on PostgreSQL): memory stays flat whatever the count."""
    result = session.execute(missed_select(f).execution_options(yield_per=batch))
    try:
        for row in result.mappings():
            item = dict(row)
            cb = _aware(item["callback_at"])
            item["callback_at"] = cb
            item["handled_at"] = _aware(item["handled_at"])
            item["callback_seconds"] = (cb - item["started_at"]).total_seconds() if cb else None
            yield item
    finally:
        result.close()


def missed_calls(session: Session, f: ReportFilter, limit: int = 500) -> dict[str, Any]:
    """The page's latest ``limit`` missed calls and figures over all of them (one pass of ``iter_missed``)."""
    rows: list[dict[str, Any]] = []
    total = called_back = handled = 0
    delays: list[float] = []
    numbers: set[str] = set()
    not_reached: set[str] = set()  # a number whose latest missed call has no answered call after it
    for item in iter_missed(session, f):
        total += 1
        if len(rows) < limit:
            rows.append(item)
        if item["handled_at"] is not None:
            handled += 1
        number = item["caller_number"]
        if number:
            numbers.add(number)
        if item["callback_seconds"] is not None:
            called_back += 1
            delays.append(item["callback_seconds"])
        elif number:
            not_reached.add(number)
    delays.sort()
    return {
        "rows": rows,
        "total": total,
        "shown": len(rows),
        "called_back": called_back,
        "handled": handled,
        "unique_numbers": len(numbers),
        "never_reached": len(not_reached),
        "median_callback_seconds": delays[len(delays) // 2] if delays else None,
    }


# ---------------------------------------------------------------- first vs repeat


def first_vs_repeat(session: Session, f: ReportFilter, dimension: str = "source") -> dict[str, Any]:
    """First-time and repeat callers per dimension value (a subset of calls_by, kept separate for its page)."""
    result = calls_by(session, f, dimension)
    for row in [*result["rows"], result["totals"]]:
        known = row["first_time"] + row["repeat"]
        row["first_share"] = row["first_time"] / known if known else None
    return result


# ---------------------------------------------------------------- managers


def managers_report(session: Session, f: ReportFilter) -> list[dict[str, Any]]:
    """Per manager: routed, answered, answered %, missed, avg wait, avg talk, leads, deals, revenue."""
    conds = f.call_conditions()
    answered_by_self = and_(Call.outcome == ANSWERED, Call.manager_id == Call.routed_manager_id)
    routed_rows = session.execute(
        select(Call.routed_manager_id.label("mid"), func.count(Call.id).label("routed"),
               func.sum(case((answered_by_self, 1), else_=0)).label("answered_routed"),
               func.avg(Call.wait_seconds).label("avg_wait"))
        .where(*conds, Call.routed_manager_id.is_not(None))
        .group_by(Call.routed_manager_id)).all()
    answered_rows = session.execute(
        select(Call.manager_id.label("mid"), func.count(Call.id).label("answered"),
               func.avg(Call.talk_seconds).label("avg_talk"), func.sum(Call.talk_seconds).label("talk_total"))
        .where(*conds, Call.manager_id.is_not(None), Call.outcome == ANSWERED)
        .group_by(Call.manager_id)).all()
    lead_conds = [*f.lead_conditions(), Lead.manager_id.is_not(None)]
    lead_rows = session.execute(
        select(Lead.manager_id.label("mid"), func.count(distinct(Lead.id)).label("leads"),
               func.count(distinct(case((Deal.status == "won", Deal.id), else_=None))).label("deals"),
               func.sum(case((Deal.status == "won", Deal.revenue), else_=None)).label("revenue"))
        .select_from(Lead).outerjoin(Deal, Deal.lead_id == Lead.id)
        .where(*lead_conds).group_by(Lead.manager_id)).all()
    wanted = {r.mid for r in routed_rows} | {r.mid for r in answered_rows} | {r.mid for r in lead_rows}
    if f.manager_id is not None:
        wanted &= {f.manager_id}
    names = dict(session.execute(select(Manager.id, Manager.name).where(Manager.id.in_(wanted))).all()) if wanted else {}
    out: dict[int, dict[str, Any]] = {
        mid: {"manager_id": mid, "name": names.get(mid, f"#{mid}"), "routed": 0, "answered": 0, "missed": 0,
              "answer_rate": None, "avg_wait": None, "avg_talk": None, "talk_total": 0.0, "leads": 0, "deals": 0,
              "revenue": Decimal("0")}
        for mid in wanted
    }
    for r in routed_rows:
        if r.mid in out:
            row = out[r.mid]
            row["routed"] = int(r.routed)
            row["missed"] = int(r.routed) - int(r.answered_routed or 0)
            row["answer_rate"] = int(r.answered_routed or 0) / int(r.routed) if r.routed else None
            row["avg_wait"] = round(float(r.avg_wait), 1) if r.avg_wait is not None else None
    for r in answered_rows:
        if r.mid in out:
            out[r.mid].update(answered=int(r.answered), avg_talk=round(float(r.avg_talk or 0), 1),
                              talk_total=float(r.talk_total or 0))
    for r in lead_rows:
        if r.mid in out:
            out[r.mid].update(leads=int(r.leads), deals=int(r.deals or 0), revenue=Decimal(r.revenue or 0))
    return sorted(out.values(), key=lambda row: (-row["routed"], -row["answered"], row["name"]))


# ---------------------------------------------------------------- funnel and ROI


def funnel(session: Session, f: ReportFilter, tz: str = "UTC") -> dict[str, Any]:
    """Per source: sessions → calls → leads → deals → revenue, with ad cost, ROI and unit costs, each
    unit cost also with the tracking cost (``costs.tracking_costs``: rent and minutes, #27)."""
    sess_conds = [VisitorSession.first_seen >= f.start, VisitorSession.first_seen < f.end,
                  VisitorSession.is_bot.is_(False)]
    lead_conds = f.lead_conditions()
    cost_conds = [AdCost.day >= f.start.date(), AdCost.day < f.end.date() + dt.timedelta(days=1)]
    if f.site_id is not None:
        sess_conds.append(VisitorSession.site_id == f.site_id)
    if f.source_id is not None:
        sess_conds.append(VisitorSession.source_id == f.source_id)
        cost_conds.append(AdCost.source_id == f.source_id)
    sessions = dict(session.execute(select(VisitorSession.source_id, func.count())
                                    .where(*sess_conds).group_by(VisitorSession.source_id)).all())
    source_key = _dimension("source")[0]
    calls = dict(session.execute(select(source_key, func.count())
                                 .where(*f.call_conditions()).group_by(source_key)).all())
    leads: dict[Any, tuple[int, int, Decimal]] = {}
    for r in session.execute(
            select(Lead.source_id, func.count(distinct(Lead.id)),
                   func.count(distinct(case((Deal.status == "won", Deal.id), else_=None))),
                   func.sum(case((Deal.status == "won", Deal.revenue), else_=None)))
            .select_from(Lead).outerjoin(Deal, Deal.lead_id == Lead.id)
            .where(*lead_conds).group_by(Lead.source_id)).all():
        leads[r[0]] = (int(r[1]), int(r[2] or 0), Decimal(r[3] or 0))
    cost_stmt = select(AdCost.source_id, func.sum(AdCost.amount)).where(*cost_conds).group_by(AdCost.source_id)
    if f.site_id is not None:
        cost_stmt = cost_stmt.join(Source, Source.id == AdCost.source_id).where(Source.site_id == f.site_id)
    costs = {sid: Decimal(amount or 0) for sid, amount in session.execute(cost_stmt).all()}
    tracking = tracking_cost.tracking_costs(session, f.start, f.end, site_id=f.site_id, tz=tz)
    tracked = {k: v.total for k, v in tracking.by_source.items() if v.total
               and (f.source_id is None or k == f.source_id)}
    keys = set(sessions) | set(calls) | set(leads) | set(costs) | set(tracked)
    names = dict(session.execute(select(Source.id, Source.name).where(Source.id.in_([k for k in keys if k]))).all())
    rows = [_funnel_row(k, names.get(k), sessions.get(k, 0), calls.get(k, 0), leads.get(k, (0, 0, Decimal(0))),
                        costs.get(k), tracked.get(k)) for k in keys]
    rows.sort(key=lambda r: (-r["calls"], -r["sessions"], str(r["label"] or "")))
    total = _funnel_row(None, None, sum(r["sessions"] for r in rows), sum(r["calls"] for r in rows),
                        (sum(r["leads"] for r in rows), sum(r["deals"] for r in rows),
                         sum((r["revenue"] for r in rows), Decimal(0))),
                        sum((r["cost"] for r in rows if r["cost"] is not None), Decimal(0)) if costs else None,
                        sum(tracked.values(), Decimal(0)) if tracked else None)
    return {"rows": rows, "totals": total}


def _ratio(a: float | Decimal, b: float | Decimal) -> float | None:
    return float(a) / float(b) if b else None


def _exact_ratio(amount: Decimal | None, count: int) -> Decimal | None:
    return amount / count if amount and count else None


def _funnel_row(key, label, sessions, calls, lead_tuple, cost, tracking=None) -> dict[str, Any]:
    leads, deals, revenue = lead_tuple
    with_tracking = (cost or Decimal(0)) + tracking if tracking else None
    return {
        "tracking_cost": tracking,
        "cost_per_call_tracking": _exact_ratio(with_tracking, calls),
        "cost_per_lead_tracking": _exact_ratio(with_tracking, leads),
        "key": key, "label": label, "sessions": int(sessions), "calls": int(calls), "leads": leads, "deals": deals,
        "revenue": revenue, "cost": cost,
        "call_conversion": _ratio(calls, sessions), "lead_conversion": _ratio(leads, calls),
        "deal_conversion": _ratio(deals, leads),
        "roi": (float(revenue - cost) / float(cost) * 100) if cost else None,
        "cost_per_call": _ratio(cost, calls) if cost else None,
        "cost_per_lead": _ratio(cost, leads) if cost else None,
    }


# ---------------------------------------------------------------- call log


CALL_OUTCOMES = ("answered", "missed", "busy", "in_progress")
# A filter value for the missed report's rows: missed or busy (``MISSED_OUTCOMES``)
MISSED_ANY = "missed_any"


@dataclass(frozen=True)
class CallLogFilter:
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    site_id: int | None = None
    source_id: int | None = None
    campaign: str | None = None
    manager_id: int | None = None
    outcome: str | None = None
    caller: str | None = None  # E.164 for an exact match, or digits for a substring search
    tag: str | None = None
    handled: bool | None = None  # True: handled calls only, False: not handled ones
    channel: str | None = None
    keyword: str | None = None
    utm_source: str | None = None
    lead_channel: str | None = None  # leads.CHANNELS: inbound calls ("call") or astertrack's callbacks
    missing: tuple[str, ...] = ()  # report dimensions that must be empty (a report's "(none)" row)
    only_manager_id: int | None = None  # a manager's own calls (routed to or answered by them)
    min_confidence: float | None = None  # only calls attributed at least this sure (0..1)


@dataclass(frozen=True)
class LogRow:
    """A call-log line: the call and its review marks (the call's attributes read through)."""

    call: Call
    handled_at: dt.datetime | None
    handled_by: str | None
    score: float | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.call, name)


def call_log_select(f: CallLogFilter) -> Select:
    """The calls of the log, newest first, with their review marks: the one query of the page,
    its count and its export."""
    return (select(Call, *review_columns()).where(*_call_log_conditions(f))
            .order_by(Call.started_at.desc(), Call.id.desc())
            .options(selectinload(Call.source), selectinload(Call.manager), selectinload(Call.tags)))


def _log_row(row) -> LogRow:
    return LogRow(call=row[0], handled_at=_aware(row.handled_at), handled_by=row.handled_by, score=row.score)


def call_log(session: Session, f: CallLogFilter, limit: int = 50,
             before: tuple[dt.datetime, int] | None = None) -> tuple[list[LogRow], tuple[dt.datetime, int] | None]:
    """One page of calls, newest first, keyset-paginated on (started_at, id).

    Returns the rows and the cursor for the next page (None on the last page).  Keyset
    pagination keeps page 1000 as fast as page 1 on a million calls.
    """
    stmt = call_log_select(f)
    if before is not None:
        at, call_id = before
        stmt = stmt.where(or_(Call.started_at < at, and_(Call.started_at == at, Call.id < call_id)))
    rows = [_log_row(row) for row in session.execute(stmt.limit(limit + 1))]
    cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        cursor = (rows[-1].started_at, rows[-1].id)
    return rows, cursor


def call_log_count(session: Session, f: CallLogFilter) -> int:
    return int(session.execute(select(func.count(Call.id)).where(*_call_log_conditions(f))).scalar_one())


def iter_call_log(session: Session, f: CallLogFilter, batch: int = 1000) -> Iterator[LogRow]:
    """Every call of the log, streamed ``batch`` at a time (a server-side cursor on PostgreSQL);
    each batch's calls leave the session once read, so memory stays flat whatever the count."""
    result = session.execute(call_log_select(f).execution_options(yield_per=batch))
    try:
        for part in result.partitions():
            rows = [_log_row(row) for row in part]
            yield from rows
            for row in rows:
                session.expunge(row.call)
    finally:
        result.close()


def _dimension_condition(dimension: str, value: str | None) -> Any:
    """A report row's dimension value as a call-log condition (None: the "(none)" row)."""
    if dimension == "source":
        return Call.source_id.is_(None)
    if dimension == "channel":
        channels = select(Source.id).where(Source.channel == value if value is not None else Source.channel.is_(None))
        return Call.source_id.in_(channels) if value is not None else or_(Call.source_id.is_(None),
                                                                         Call.source_id.in_(channels))
    column = {"campaign": Call.utm_campaign, "keyword": Call.keyword, "utm_source": Call.utm_source}[dimension]
    return column == value if value is not None else column.is_(None)


def _call_log_conditions(f: CallLogFilter) -> list[Any]:
    conds: list[Any] = []
    if f.start is not None:
        conds.append(Call.started_at >= f.start)
    if f.end is not None:
        conds.append(Call.started_at < f.end)
    if f.site_id is not None:
        conds.append(Call.site_id == f.site_id)
    if f.source_id is not None:
        conds.append(Call.source_id == f.source_id)
    if f.campaign:
        conds.append(Call.utm_campaign == f.campaign)
    if f.channel:
        conds.append(_dimension_condition("channel", f.channel))
    if f.keyword:
        conds.append(Call.keyword == f.keyword)
    if f.utm_source:
        conds.append(Call.utm_source == f.utm_source)
    if f.lead_channel:
        conds.append(Call.lead_channel == f.lead_channel)
    for dimension in f.missing:
        if dimension in DIMENSIONS:
            conds.append(_dimension_condition(dimension, None))
    if f.manager_id is not None:
        conds.append(or_(Call.manager_id == f.manager_id, Call.routed_manager_id == f.manager_id))
    if f.only_manager_id is not None:
        conds.append(or_(Call.manager_id == f.only_manager_id, Call.routed_manager_id == f.only_manager_id))
    if f.outcome == "in_progress":
        conds.append(Call.outcome.is_(None))
    elif f.outcome == MISSED_ANY:
        conds.append(Call.outcome.in_(MISSED_OUTCOMES))
    elif f.outcome:
        conds.append(Call.outcome == f.outcome)
    if f.caller:
        if f.caller.startswith("+"):
            conds.append(Call.caller_number == f.caller)
        else:
            digits = "".join(ch for ch in f.caller if ch.isdigit())
            if digits:
                conds.append(Call.caller_number.contains(digits, autoescape=True))
    if f.tag:
        conds.append(tag_condition(f.tag))
    if f.handled is not None:
        conds.append(handled_condition(f.handled))
    if f.min_confidence is not None:
        conds.append(confidence_condition(f.min_confidence))
    return conds


def previous_calls(session: Session, call: Call, limit: int = 5,
                   only_manager_id: int | None = None) -> tuple[int, list[Call]]:
    """How many earlier calls this caller made, and the latest few of them.

    ``only_manager_id``: only calls routed to or answered by that manager (what a manager may
    see of the caller's history; the same rule as the call log's).
    """
    if not call.caller_number:
        return 0, []
    conds = [Call.caller_number == call.caller_number, Call.id != call.id, Call.started_at <= call.started_at]
    if only_manager_id is not None:
        conds.extend(_call_log_conditions(CallLogFilter(only_manager_id=only_manager_id)))
    count = session.execute(select(func.count(Call.id)).where(*conds)).scalar_one()
    recent = list(session.scalars(select(Call).where(*conds).order_by(Call.started_at.desc()).limit(limit)))
    return int(count), recent
