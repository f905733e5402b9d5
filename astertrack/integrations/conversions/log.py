"""The incremental log: one row per site, platform and conversion (``call:12``, ``lead:5@won``).

A row is inserted *before* anything is sent (status ``sending``), so two runs at once never send
the same conversion twice: the unique key lets only one of them claim it.  Afterwards it says
``sent``, ``refused`` (the platform said no: never retried, the answer kept), ``failed`` (a network
error or a busy platform: retried on later runs, up to ``max_attempts``), ``skipped`` (and why) or
``exported`` (written to an upload file with ``--mark``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from astertrack.db.models import ConversionLog
from astertrack.integrations.conversions.subjects import Conversion

STATUSES = ("sending", "sent", "refused", "failed", "skipped", "exported")
EXCERPT_LIMIT = 500
CLAIM_LEASE = dt.timedelta(minutes=10)  # a run that died mid-send gives its rows back after this


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ConversionLog)


def add(session: Session, conversion: Conversion, platform: str, status: str, now: dt.datetime,
        reason: str | None = None, payload: dict[str, Any] | None = None) -> ConversionLog | None:
    """Insert the conversion's row; None when another run logged it first."""
    values = {"site_id": conversion.site_id, "platform": platform, "subject": conversion.subject,
              "call_id": conversion.call_id, "lead_id": conversion.lead_id, "status": status, "reason": reason,
              "occurred_at": conversion.occurred_at, "value": conversion.value, "currency": conversion.currency,
              "payload": payload, "attempts": 0, "created_at": now, "updated_at": now}
    row_id = session.execute(_insert(session).values(**values)
                             .on_conflict_do_nothing(index_elements=["site_id", "platform", "subject"])
                             .returning(ConversionLog.id)).scalar_one_or_none()  # rowcount is -1 on psycopg
    return None if row_id is None else session.get(ConversionLog, row_id)


def claim_retries(session: Session, site_id: int, platform: str, now: dt.datetime) -> list[ConversionLog]:
    """Rows a network error stopped (or a run that died left ``sending``), claimed for this run."""
    candidates = session.scalars(select(ConversionLog.id).where(
        ConversionLog.site_id == site_id, ConversionLog.platform == platform,
        or_(ConversionLog.status == "failed",
            (ConversionLog.status == "sending") & (ConversionLog.updated_at < now - CLAIM_LEASE)))
        .order_by(ConversionLog.id)).all()
    claimed = []
    for row_id in candidates:
        result = session.execute(update(ConversionLog).where(
            ConversionLog.id == row_id,
            or_(ConversionLog.status == "failed",
                (ConversionLog.status == "sending") & (ConversionLog.updated_at < now - CLAIM_LEASE)))
            .values(status="sending", updated_at=now))
        if result.rowcount == 1:
            claimed.append(session.get(ConversionLog, row_id, populate_existing=True))
    return claimed


def finish(row: ConversionLog, outcome: str, now: dt.datetime, code: int | None, answer: str | None,
           max_attempts: int, reason: str | None = None) -> str:
    """Record one attempt's outcome (sent|refused|failed); a failure past ``max_attempts`` is
    refused (``gave_up``).  Returns the status written."""
    row.attempts = (row.attempts or 0) + 1
    row.response_code = code
    row.response_excerpt = (answer or "")[:EXCERPT_LIMIT] or None
    row.updated_at = now
    if outcome == "failed" and row.attempts >= max_attempts:
        outcome, reason = "refused", "gave_up"
    row.status = outcome
    row.reason = reason if outcome != "sent" else None
    return outcome
