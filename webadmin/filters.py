"""Read report and call-log filters from the query string, tolerating bad input (never a 500)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, request
from sqlalchemy import select

from astertrack.db.models import Manager, Site, Source
from astertrack.reporting.reports import ReportFilter
from webadmin.db import get_session
from webadmin.i18n import display_timezone

DEFAULT_DAYS = 30
MAX_DAYS = 366 * 3


def arg_int(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def arg_str(name: str, limit: int = 255) -> str | None:
    raw = request.args.get(name, "").strip()
    return raw[:limit] or None


def arg_date(name: str) -> dt.date | None:
    raw = request.args.get(name, "").strip()
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


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
                     manager_id=arg_int("manager"), campaign=arg_str("campaign"))
    form = {"from": date_from.isoformat(), "to": date_to.isoformat(), "site": f.site_id, "source": f.source_id,
            "manager": f.manager_id, "campaign": f.campaign or "", "tz": tz}
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
