"""Webhook outbox: announce calls, leads, deals and website chats to CRMs, deliver with retries and HMAC signatures.

Two steps, both safe to run on several nodes at once:

* ``enqueue`` scans for occurrences of every event (``events.EVENTS``) of the last 24 hours and
  inserts one outbox row per (subscription, event, subject): the subject names the occurrence
  ("call:12", "lead:5", "lead:5@<updated_at>", "deal:5@<deal_updated_at>", "chat:7", a chat's
  message "chat:7#3"), and the unique
  constraint plus ``ON CONFLICT DO NOTHING`` means two workers never enqueue one occurrence twice.
  Every body is built through the pydantic models of ``events``, so it matches the documented one.
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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, and_, cast, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import (
    Call,
    Chat,
    ChatMessage,
    Enquiry,
    Lead,
    Manager,
    Source,
    VisitorSession,
    WebhookOutbox,
    WebhookSubscription,
)
from astertrack.integrations import events as ev

EVENT_FINISHED = ev.CALL_FINISHED
EVENT_MISSED = ev.CALL_MISSED
EVENTS = ev.EVENTS  # what a subscription can ask for: one list, in events.py
MISSED_OUTCOMES = ("missed", "busy")
# Occurrences older than this are never announced: a subscription created today is not flooded
# with last year's calls and leads, and a worker that was down longer skips what it missed.
LOOKBACK = dt.timedelta(hours=24)
MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 3600.0
CLAIM_LEASE = dt.timedelta(minutes=5)  # a crashed worker's claimed rows come back after this
GAVE_UP_DELAY = dt.timedelta(days=36500)
TIMEOUT_SECONDS = 5
ERROR_LIMIT = 500
EXCERPT_LIMIT = 300  # the start of the receiver's answer kept for the delivery log
USER_AGENT = "astertrack-webhooks/1"

# post(url, body, headers, timeout) -> HTTP status, or (status, start of the answer); raises on network errors.
Poster = Callable[[str, bytes, dict[str, str], float], int | tuple[int, bytes]]


@dataclass(frozen=True)
class Retry:
    """How failed deliveries are retried (``[webhooks]`` in the configuration)."""

    max_attempts: int = MAX_ATTEMPTS
    base_seconds: float = BASE_BACKOFF_SECONDS  # after the first failure, doubling
    max_seconds: float = MAX_BACKOFF_SECONDS  # the longest wait between two attempts

    @classmethod
    def from_config(cls, config: Any) -> Retry:
        return cls(max_attempts=max(1, int(config.get("webhooks", "max_attempts"))),
                   base_seconds=float(config.get("webhooks", "retry_base_seconds")),
                   max_seconds=float(config.get("webhooks", "retry_max_seconds")))


def call_payload(call: Call, source_name: str | None, manager_endpoint: str | None,
                 event: str = EVENT_FINISHED) -> dict[str, Any]:
    """What a CRM needs about a call (the documented ``CallEventBody``)."""
    return ev.call_body(event, call, source_name, manager_endpoint)


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(WebhookOutbox)


def _stamp(value: dt.datetime) -> str:
    """One spelling of a version's time in a subject, whatever the database returned."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _call_rows(session: Session, subscription_id: int, event: str, now: dt.datetime, batch: int) -> list[dict]:
    cutoff = now - LOOKBACK
    already = exists().where(WebhookOutbox.subscription_id == subscription_id, WebhookOutbox.event == event,
                             WebhookOutbox.call_id == Call.id)
    query = (select(Call, Source.name, Manager.endpoint)
             .outerjoin(Source, Source.id == Call.source_id)
             .outerjoin(Manager, Manager.id == Call.manager_id)
             .where(~already).order_by(Call.id).limit(batch))
    if event == ev.CALL_RINGING:  # every call that started, whatever became of it since
        query = query.where(Call.started_at >= cutoff)
    elif event == ev.CALL_ANSWERED:
        query = query.where(Call.answered_at.is_not(None), Call.answered_at >= cutoff)
    else:
        query = query.where(Call.state == "finished",
                            # a call a gap touched waits for Asterisk's CDR: a CRM never gets a guessed outcome
                            func.coalesce(Call.reconcile_state, "") != "pending",
                            func.coalesce(Call.ended_at, Call.started_at) >= cutoff)
        if event == ev.CALL_MISSED:
            query = query.where(Call.outcome.in_(MISSED_OUTCOMES))
    return [{"subject": f"call:{call.id}", "call_id": call.id, "lead_id": None, "occurred_at": None,
             "payload": ev.call_body(event, call, source, endpoint)}
            for call, source, endpoint in session.execute(query)]


def _lead_rows(session: Session, subscription_id: int, event: str, now: dt.datetime, batch: int) -> list[dict]:
    cutoff = now - LOOKBACK
    mine = and_(WebhookOutbox.subscription_id == subscription_id, WebhookOutbox.event == event,
                WebhookOutbox.lead_id == Lead.id)
    version = {ev.LEAD_UPDATED: Lead.updated_at, ev.DEAL_UPDATED: Lead.deal_updated_at}.get(event)
    query = select(Lead, Source.name).outerjoin(Source, Source.id == Lead.source_id).limit(batch)
    if version is None:  # lead.created: once per lead
        query = query.where(Lead.created_at >= cutoff, ~exists().where(mine)).order_by(Lead.id)
    else:  # once per version: a later change is a new occurrence (the newest snapshot is what is sent)
        query = query.where(version.is_not(None), version >= cutoff,
                            ~exists().where(mine, WebhookOutbox.occurred_at == version)).order_by(version, Lead.id)
    rows = []
    for lead, source in session.execute(query):
        at = getattr(lead, version.key) if version is not None else None
        subject = (f"lead:{lead.id}" if event == ev.LEAD_CREATED
                   else f"{'deal' if event == ev.DEAL_UPDATED else 'lead'}:{lead.id}@{_stamp(at)}")
        rows.append({"subject": subject, "call_id": None, "lead_id": lead.id, "occurred_at": at,
                     "payload": ev.lead_body(event, lead, source)})
    return rows


def _chat_rows(session: Session, subscription_id: int, event: str, now: dt.datetime, batch: int) -> list[dict]:
    """Chats started or closed, and the messages people wrote, not yet queued for the subscription.
    The subject is built in SQL from the chat's id (and a message's number), so the unique key's
    index answers "already queued?" and no cursor of our own is needed."""
    cutoff = now - LOOKBACK
    chat_subject = literal("chat:") + cast(Chat.id, String)
    if event == ev.CHAT_MESSAGE:
        subject = chat_subject + literal("#") + cast(ChatMessage.seq, String)
        already = exists().where(WebhookOutbox.subscription_id == subscription_id, WebhookOutbox.event == event,
                                 WebhookOutbox.subject == subject)
        # chats changed in the window first (an indexed column), then their messages by (chat, seq)
        query = (select(Chat, ChatMessage, Manager.name).join(ChatMessage, ChatMessage.chat_id == Chat.id)
                 .outerjoin(Manager, Manager.id == ChatMessage.manager_id)
                 .where(Chat.updated_at >= cutoff, ChatMessage.at >= cutoff, ChatMessage.kind == "text",
                        ChatMessage.author.in_(("visitor", "manager")), ~already)
                 .order_by(ChatMessage.id).limit(batch))
        return [{"subject": f"chat:{chat.id}#{message.seq}", "call_id": None, "lead_id": None, "occurred_at": message.at,
                 "payload": ev.chat_message_body(chat, message, manager)}
                for chat, message, manager in session.execute(query)]
    already = exists().where(WebhookOutbox.subscription_id == subscription_id, WebhookOutbox.event == event,
                             WebhookOutbox.subject == chat_subject)
    if event == ev.CHAT_STARTED:
        query = (select(Chat, VisitorSession, Source.name)
                 .outerjoin(VisitorSession, VisitorSession.id == Chat.session_id)
                 .outerjoin(Source, Source.id == VisitorSession.source_id)
                 .where(Chat.created_at >= cutoff, ~already).order_by(Chat.id).limit(batch))
        return [{"subject": f"chat:{chat.id}", "call_id": None, "lead_id": None, "occurred_at": chat.created_at,
                 "payload": ev.chat_started_body(chat, visit, source)}
                for chat, visit, source in session.execute(query)]
    written = (select(func.count()).select_from(ChatMessage)
               .where(ChatMessage.chat_id == Chat.id, ChatMessage.author != "system").scalar_subquery())
    query = (select(Chat, Manager.name, written, Enquiry.lead_id)
             .outerjoin(Manager, Manager.id == Chat.manager_id)
             .outerjoin(Enquiry, Enquiry.id == Chat.enquiry_id)
             .where(Chat.status == "closed", Chat.closed_at >= cutoff, ~already).order_by(Chat.id).limit(batch))
    return [{"subject": f"chat:{chat.id}", "call_id": None, "lead_id": lead_id, "occurred_at": chat.closed_at,
             "payload": ev.chat_closed_body(chat, manager, count, lead_id)}
            for chat, manager, count, lead_id in session.execute(query)]


def enqueue(session: Session, now: dt.datetime, batch: int = 500) -> int:
    """Add outbox rows for occurrences of the last 24 h not yet queued; returns rows inserted.

    The caller commits.  Each (subscription, event) pass takes at most ``batch`` occurrences, so a
    backlog drains over several passes instead of one huge transaction.
    """
    subscriptions = session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.enabled.is_(True), WebhookSubscription.archived_at.is_(None))
        .order_by(WebhookSubscription.id)).all()
    inserted = 0
    for subscription in subscriptions:
        for event in EVENTS:  # this order, so a call's ringing row is older (sent first) than its answer
            if event not in (subscription.events or []):
                continue
            scan = (_call_rows if event in ev.CALL_EVENTS else _chat_rows if event in ev.CHAT_EVENTS
                    else _lead_rows)
            rows = [{"subscription_id": subscription.id, "event": event, "created_at": now,
                     "next_attempt_at": now, "attempts": 0, **row}
                    for row in scan(session, subscription.id, event, now, batch)]
            if not rows:
                continue
            statement = _insert(session).values(rows).on_conflict_do_nothing(
                index_elements=["subscription_id", "event", "subject"]).returning(WebhookOutbox.id)
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


def backoff(attempts: int, retry: Retry | None = None) -> dt.timedelta:
    """The wait after ``attempts`` failures: 30 s after the first (by default), doubling, at most an hour."""
    retry = retry or Retry()
    return dt.timedelta(seconds=min(retry.max_seconds, retry.base_seconds * 2 ** max(attempts - 1, 0)))


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
                max_attempts: int | None = None, limit: int = 50, retry: Retry | None = None) -> dict[str, int]:
    """Deliver due outbox rows; returns counts of claimed, delivered, failed (will retry) and gave_up.
    ``max_attempts`` (when given) overrides ``retry.max_attempts``."""
    post = post or urllib_post
    retry = retry or Retry()
    if max_attempts is not None:
        retry = Retry(max_attempts, retry.base_seconds, retry.max_seconds)
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
            elif row.attempts >= retry.max_attempts:
                row.last_error = f"gave up after {row.attempts} attempts; last error: {error}"[:ERROR_LIMIT]
                row.next_attempt_at = now + GAVE_UP_DELAY
                row.dead_at = now  # the dead letter: only a manual re-send brings it back
                counts["gave_up"] += 1
            else:
                row.last_error = error[:ERROR_LIMIT]
                row.next_attempt_at = now + backoff(row.attempts, retry)
                counts["failed"] += 1
    return counts


def run_once(session_factory: sessionmaker[Session], now: dt.datetime, post: Poster | None = None,
             max_attempts: int | None = None, retry: Retry | None = None) -> dict[str, int]:
    """One worker pass: enqueue new occurrences, then deliver what is due."""
    with session_scope(session_factory) as session:
        begin_write(session)
        enqueued = enqueue(session, now)
    return {"enqueued": enqueued, **deliver_due(session_factory, now, post=post, max_attempts=max_attempts,
                                                retry=retry)}
