"""Send conversions: GA4 one Measurement Protocol request per conversion, Metrica one
``upload_calls`` file per site and run.  Google Ads takes files only (``export``).

Each site's pass: find new conversions, log the ones a platform cannot take as skipped, claim the
rest in the log (committed before any request, so no transaction waits on the network), send, then
record each answer.  Conversions a network error stopped are retried first on every later run."""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import ConversionLog, ConversionSettings, Site
from astertrack.db.types import utcnow
from astertrack.integrations.conversions import builders, candidates
from astertrack.integrations.conversions import log as conversion_log

log = logging.getLogger(__name__)
USER_AGENT = "astertrack-conversions/1"
SENT_PLATFORMS = ("ga4", "metrica")  # google_ads: upload files only

# post(url, body, headers, timeout) -> (HTTP status, the start of the answer); raises OSError when
# no answer came (refused connection, timeout, DNS).
Poster = Callable[[str, bytes, dict[str, str], float], tuple[int, bytes]]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"User-Agent": USER_AGENT, **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https from config)
            return response.status, response.read(2000)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000) if exc.fp else b""


@dataclass
class Counts:
    """What one run did, per platform: sent, refused, failed (retried later), skipped by reason."""

    sent: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    skipped: dict[str, Counter] = field(default_factory=dict)

    def skip(self, platform: str, reason: str) -> None:
        self.skipped.setdefault(platform, Counter())[reason] += 1

    def total_skipped(self, platform: str) -> int:
        return sum(self.skipped.get(platform, Counter()).values())


def _classify(status: int | None) -> str:
    """2xx sent; 408, 429 and 5xx the platform may take later; any other answer is a refusal."""
    if status is None or status in (408, 429) or status >= 500:
        return "failed"
    return "sent" if 200 <= status < 300 else "refused"


def _attempt(post: Poster, url: str, body: bytes, headers: dict[str, str], timeout: float):
    try:
        status, answer = post(url, body, headers, timeout)
    except (OSError, ValueError) as exc:  # urllib.error.URLError is an OSError
        return "failed", None, f"{type(exc).__name__}: {exc}"
    return _classify(status), status, answer.decode("utf-8", "replace") if answer else ""


def enabled_platforms(settings: ConversionSettings) -> list[str]:
    """The platforms a site has switched on and filled in enough to use."""
    platforms = []
    if settings.ga4_enabled and settings.ga4_measurement_id and settings.ga4_api_secret:
        platforms.append("ga4")
    if settings.metrica_enabled and settings.metrica_counter_id and settings.metrica_token:
        platforms.append("metrica")
    if settings.google_ads_enabled and settings.google_ads_conversion_name:
        platforms.append("google_ads")
    return platforms


def call_url(config, call_id: int | None) -> str | None:
    base = (config.get("conversions", "admin_url") or "").rstrip("/")
    return f"{base}/calls/{call_id}" if base and call_id else None


def run(factory: sessionmaker[Session], config, *, site_id: int | None = None, platform: str | None = None,
        dry_run: bool = False, now: dt.datetime | None = None, post: Poster | None = None,
        echo: Callable[[str], None] | None = None) -> Counts:
    """One pass over every configured site (or one), every platform that sends (or one)."""
    now = now or utcnow()
    post = post or http_post
    echo = echo or (lambda line: None)
    counts = Counts()
    with session_scope(factory) as session:
        query = select(ConversionSettings.site_id).join(Site, Site.id == ConversionSettings.site_id).where(
            Site.archived_at.is_(None))
        if site_id is not None:
            query = query.where(ConversionSettings.site_id == site_id)
        site_ids = list(session.scalars(query.order_by(ConversionSettings.site_id)))
    for current in site_ids:
        with session_scope(factory) as session:
            settings = session.scalar(select(ConversionSettings).where(ConversionSettings.site_id == current))
            wanted = [p for p in enabled_platforms(settings) if p in SENT_PLATFORMS and platform in (None, p)]
        for name in wanted:
            echo(f"site {current}: {name}…")
            if name == "ga4":
                _send_ga4(factory, config, current, now, post, counts, dry_run)
            else:
                _send_metrica(factory, config, current, now, post, counts, dry_run)
            echo(f"site {current}: {name}: {counts.sent[name]} sent, {counts.total_skipped(name)} skipped, "
                 f"{counts.refused[name]} refused, {counts.failed[name]} failed (retried next run)")
    return counts


def _prepare(factory, config, site_id: int, platform: str, now: dt.datetime, counts: Counts, dry_run: bool,
             build) -> tuple[list[int], ConversionSettings | None]:
    """Log new skips, claim new sendable conversions and due retries; returns the claimed row ids."""
    with session_scope(factory) as session:
        if not dry_run:
            begin_write(session)
        site = session.get(Site, site_id)
        settings = session.scalar(select(ConversionSettings).where(ConversionSettings.site_id == site_id))
        claimed = [] if dry_run else [row.id for row in conversion_log.claim_retries(session, site_id, platform, now)]
        for conversion in candidates.find(session, site, settings, platform, now):
            try:
                if not conversion.counts:
                    raise builders.Skip("rule")
                payload = build(conversion, settings)
            except builders.Skip as skip:
                counts.skip(platform, skip.reason)
                if not dry_run:
                    conversion_log.add(session, conversion, platform, "skipped", now, reason=skip.reason)
                continue
            if dry_run:
                counts.sent[platform] += 1  # would be sent
                continue
            row = conversion_log.add(session, conversion, platform, "sending", now, payload=payload)
            if row is not None:
                claimed.append(row.id)
        session.expunge(settings)
        return claimed, settings


def _send_ga4(factory, config, site_id, now, post, counts, dry_run) -> None:
    def build(conversion, settings):
        event = settings.ga4_call_event if conversion.kind == "call" else settings.ga4_lead_event
        return builders.ga4_payload(conversion, event, now)

    claimed, settings = _prepare(factory, config, site_id, "ga4", now, counts, dry_run, build)
    url = config.get("conversions", "ga4_url") + "?" + urllib.parse.urlencode(
        {"measurement_id": settings.ga4_measurement_id, "api_secret": settings.ga4_api_secret})
    timeout, max_attempts = config.get("conversions", "timeout"), config.get("conversions", "max_attempts")
    for row_id in claimed:
        with session_scope(factory) as session:
            row = session.get(ConversionLog, row_id)
            payload = row.payload
            if row.occurred_at < now - builders.GA4_MAX_AGE:  # a retry that waited too long
                row.status, row.reason, row.updated_at = "skipped", "too_old", now
                counts.skip("ga4", "too_old")
                continue
        outcome, code, answer = _attempt(post, url, json.dumps(payload).encode(),
                                         {"Content-Type": "application/json"}, timeout)
        with session_scope(factory) as session:
            row = session.get(ConversionLog, row_id)
            written = conversion_log.finish(row, outcome, now, code, answer, max_attempts,
                                            reason=None if outcome == "sent" else
                                            ("network" if code is None else "validation" if outcome == "refused"
                                             else "unavailable"))
            getattr(counts, written)["ga4"] += 1


def multipart(field_name: str, filename: str, content: bytes, content_type: str = "text/csv") -> tuple[bytes, str]:
    """A multipart/form-data body with one file field; returns (body, Content-Type header)."""
    boundary = "astertrack-" + uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _send_metrica(factory, config, site_id, now, post, counts, dry_run) -> None:
    def build(conversion, settings):
        id_column, row = builders.metrica_row(conversion, now, call_url(config, conversion.call_id))
        return {"id_column": id_column, "row": row}

    claimed, settings = _prepare(factory, config, site_id, "metrica", now, counts, dry_run, build)
    if not claimed:
        return
    groups: dict[str, list[tuple[int, dict]]] = {}
    with session_scope(factory) as session:
        for row in session.scalars(select(ConversionLog).where(ConversionLog.id.in_(claimed))
                                   .order_by(ConversionLog.id)):
            if row.occurred_at < now - builders.METRICA_MAX_AGE:
                row.status, row.reason, row.updated_at = "skipped", "too_old", now
                counts.skip("metrica", "too_old")
                continue
            groups.setdefault(row.payload["id_column"], []).append((row.id, row.payload["row"]))
    url = (config.get("conversions", "metrica_url").rstrip("/")
           + f"/management/v1/counter/{urllib.parse.quote(settings.metrica_counter_id)}"
           + "/offline_conversions/upload_calls?" + urllib.parse.urlencode({"comment": "astertrack"}))
    timeout, max_attempts = config.get("conversions", "timeout"), config.get("conversions", "max_attempts")
    for id_column, rows in groups.items():
        text = builders.metrica_csv(id_column, [row for _, row in rows])
        body, content_type = multipart("file", "calls.csv", text.encode("utf-8"))
        outcome, code, answer = _attempt(post, url, body, {"Content-Type": content_type,
                                                           "Authorization": f"OAuth {settings.metrica_token}"},
                                         timeout)
        with session_scope(factory) as session:
            for row_id, _ in rows:
                row = session.get(ConversionLog, row_id)
                written = conversion_log.finish(row, outcome, now, code, answer, max_attempts,
                                                reason=None if outcome == "sent" else
                                                ("network" if code is None else "validation" if outcome == "refused"
                                                 else "unavailable"))
                getattr(counts, written)["metrica"] += 1
