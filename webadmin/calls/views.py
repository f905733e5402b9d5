from __future__ import annotations

import datetime as dt
import mimetypes
from urllib.parse import urlencode

from flask import abort, render_template, request, send_file
from flask_login import current_user
from sqlalchemy import select

from astertrack.db.models import CallSpeechTag, Tag
from astertrack.phones import try_normalize
from astertrack.reporting import reports
from webadmin.calls import bp
from webadmin.calls.access import visible_call_or_404
from webadmin.calls.args import handled_arg, lead_channel_arg, review_form, tag_arg
from webadmin.calls.card import recording_file, render_card
from webadmin.db import get_session
from webadmin.exports import stream_csv
from webadmin.filters import (
    CONFIDENCE_CHOICES,
    arg_confidence,
    arg_int,
    arg_str,
    choices,
    confidence_form,
    period,
)
from webadmin.security import ROLES, roles_required

PAGE_SIZE = 50
# Filters a report row's link may set that the log's form has no field for: kept as hidden inputs
HIDDEN_LOG_ARGS = ("channel", "keyword", "utm_source", "lead_channel", "missing")


def _cursor() -> tuple[dt.datetime, int] | None:
    raw = request.args.get("before", "")
    at, _, call_id = raw.rpartition("_")
    if not at or not call_id.isdigit():
        return None
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when, int(call_id)


LOG_CSV_COLUMNS = ["id", "started_at", "caller_number", "caller_name", "did", "outcome", "missed_reason",
                   "wait_seconds", "talk_seconds", "utm_source", "utm_medium", "utm_campaign", "keyword",
                   "attribution_kind", "attribution_confidence", "is_first_call"]
LOG_CSV_HEADER = [*LOG_CSV_COLUMNS, "source", "manager", "tags", "handled_at", "handled_by", "score"]


def log_filter() -> tuple[reports.CallLogFilter, dict]:
    """The call log's filters from the query string, and the form that shows them."""
    date_from, date_to, start, end, tz = period()
    caller = arg_str("caller", 40)
    outcome = arg_str("outcome", 20)
    if outcome not in (*reports.CALL_OUTCOMES, reports.MISSED_ANY):
        outcome = None
    missing = tuple(d for d in request.args.getlist("missing") if d in reports.DIMENSIONS)
    f = reports.CallLogFilter(
        start=start, end=end, site_id=arg_int("site"), source_id=arg_int("source"), campaign=arg_str("campaign"),
        manager_id=arg_int("manager"), outcome=outcome, tag=tag_arg(), handled=handled_arg(),
        channel=arg_str("channel"), keyword=arg_str("keyword"), utm_source=arg_str("utm_source"),
        lead_channel=lead_channel_arg(), missing=missing,
        caller=(try_normalize(caller) or caller) if caller else None, min_confidence=arg_confidence(),
        only_manager_id=None if current_user.is_staff else (current_user.manager_id or -1))
    form = {"from": date_from.isoformat(), "to": date_to.isoformat(), "site": f.site_id, "source": f.source_id,
            "manager": f.manager_id, "campaign": f.campaign or "", "caller": caller or "", "outcome": outcome or "",
            "tz": tz, **review_form(f.tag, f.handled), "min_confidence": confidence_form(f.min_confidence),
            "confidence_choices": CONFIDENCE_CHOICES}
    return f, form


def _csv_line(row: reports.LogRow) -> list:
    call = row.call
    return [*(getattr(call, k) for k in LOG_CSV_COLUMNS), call.source.name if call.source else None,
            call.manager.name if call.manager else None, "; ".join(sorted(t.name for t in call.tags)),
            row.handled_at, row.handled_by, round(row.score * 100, 1) if row.score is not None else None]


@bp.get("/")
@roles_required(*ROLES)
def log():
    f, form = log_filter()
    if request.args.get("format") == "csv":
        return stream_csv(f"calls-{form['from']}-{form['to']}.csv", LOG_CSV_HEADER,
                          lambda db: (_csv_line(row) for row in reports.iter_call_log(db, f)))
    db = get_session()
    calls, cursor = reports.call_log(db, f, limit=PAGE_SIZE, before=_cursor())
    args = request.args.to_dict(flat=False)
    args.pop("before", None)
    tags = db.scalars(select(Tag.name).order_by(Tag.name)).all()
    auto_tags: dict[int, list[CallSpeechTag]] = {}
    if calls:  # the speech analytics' tags of this page's calls, beside the manual ones
        for t in db.scalars(select(CallSpeechTag).where(CallSpeechTag.call_id.in_([c.id for c in calls]))
                            .order_by(CallSpeechTag.at_seconds)):
            if all(other.tag != t.tag for other in auto_tags.get(t.call_id, [])):
                auto_tags.setdefault(t.call_id, []).append(t)
    kept = [(k, v) for k, values in args.items() if k not in ("format", "before") for v in values]
    return render_template("calls/log.html", calls=calls, form=form, choices=choices(), tags=tags, auto_tags=auto_tags,
                           outcomes=reports.CALL_OUTCOMES, count=reports.call_log_count(db, f),
                           csv_url=f"{request.path}?{urlencode([*kept, ('format', 'csv')])}",
                           hidden=[(k, v) for k, v in kept if k in HIDDEN_LOG_ARGS],
                           next_args={**args, "before": f"{cursor[0].isoformat()}_{cursor[1]}"}
                           if cursor else None, paged=bool(request.args.get("before")))


@bp.get("/<int:call_id>")
@roles_required(*ROLES)
def card(call_id: int):
    return render_card(visible_call_or_404(call_id))


@bp.get("/<int:call_id>/recording")
@roles_required(*ROLES)
def recording(call_id: int):
    call = visible_call_or_404(call_id)
    path = recording_file(call)
    if path is None:
        abort(404)
    mimetype = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".gsm": "audio/x-gsm", ".ogg": "audio/ogg"}.get(
        path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    download = request.args.get("download") == "1"
    response = send_file(path, mimetype=mimetype, conditional=True, as_attachment=download,
                         download_name=f"call-{call.id}{path.suffix.lower()}", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
