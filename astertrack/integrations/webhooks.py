"""Webhook outbox: announce finished calls to CRMs, deliver with retries and HMAC signatures.

Two steps, both safe to run on several nodes at once:

* ``enqueue_finished_calls`` inserts one outbox row per (subscription, event, call); the unique
  constraint plus ``ON CONFLICT DO NOTHING`` means two workers never enqueue the same call twice.
* ``deliver_due`` claims due rows with a short lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
  the SQLite write lock elsewhere), posts them *outside* the transaction, then records the result.
  Delivery is at-least-once: receivers de-duplicate by the ``X-Astertrack-Delivery`` header.

Each attempt is signed at the time it is sent: ``X-Astertrack-Signature-V2`` is an HMAC of the
``X-Astertrack-Timestamp``, the delivery id and the body, so a captured request cannot be replayed
later (receivers refuse old timestamps) or passed off as another delivery.  The body-only
``X-Astertrack-Signature`` is still sent for one release so receivers can switch over; the
receiver's side, with a tested example, is in docs/webhooks.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import Call, Manager, Source, WebhookOutbox, WebhookSubscription

EVENT_FINISHED = "call.finished"
EVENT_MISSED = "call.missed"
EVENTS = (EVENT_FINISHED, EVENT_MISSED)  # what a subscription can ask for
MISSED_OUTCOMES = ("missed", "busy")
LOOKBACK = dt.timedelta(hours=24)  # calls older than this are never announced (e.g. a new subscription)
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
CLAIM_LEASE = dt.timedelta(minutes=5)  # a crashed worker's claimed rows come back after this
GAVE_UP_DELAY = dt.timedelta(days=36500)
TIMEOUT_SECONDS = 5
ERROR_LIMIT = 500
EXCERPT_LIMIT = 300  # the start of the receiver's answer kept for the delivery log
USER_AGENT = "astertrack-webhooks/1"

# post(url, body, headers, timeout) -> HTTP status, or (status, start of the answer); raises on network errors.
Poster = Callable[[str, bytes, dict[str, str], float], int | tuple[int, bytes]]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def call_payload(call: Call, source_name: str | None, manager_endpoint: str | None) -> dict[str, Any]:
    """What a CRM needs to create a lead: no recording paths, no raw AMI data."""
    return {
        "call_id": call.id,
        "call_uid": call.call_uid,
        "site_id": call.site_id,
        "did": call.did,
        "caller_number": call.caller_number,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "outcome": call.outcome,
        "missed_reason": call.missed_reason,
        "wait_seconds": call.wait_seconds,
        "talk_seconds": call.talk_seconds,
        "manager_endpoint": manager_endpoint or call.answered_by,
        "source": source_name,
        "utm_source": call.utm_source,
        "utm_medium": call.utm_medium,
        "utm_campaign": call.utm_campaign,
        "keyword": call.keyword,
        "is_first_call": call.is_first_call,
        "recording_state": call.recording_state,
    }


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(WebhookOutbox)


def enqueue_finished_calls(session: Session, now: dt.datetime, batch: int = 500) -> int:
    """Add outbox rows for finished calls of the last 24 h not yet queued; returns rows inserted.

    The caller commits.  Each (subscription, event) pass takes at most ``batch`` calls, so a
    backlog drains over several passes instead of one huge transaction.
    """
    subscriptions = session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.enabled.is_(True), WebhookSubscription.archived_at.is_(None))).all()
    inserted = 0
    for subscription in subscriptions:
        for event in (EVENT_FINISHED, EVENT_MISSED):
            if event not in (subscription.events or []):
                continue
            already = exists().where(WebhookOutbox.subscription_id == subscription.id,
                                     WebhookOutbox.event == event, WebhookOutbox.call_id == Call.id)
            query = (select(Call, Source.name, Manager.endpoint)
                     .outerjoin(Source, Source.id == Call.source_id)
                     .outerjoin(Manager, Manager.id == Call.manager_id)
                     .where(Call.state == "finished",
                            # a call a gap touched waits for Asterisk's CDR: a CRM never gets a guess
                            func.coalesce(Call.reconcile_state, "") != "pending",
                            func.coalesce(Call.ended_at, Call.started_at) >= now - LOOKBACK,
                            ~already)
                     .order_by(Call.id).limit(batch))
            if event == EVENT_MISSED:
                query = query.where(Call.outcome.in_(MISSED_OUTCOMES))
            rows = [{"subscription_id": subscription.id, "event": event, "call_id": call.id,
                     "payload": {"event": event, **call_payload(call, source, endpoint)},
                     "created_at": now, "next_attempt_at": now, "attempts": 0}
                    for call, source, endpoint in session.execute(query)]
            if not rows:
                continue
            statement = _insert(session).values(rows).on_conflict_do_nothing(
                index_elements=["subscription_id", "event", "call_id"]).returning(WebhookOutbox.id)
            inserted += len(session.execute(statement).all())  # rowcount is -1 on psycopg for this
    return inserted


SIGNATURE_HEADER = "X-Astertrack-Signature-V2"
TIMESTAMP_HEADER = "X-Astertrack-Timestamp"
DELIVERY_HEADER = "X-Astertrack-Delivery"
LEGACY_SIGNATURE_HEADER = "X-Astertrack-Signature"  # body only: deprecated, dropped in the next release


def sign(secret: str, body: bytes) -> str:
    """The deprecated ``X-Astertrack-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign_v2(secret: str, timestamp: int, delivery: str, body: bytes) -> str:
    """The ``X-Astertrack-Signature-V2`` value: ``sha256=`` + hex HMAC-SHA256 of
    ``"<timestamp>.<delivery id>."`` followed by the raw body."""
    signed = f"{timestamp}.{delivery}.".encode("ascii") + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> dt.timedelta:
    """30 s after the first failure, doubling, at most an hour."""
    return dt.timedelta(seconds=min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)))


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked by caller
            return response.status, response.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(65536)


def _claim(session_factory: sessionmaker[Session], now: dt.datetime, limit: int) -> list[tuple[int, str, str, str, dict]]:
    with session_scope(session_factory) as session:
        begin_write(session)
        query = (select(WebhookOutbox.id)
                 .join(WebhookSubscription, WebhookSubscription.id == WebhookOutbox.subscription_id)
                 .where(WebhookOutbox.delivered_at.is_(None), WebhookOutbox.next_attempt_at <= now,
                        WebhookOutbox.dead_at.is_(None),
                        WebhookSubscription.enabled.is_(True), WebhookSubscription.archived_at.is_(None))
                 .order_by(WebhookOutbox.next_attempt_at, WebhookOutbox.id).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=WebhookOutbox)
        ids = list(session.scalars(query))
        if not ids:
            return []
        session.execute(update(WebhookOutbox).where(WebhookOutbox.id.in_(ids))
                        .values(next_attempt_at=now + CLAIM_LEASE))
        rows = session.execute(select(WebhookOutbox.id, WebhookOutbox.event, WebhookSubscription.url,
                                      WebhookSubscription.secret, WebhookOutbox.payload)
                               .join(WebhookSubscription, WebhookSubscription.id == WebhookOutbox.subscription_id)
                               .where(WebhookOutbox.id.in_(ids)).order_by(WebhookOutbox.id)).all()
    return [tuple(row) for row in rows]


def _attempt(post: Poster, outbox_id: int, event: str, url: str, secret: str,
             payload: dict) -> tuple[str | None, int | None, str | None]:
    """Post one delivery: (None on success else a short error for ``last_error``, the HTTP status,
    the start of the receiver's answer)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return (f"unsupported URL scheme {scheme or '(none)'!r} in {url[:200]!r}: only http and https are allowed",
                None, None)
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    delivery, timestamp = str(outbox_id), int(time.time())  # the wall clock of this attempt: retries re-sign
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Astertrack-Event": event,
               DELIVERY_HEADER: delivery, TIMESTAMP_HEADER: str(timestamp),
               SIGNATURE_HEADER: sign_v2(secret, timestamp, delivery, body),
               LEGACY_SIGNATURE_HEADER: sign(secret, body)}
    try:
        answer = post(url, body, headers, TIMEOUT_SECONDS)
    except Exception as exc:  # network errors of every kind are retried
        return f"{type(exc).__name__}: {exc}", None, None
    status, raw = answer if isinstance(answer, tuple) else (answer, b"")
    excerpt = raw[:EXCERPT_LIMIT * 4].decode("utf-8", "replace")[:EXCERPT_LIMIT]
    return (None if 200 <= status < 300 else f"HTTP {status}"), status, excerpt


def deliver_due(session_factory: sessionmaker[Session], now: dt.datetime, post: Poster | None = None,
                max_attempts: int = 8, limit: int = 50) -> dict[str, int]:
    """Deliver due outbox rows; returns counts of claimed, delivered, failed (will retry) and gave_up."""
    post = post or urllib_post
    counts = {"claimed": 0, "delivered": 0, "failed": 0, "gave_up": 0}
    claimed = _claim(session_factory, now, limit)
    counts["claimed"] = len(claimed)
    for outbox_id, event, url, secret, payload in claimed:
        error, code, excerpt = _attempt(post, outbox_id, event, url, secret, payload)
        with session_scope(session_factory) as session:
            begin_write(session)
            row = session.get(WebhookOutbox, outbox_id)
            if row is None:  # deleted meanwhile (subscription removed)
                continue
            row.attempts += 1
            row.response_code, row.response_excerpt = code, excerpt
            if error is None:
                row.delivered_at = now
                row.last_error = None
                counts["delivered"] += 1
            elif row.attempts >= max_attempts:
                row.last_error = f"gave up after {row.attempts} attempts; last error: {error}"[:ERROR_LIMIT]
                row.next_attempt_at = now + GAVE_UP_DELAY
                row.dead_at = now  # the dead letter: only a manual re-send brings it back
                counts["gave_up"] += 1
            else:
                row.last_error = error[:ERROR_LIMIT]
                row.next_attempt_at = now + backoff(row.attempts)
                counts["failed"] += 1
    return counts


def run_once(session_factory: sessionmaker[Session], now: dt.datetime, post: Poster | None = None,
             max_attempts: int = 8) -> dict[str, int]:
    """One worker pass: enqueue new calls, then deliver what is due."""
    with session_scope(session_factory) as session:
        begin_write(session)
        enqueued = enqueue_finished_calls(session, now)
    return {"enqueued": enqueued, **deliver_due(session_factory, now, post=post, max_attempts=max_attempts)}

