"""Pure payload builders, one per platform, from a ``Conversion``.  A conversion a platform
cannot take raises ``Skip`` with the reason the log keeps (no click id, too old, ...).

Formats (as documented by each platform):

* GA4 Measurement Protocol: ``POST /mp/collect?measurement_id=&api_secret=`` with JSON
  ``{client_id, timestamp_micros, events: [{name, params}]}``; ``timestamp_micros`` may be back-dated
  at most 72 hours, so older conversions are skipped (``too_old``).
* Yandex Metrica offline calls: a CSV whose first line names the columns; the visitor is
  ``ClientId`` (the ``_ym_uid`` cookie) or ``Yclid``; ``DateTime`` in Unix seconds (UTC); a call
  can be linked to a visit at most 21 days back.
* Google Ads offline click conversions: the upload template, a ``Parameters:TimeZone=`` line, then
  ``Google Click ID, Conversion Name, Conversion Time, Conversion Value, Conversion Currency``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from astertrack.integrations.conversions.subjects import Conversion

GA4_MAX_AGE = dt.timedelta(hours=72)
METRICA_MAX_AGE = dt.timedelta(days=21)
GOOGLE_ADS_MAX_AGE = dt.timedelta(days=90)  # a click older than this takes no conversion
METRICA_COLUMNS = ("DateTime", "Price", "Currency", "PhoneNumber", "TalkDuration", "HoldDuration", "CallMissed",
                   "Tag", "FirstTimeCaller", "URL", "CallTrackerURL")
GOOGLE_ADS_COLUMNS = ("Google Click ID", "Conversion Name", "Conversion Time", "Conversion Value",
                      "Conversion Currency")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Skip(Exception):
    """This platform cannot take this conversion; ``reason`` goes to the log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{Decimal(value):.2f}"


def _text(value: str | None) -> str:
    """Free text from a visitor or an admin, made safe for a spreadsheet (no formula start)."""
    value = (value or "").replace("\r", " ").replace("\n", " ").strip()
    while value.startswith(_FORMULA_START):
        value = value[1:].lstrip()
    return value


def _check_age(conversion: Conversion, now: dt.datetime, limit: dt.timedelta) -> None:
    if conversion.occurred_at < now - limit:
        raise Skip("too_old")


# ---------------------------------------------------------------- GA4


def ga4_payload(conversion: Conversion, event_name: str, now: dt.datetime) -> dict[str, Any]:
    """The Measurement Protocol body for one conversion, back-dated to when it happened."""
    if not conversion.ga_client_id:
        raise Skip("no_client_id")
    _check_age(conversion, now, GA4_MAX_AGE)
    occurred = min(conversion.occurred_at, now)
    params: dict[str, Any] = {"engagement_time_msec": 1, "astertrack_id": conversion.subject}
    if conversion.value is not None:
        params["value"] = float(conversion.value)
        params["currency"] = conversion.currency or "RUB"
    if conversion.kind == "call":
        params["call_outcome"] = conversion.outcome or "unknown"
        params["talk_seconds"] = conversion.talk_seconds or 0
        params["wait_seconds"] = conversion.wait_seconds or 0
        if conversion.first_time is not None:
            params["first_time_caller"] = 1 if conversion.first_time else 0
    else:
        params["lead_status"] = conversion.lead_state or ""
    if conversion.tag:
        params["call_source"] = conversion.tag[:100]
    return {"client_id": conversion.ga_client_id,
            "timestamp_micros": int(occurred.timestamp() * 1_000_000),
            "events": [{"name": event_name, "params": params}]}


# ---------------------------------------------------------------- Yandex Metrica


def metrica_row(conversion: Conversion, now: dt.datetime, call_url: str | None = None) -> tuple[str, dict[str, str]]:
    """(the id column, the row): ``ClientId`` when the visit has Metrica's id, else ``Yclid``."""
    if conversion.kind != "call":
        raise Skip("not_a_call")
    if conversion.ym_client_id:
        id_column, id_value = "ClientId", conversion.ym_client_id
    elif conversion.yclid:
        id_column, id_value = "Yclid", conversion.yclid
    else:
        raise Skip("no_client_id")
    _check_age(conversion, now, METRICA_MAX_AGE)
    missed = conversion.outcome != "answered"
    row = {id_column: _text(id_value),
           "DateTime": str(int(min(conversion.occurred_at, now).timestamp())),
           "Price": _money(conversion.value),
           "Currency": (conversion.currency or "") if conversion.value is not None else "",
           "PhoneNumber": conversion.phone or "",
           "TalkDuration": str(conversion.talk_seconds or 0),
           "HoldDuration": str(conversion.wait_seconds or 0),
           "CallMissed": "1" if missed else "0",
           "Tag": _text(conversion.tag)[:100],
           "FirstTimeCaller": "" if conversion.first_time is None else ("1" if conversion.first_time else "0"),
           "URL": _text(conversion.url),
           "CallTrackerURL": call_url or ""}
    return id_column, row


def metrica_csv(id_column: str, rows: Iterable[dict[str, str]]) -> str:
    """One upload file: the header line, then one line per call (all with the same id column)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=(id_column, *METRICA_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# ---------------------------------------------------------------- Google Ads


def google_ads_row(conversion: Conversion, conversion_name: str, timezone: str, now: dt.datetime) -> dict[str, str]:
    """One line of the offline click conversions template; the time in ``timezone`` (the
    ``Parameters:TimeZone=`` line says which)."""
    if not conversion.gclid:
        raise Skip("no_gclid")
    _check_age(conversion, now, GOOGLE_ADS_MAX_AGE)
    local = min(conversion.occurred_at, now).astimezone(ZoneInfo(timezone))
    return {"Google Click ID": _text(conversion.gclid), "Conversion Name": _text(conversion_name),
            "Conversion Time": local.strftime("%Y-%m-%d %H:%M:%S"),
            "Conversion Value": _money(conversion.value),
            "Conversion Currency": (conversion.currency or "") if conversion.value is not None else ""}


def google_ads_csv(timezone: str, rows: Iterable[dict[str, str]]) -> str:
    out = io.StringIO()
    out.write(f"Parameters:TimeZone={timezone}\n")
    writer = csv.DictWriter(out, fieldnames=GOOGLE_ADS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
