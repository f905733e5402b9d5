from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from flask import abort, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from astertrack.db.models import Site
from astertrack.db.types import utcnow
from astertrack.dni import poolhealth
from astertrack.leads import CHANNELS
from astertrack.reporting import costs, journey_pages, reports
from astertrack.review import actions
from webadmin.calls.args import handled_arg, lead_channel_arg, review_form, tag_arg
from webadmin.db import get_session
from webadmin.exports import stream_csv
from webadmin.filters import BadFilter, arg_int, choices, csv_response, report_filter
from webadmin.i18n import display_timezone
from webadmin.labels import label_for
from webadmin.reports import bp
from webadmin.security import STAFF, roles_required

CALL_COLUMNS = ["total", "unique", "target", "unique_target", "answered", "missed", "answer_rate", "first_time",
                "repeat", "avg_wait", "avg_talk"]
SOURCE_COLUMNS = [*CALL_COLUMNS, *reports.LEAD_COLUMNS]  # calls, then the leads they and the forms made


SERIES_LINES = 5  # the busiest values of the "group by" drawn as lines beside the total
LOG_FILTERS = ("from", "to", "site", "source", "manager", "campaign", "tag", "handled", "lead_channel",
               "min_confidence")


def _wants_csv() -> bool:
    return request.args.get("format") == "csv"


def _filter():
    """The report filter with the review filters (tag, handled) and the enquiry channel the call log shares."""
    f, form = report_filter()
    f = dataclasses.replace(f, tag=tag_arg(), handled=handled_arg(), lead_channel=lead_channel_arg())
    return f, {**form, **review_form(f.tag, f.handled), "lead_channel": f.lead_channel or ""}


def log_url(form: dict, **row) -> str:
    """The call log narrowed to a report row: the report's own filters plus the row's value."""
    args = {k: form[k] for k in LOG_FILTERS if form.get(k) not in (None, "")}
    args.update({k: v for k, v in row.items() if v is not None})
    return url_for("calls.log", **args)


def dimension_url(form: dict, dimension: str, key) -> str:
    """A grouped row's link: its value, or for the "(none)" row the value's absence."""
    if key is None or key == "":
        return log_url(form, missing=dimension)
    if dimension not in reports.LEAD_DIMENSIONS:
        raise ValueError(dimension)
    return log_url(form, **{dimension: key})  # each dimension's call-log filter has its name


def _page(template: str, **context):
    f, form = context.pop("filter_pair")
    return render_template(template, form=form, choices=choices(), formulas={k: _(v) for k, v in reports.FORMULAS.items()},
                           tags=actions.tag_names(get_session()), lead_channels=CHANNELS, log_url=log_url,
                           dimension_url=dimension_url,
                           **context)


def row_label(dimension: str, row: dict) -> str:
    """A grouped row's name for charts: an enquiry channel in words, "(none)" for no value."""
    if dimension == "lead_channel":
        return str(label_for(row["key"], "lead_channel"))
    return str(row["label"] if row["label"] is not None else _("(none)"))


def _line_chart(db, f, form, dimension: str, rows: list) -> dict:
    """Calls over the period (by the hour for one day): the total, then one line per busiest
    value of the "group by" choice, so the chart follows it."""
    step = reports.step_for(f, form["tz"])
    series = reports.time_series(db, f, form["tz"], step)
    top = rows[:SERIES_LINES]
    per_key = reports.series_by(db, f, dimension, [r["key"] for r in top], form["tz"], step)
    datasets = [{"key": "total", "label": str(label_for("total")), "data": [p["total"] for p in series]}]
    datasets += [{"key": f"group-{i}", "label": row_label(dimension, r), "data": per_key[r["key"]]}
                 for i, r in enumerate(top)]
    return {"labels": [p["label"] for p in series], "datasets": datasets, "step": step}


@bp.get("/sources")
@roles_required(*STAFF)
def sources():
    dimension = request.args.get("dimension", "source")
    if dimension not in reports.LEAD_DIMENSIONS:
        abort(400)
    f, form = _filter()
    db = get_session()
    data = reports.calls_by(db, f, dimension)
    if _wants_csv():
        return csv_response(f"calls-by-{dimension}-{form['from']}-{form['to']}.csv", [dimension, *SOURCE_COLUMNS],
                            ([r["label"], *[r[c] for c in SOURCE_COLUMNS]] for r in data["rows"]))
    chart = {
        "series": _line_chart(db, f, form, dimension, data["rows"]),
        "bars": {"labels": [row_label(dimension, r) for r in data["rows"][:15]],
                 "datasets": [{"key": "answered", "label": _("Answered"), "data": [r["answered"] for r in data["rows"][:15]]},
                              {"key": "missed", "label": _("Missed"), "data": [r["missed"] for r in data["rows"][:15]]}]},
    }
    return _page("reports/sources.html", filter_pair=(f, form), data=data, charts=chart, dimension=dimension,
                 dimensions=reports.LEAD_DIMENSIONS, columns=SOURCE_COLUMNS)


@bp.get("/missed")
@roles_required(*STAFF)
def missed():
    f, form = _filter()
    if _wants_csv():
        cols = ["id", "started_at", "caller_number", "caller_name", "source", "manager", "missed_reason",
                "wait_seconds", "callback_at", "callback_seconds", "handled_at", "handled_by"]
        return stream_csv(f"missed-{form['from']}-{form['to']}.csv", cols,
                          lambda db: ([r[c] for c in cols] for r in reports.iter_missed(db, f)))
    data = reports.missed_calls(get_session(), f)
    return _page("reports/missed.html", filter_pair=(f, form), data=data, missed_any=reports.MISSED_ANY)


@bp.get("/first-repeat")
@roles_required(*STAFF)
def first_repeat():
    f, form = _filter()
    dimension = request.args.get("dimension", "source")
    if dimension not in reports.DIMENSIONS:
        abort(400)
    data = reports.first_vs_repeat(get_session(), f, dimension)
    if _wants_csv():
        cols = ["total", "first_time", "repeat", "first_share"]
        return csv_response(f"first-repeat-{form['from']}-{form['to']}.csv", [dimension, *cols],
                            ([r["label"], *[r[c] for c in cols]] for r in data["rows"]))
    chart = {"bars": {"labels": [str(r["label"] if r["label"] is not None else _("(none)")) for r in data["rows"][:15]],
                      "datasets": [{"key": "first", "label": _("First-time"), "data": [r["first_time"] for r in data["rows"][:15]]},
                                   {"key": "repeat", "label": _("Repeat"), "data": [r["repeat"] for r in data["rows"][:15]]}]}}
    return _page("reports/first_repeat.html", filter_pair=(f, form), data=data, charts=chart, dimension=dimension,
                 dimensions=reports.DIMENSIONS)


@bp.get("/managers")
@roles_required(*STAFF)
def managers():
    f, form = _filter()
    rows = reports.managers_report(get_session(), f)
    cols = ["name", "routed", "answered", "answer_rate", "missed", "avg_wait", "avg_talk", "leads", "deals", "revenue"]
    if _wants_csv():
        return csv_response(f"managers-{form['from']}-{form['to']}.csv", cols, ([r[c] for c in cols] for r in rows))
    chart = {"bars": {"labels": [r["name"] for r in rows],
                      "datasets": [{"key": "answered", "label": _("Answered"), "data": [r["answered"] for r in rows]},
                                   {"key": "missed", "label": _("Missed"), "data": [r["missed"] for r in rows]}]}}
    return _page("reports/managers.html", filter_pair=(f, form), rows=rows, charts=chart)


@bp.get("/funnel")
@roles_required(*STAFF)
def funnel():
    f, form = _filter()
    data = reports.funnel(get_session(), f, form["tz"])
    cols = ["label", "sessions", "calls", "leads", "deals", "revenue", "cost", "roi", "cost_per_call", "cost_per_lead",
            "tracking_cost", "cost_per_call_tracking", "cost_per_lead_tracking"]
    if _wants_csv():
        return csv_response(f"funnel-{form['from']}-{form['to']}.csv", cols, ([r[c] for c in cols] for r in data["rows"]))
    return _page("reports/funnel.html", filter_pair=(f, form), data=data)


@bp.get("/pools")
@roles_required(*STAFF)
def pools():
    f, form = _filter()
    health = poolhealth.all_pools_health(get_session(), f.start, min(f.end, utcnow()), utcnow(), site_id=f.site_id)
    rows = [{**h.as_dict(), "refused_total": sum(h.refused.values())} for h in health]
    for r in rows:  # tracking costs (#27): the monthly rent now and at the recommended size
        r["monthly_cost"] = costs.pool_monthly_cost(get_session(), r["pool_id"])
        r["recommended_cost"] = costs.pool_monthly_cost(get_session(), r["pool_id"], r["recommended"])
    cols = ["name", "size", "live_now", "peak", "p95", "p95_utilisation", "mean_concurrency", "overflow_count",
            "mean_hold_minutes", "visits_per_day", "rule_of_thumb", "recommended", "status", "refused_total",
            "unconfirmed", "adaptive_ended", "adaptive_share", "monthly_cost", "recommended_cost"]
    if _wants_csv():
        return csv_response(f"pools-{form['from']}-{form['to']}.csv", cols, ([r[c] for c in cols] for r in rows))
    chart = {"bars": {"labels": [r["name"] for r in rows],
                      "datasets": [{"key": "size", "label": _("Size"), "data": [r["size"] for r in rows]},
                                   {"key": "peak", "label": _("Peak"), "data": [r["peak"] for r in rows]},
                                   {"key": "target", "label": "p95", "data": [r["p95"] for r in rows]},
                                   {"key": "recommended", "label": _("Recommended"),
                                    "data": [r["recommended"] for r in rows]}]}}
    return _page("reports/pools.html", filter_pair=(f, form), rows=rows, charts=chart)


@bp.get("/tracking-costs")
@roles_required(*STAFF)
def tracking_costs():
    """What tracking cost in a month (#27): rent and minutes per source, per call, per lead, per enquiry."""
    site_id = arg_int("site")
    db = get_session()
    tz = display_timezone()
    if site_id is not None:
        tz = db.scalars(select(Site.timezone).where(Site.id == site_id)).first() or tz
    today = dt.datetime.now(dt.UTC).astimezone(ZoneInfo(tz)).date()
    raw = (request.args.get("month") or "")[:7]
    try:
        month = dt.date(int(raw[:4]), int(raw[5:7]), 1) if raw else today.replace(day=1)
    except ValueError:
        raise BadFilter(_("The month must look like 2026-11.")) from None
    if not dt.date(2000, 1, 1) <= month <= dt.date(2099, 12, 1):
        raise BadFilter(_("The month must look like 2026-11."))
    start, end = costs.month_period(month, tz)
    data = costs.cost_report(db, start, end, site_id=site_id, tz=tz)
    form = {"month": month.strftime("%Y-%m"), "site": site_id, "tz": tz}
    if _wants_csv():
        cols = list(costs.COST_COLUMNS)
        rows = [[r[c] for c in cols] for r in data["rows"]]
        rows.append([_("Total"), *[data["totals"][c] for c in cols[1:]]])
        return csv_response(f"tracking-costs-{form['month']}.csv", cols, rows)
    top = data["rows"][:15]
    chart = {"bars": {"labels": [str(r["label"] if r["label"] is not None else _("(no source)")) for r in top],
                      "datasets": [{"key": "group-0", "label": _("Rent"), "data": [float(r["rent"]) for r in top]},
                                   {"key": "group-1", "label": _("Minutes cost"),
                                    "data": [float(r["minute_cost"]) for r in top]}]}}
    return render_template("reports/tracking_costs.html", form=form, choices=choices(), data=data, charts=chart,
                           formulas={k: _(v) for k, v in reports.FORMULAS.items()})


@bp.get("/pages")
@roles_required(*STAFF)
def pages():
    """Top pages before a call (#24): per site, the pages callers viewed before calling."""
    f, form = report_filter()
    sites = journey_pages.top_pages_before_call(get_session(), f.start, f.end, site_id=f.site_id)
    if _wants_csv():
        return csv_response(f"pages-before-call-{form['from']}-{form['to']}.csv",
                            ["site", "url", "calls", "share", "calls_with_pages"],
                            ([s["site"], r["url"], r["calls"], r["share"], s["calls_with_pages"]]
                             for s in sites for r in s["rows"]))
    charts = [{"labels": [r["url"] for r in s["rows"][:10]],
               "datasets": [{"key": "total", "label": _("Calls"), "data": [r["calls"] for r in s["rows"][:10]]}]}
              for s in sites]
    return render_template("reports/pages.html", form=form, choices=choices(), sites=sites, charts=charts,
                           formulas={k: _(v) for k, v in journey_pages.FORMULAS.items()})


@bp.get("/speech-tags")
@roles_required(*STAFF)
def speech_tags():
    """Speech tags (#26): automatic tags by source, campaign or manager, and calls that need attention."""
    from astertrack.speech import report as speech_report

    dimension = request.args.get("dimension", "source")
    if dimension not in speech_report.DIMENSIONS:
        abort(400)
    f, form = _filter()
    db = get_session()
    data = speech_report.tags_by(db, f, dimension)
    attention = speech_report.needs_attention(db, f)
    if _wants_csv():
        return csv_response(f"speech-tags-by-{dimension}-{form['from']}-{form['to']}.csv",
                            [dimension, *data["tags"], "total"],
                            ([r["label"], *[r["counts"].get(t, 0) for t in data["tags"]], r["total"]]
                             for r in data["rows"]))
    top = data["tags"][:SERIES_LINES]
    chart = {"bars": {"labels": [str(r["label"] if r["label"] is not None else _("(none)")) for r in data["rows"][:15]],
                      "datasets": [{"key": f"group-{i}", "label": tag,
                                    "data": [r["counts"].get(tag, 0) for r in data["rows"][:15]]}
                                   for i, tag in enumerate(top)]}}
    return _page("reports/speech_tags.html", filter_pair=(f, form), data=data, charts=chart, dimension=dimension,
                 dimensions=speech_report.DIMENSIONS, attention=attention,
                 speech_formulas={k: _(v) for k, v in speech_report.FORMULAS.items()})
