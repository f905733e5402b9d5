"""Read report and call-log filters from the query string: bad ids and choices are ignored, a bad
date is a 400 that says what is wrong (``BadFilter``), never a 500."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, request
from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from werkzeug.exceptions import BadRequest

from astertrack.db.models import Manager, Site, Source
from astertrack.reporting.reports import ReportFilter
from webadmin.db import get_session
from webadmin.i18n import display_timezone

DEFAULT_DAYS = 30
MAX_DAYS = 366 * 3
# Report dates are kept well inside what dates, time zones and both databases can hold
# (9999-12-31 plus a day overflowed).
MIN_DATE, MAX_DATE = dt.date(2000, 1, 1), dt.date(2099, 12, 31)
PERIOD_ARGS = ("from", "to")


class BadFilter(BadRequest):
    """A filter value the page cannot use; ``description`` says why, in the user's language."""


def arg_int(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def arg_str(name: str, limit: int = 255) -> str | None:
    raw = request.args.get(name, "").strip()
    return raw[:limit] or None


def arg_date(name: str) -> dt.date | None:
    """A date from ``MIN_DATE`` to ``MAX_DATE``, None when absent; anything else is a ``BadFilter``."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise BadFilter(_l("“%(value)s” is not a date: write it as YYYY-MM-DD.", value=raw[:40])) from None
    if not MIN_DATE <= value <= MAX_DATE:
        raise BadFilter(_l("Dates must be between %(first)s and %(last)s.", first=MIN_DATE.isoformat(),
                           last=MAX_DATE.isoformat()))
    return value


# The confidence filter's choices (the form offers these; a link may carry any value in 0..1)
CONFIDENCE_CHOICES = ("0.3", "0.5", "0.8", "1")  # as confidence_form writes them


def arg_confidence(name: str = "min_confidence") -> float | None:
    """A minimum attribution confidence, as a share (``0.8``) or a percentage (``80``); absent is
    None, anything else outside 0..100 a ``BadFilter``."""
    raw = request.args.get(name, "").strip().rstrip("%").strip()
    if not raw:
        return None
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:  # NaN fails too
        raise BadFilter(_l("“%(value)s” is not a confidence: give a share from 0 to 1 or a percentage.",
                           value=raw[:40]))
    return round(value / 100 if value > 1 else value, 4)


def confidence_form(value: float | None) -> str:
    """The confidence filter as the form and the links write it."""
    return "" if value is None else f"{value:g}"


def period() -> tuple[dt.date, dt.date, dt.datetime, dt.datetime, str]:
    """(first day, last day, start UTC, end UTC exclusive, tz); default the last 30 days."""
    tz = display_timezone()
    site_id = arg_int("site")
    if site_id is not None:  # a one-site report counts days in that site's own time zone
        tz = get_session().scalars(select(Site.timezone).where(Site.id == site_id)).first() or tz
    zone = ZoneInfo(tz)
    today = dt.datetime.now(dt.UTC).astimezone(zone).date()
    date_to = arg_date("to") or today
    date_from = arg_date("from") or date_to - dt.timedelta(days=DEFAULT_DAYS - 1)
    if date_from > date_to:
        date_from, date_to = date_to, date_from
    if (date_to - date_from).days > MAX_DAYS:
        date_from = date_to - dt.timedelta(days=MAX_DAYS)
    start = dt.datetime.combine(date_from, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return date_from, date_to, start, end, tz


def report_filter() -> tuple[ReportFilter, dict[str, Any]]:
    date_from, date_to, start, end, tz = period()
    f = ReportFilter(start=start, end=end, site_id=arg_int("site"), source_id=arg_int("source"),
                     manager_id=arg_int("manager"), campaign=arg_str("campaign"), min_confidence=arg_confidence())
    form = {"from": date_from.isoformat(), "to": date_to.isoformat(), "site": f.site_id, "source": f.source_id,
            "manager": f.manager_id, "campaign": f.campaign or "", "tz": tz,
            "min_confidence": confidence_form(f.min_confidence), "confidence_choices": CONFIDENCE_CHOICES}
    return f, form


def choices() -> dict[str, list]:
    db = get_session()
    return {
        "sites": db.execute(select(Site.id, Site.name).order_by(Site.name)).all(),
        "sources": db.execute(select(Source.id, Source.name).order_by(Source.name)).all(),
        "managers": db.execute(select(Manager.id, Manager.name).order_by(Manager.name)).all(),
    }


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable[Any]]) -> Response:
    """CSV with a BOM so spreadsheets open UTF-8 Cyrillic correctly; formula cells neutralised."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def duration(seconds: float | None) -> str:
    """Seconds as ``h:mm:ss`` (``0:02:08``; ``145:53:18`` past a day), the one way pages show a
    duration; "—" when there is none.  CSV exports keep plain seconds."""
    if seconds is None:
        return "—"
    total = round(float(seconds))
    sign, total = ("-", -total) if total < 0 else ("", total)
    hours, rest = divmod(total, 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


BYTE_UNITS = (_l("B"), _l("KB"), _l("MB"), _l("GB"), _l("TB"))


def byte_size(count: float | None) -> str:
    """A size in the page's language and number format: "93.8 KB", "93,8 КБ"."""
    if count is None:
        return "—"
    count, unit = float(count), 0
    while abs(count) >= 1024 and unit < len(BYTE_UNITS) - 1:
        count, unit = count / 1024, unit + 1
    return f"{format_decimal(count, '#,##0' if unit == 0 else '#,##0.0')} {BYTE_UNITS[unit]}"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(value):
        return "'" + value  # visitor-controlled text must not become a spreadsheet formula
    return value


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False
