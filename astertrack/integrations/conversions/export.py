"""Upload files for Metrica and Google Ads, for platforms (or accounts) astertrack does not send to.

A file holds a site's conversions of the scan window not yet in the log.  Writing a file changes
nothing unless ``mark`` is set: then its rows are logged as ``exported`` (and the ones the platform
cannot take as ``skipped``), so the next file and the next ``send`` leave them out.  Without it the
same conversions come again, which both platforms tolerate (Google Ads ignores a repeat of the
same click, name and time)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import ConversionSettings, Site
from astertrack.integrations.conversions import builders, candidates
from astertrack.integrations.conversions import log as conversion_log

EXPORT_PLATFORMS = ("metrica", "google_ads")


class ExportError(ValueError):
    """The site has no settings for this platform (``code`` names what is missing)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass
class Export:
    text: str
    rows: int = 0
    skipped: Counter = field(default_factory=Counter)


def timezone_of(settings: ConversionSettings, site: Site) -> str:
    return settings.google_ads_timezone or site.timezone or "UTC"


def build(session: Session, site_id: int, platform: str, now: dt.datetime, mark: bool = False,
          call_url=None) -> Export:
    """The file's text and its counts; with ``mark`` the log rows too (the caller commits)."""
    if platform not in EXPORT_PLATFORMS:
        raise ExportError("platform")
    site = session.get(Site, site_id)
    settings = session.scalar(select(ConversionSettings).where(ConversionSettings.site_id == site_id))
    if site is None or settings is None:
        raise ExportError("no_settings")
    if platform == "google_ads" and not settings.google_ads_conversion_name:
        raise ExportError("no_conversion_name")
    timezone = timezone_of(settings, site)
    skipped: Counter = Counter()
    rows: list[tuple] = []
    for conversion in candidates.find(session, site, settings, platform, now, limit=100_000):
        try:
            if not conversion.counts:
                raise builders.Skip("rule")
            if platform == "google_ads":
                row = ("", builders.google_ads_row(conversion, settings.google_ads_conversion_name, timezone, now))
            else:
                row = builders.metrica_row(conversion, now, call_url(conversion.call_id) if call_url else None)
        except builders.Skip as skip:
            skipped[skip.reason] += 1
            if mark:
                conversion_log.add(session, conversion, platform, "skipped", now, reason=skip.reason)
            continue
        rows.append((conversion, row))
    if platform == "google_ads":
        kept = rows
        text = builders.google_ads_csv(timezone, [row for _, (_, row) in kept])
    else:
        # One file holds one id column: ClientId rows, or (when none has Metrica's id) Yclid rows;
        # the Yclid ones stay out of the log and make the next file when both kinds are there.
        column = "ClientId" if any(id_column == "ClientId" for _, (id_column, _) in rows) or not rows else "Yclid"
        kept = [item for item in rows if item[1][0] == column]
        text = builders.metrica_csv(column, [row for _, (_, row) in kept])
    if mark:
        for conversion, (id_column, row) in kept:
            conversion_log.add(session, conversion, platform, "exported", now,
                               payload={"id_column": id_column, "row": row} if id_column else {"row": row})
    rows = kept
    return Export(text=text, rows=len(rows), skipped=skipped)
