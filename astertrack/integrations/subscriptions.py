"""Webhook subscriptions a user manages (admin page and CLI share these): create one with a
checked URL and known events (its secret returned once), pause and resume, archive (kept, with
its delivery log, once anything was queued for it), and re-send one delivery.

The secret stays readable in the database because the outbox signs every attempt with it; it
is returned only by ``create`` and never listed again.  A re-send resets the outbox row to due
now with a fresh attempt budget: the row is unique per (subscription, event, occurrence), so a
second row is impossible, and ``last_error`` keeps how many attempts came before."""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from astertrack.db.models import WebhookOutbox, WebhookSubscription
from astertrack.integrations.events import EVENTS
from astertrack.integrations.webhooks import ERROR_LIMIT

URL_MAX = 1000


class SubscriptionError(ValueError):
    """Bad input for a subscription; ``code`` names the problem for translated messages."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_url(url: str) -> str:
    """The URL stripped, or SubscriptionError: http/https with a host, no user or password in it."""
    url = (url or "").strip()
    if not url:
        raise SubscriptionError("url_empty", "the URL is empty")
    if len(url) > URL_MAX:
        raise SubscriptionError("url_long", f"the URL is longer than {URL_MAX} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise SubscriptionError("url_bad", f"not a URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SubscriptionError("url_scheme", "only http:// and https:// URLs with a host are allowed")
    if parts.username is not None or parts.password is not None:
        raise SubscriptionError("url_credentials", "a URL must not carry a user or password; the signature proves the sender")
    if any(ch.isspace() for ch in url):
        raise SubscriptionError("url_bad", "not a URL: it contains spaces")
    return url


def check_events(events: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(events))
    unknown = [event for event in chosen if event not in EVENTS]
    if unknown:
        raise SubscriptionError("event_unknown", f"unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    if not chosen:
        raise SubscriptionError("event_none", "choose at least one event")
    return [event for event in EVENTS if event in chosen]


def create(db: Session, url: str, events: Iterable[str]) -> tuple[WebhookSubscription, str]:
    """Add an enabled subscription; returns it and its secret (the only time it is handed out).  The caller commits."""
    row = WebhookSubscription(url=check_url(url), events=check_events(events), secret=secrets.token_hex(32),
                              enabled=True)
    db.add(row)
    db.flush()
    return row, row.secret


def set_enabled(row: WebhookSubscription, enabled: bool) -> bool:
    """Pause or resume; False when nothing changes (or the subscription is archived)."""
    if row.archived_at is not None or row.enabled == enabled:
        return False
    row.enabled = enabled
    return True


def archive(db: Session, row: WebhookSubscription, now: dt.datetime) -> str:
    """Archive a subscription its deliveries refer to, delete one nothing refers to; returns which."""
    if db.scalar(select(exists().where(WebhookOutbox.subscription_id == row.id))):
        row.archived_at, row.enabled = now, False
        return "archived"
    db.delete(row)
    return "deleted"


def resend(db: Session, delivery: WebhookOutbox, now: dt.datetime) -> None:
    """Make one delivery due now again, even a delivered or dead one; the caller commits."""
    subscription = db.get(WebhookSubscription, delivery.subscription_id)
    if subscription is None or subscription.archived_at is not None:
        raise SubscriptionError("archived", "the delivery's subscription is archived")
    before = f"re-sent by hand after {delivery.attempts} attempt(s)"
    if delivery.last_error:
        before += f"; last error: {delivery.last_error}"
    delivery.last_error = before[:ERROR_LIMIT]
    delivery.attempts, delivery.delivered_at, delivery.dead_at, delivery.next_attempt_at = 0, None, None, now


def delivery_state(delivery: WebhookOutbox) -> str:
    """delivered, dead (gave up), retrying (failed, will try again) or pending (not tried yet)."""
    if delivery.delivered_at is not None:
        return "delivered"
    if delivery.dead_at is not None:
        return "dead"
    return "retrying" if delivery.attempts else "pending"


@dataclass
class Listed:
    """One subscription as lists show it: never its secret."""

    id: int
    url: str
    events: list[str]
    state: str  # active, paused, archived
    last_delivery: str | None  # delivery_state of its newest delivery
    last_code: int | None


def listing(db: Session, archived: bool = True) -> list[Listed]:
    newest = (select(WebhookOutbox.subscription_id, func.max(WebhookOutbox.id).label("id"))
              .group_by(WebhookOutbox.subscription_id).subquery())
    query = (select(WebhookSubscription, WebhookOutbox)
             .outerjoin(newest, newest.c.subscription_id == WebhookSubscription.id)
             .outerjoin(WebhookOutbox, WebhookOutbox.id == newest.c.id)
             .order_by(WebhookSubscription.archived_at.is_not(None), WebhookSubscription.id))
    if not archived:
        query = query.where(WebhookSubscription.archived_at.is_(None))
    return [Listed(row.id, row.url, list(row.events or []),
                   "archived" if row.archived_at else ("active" if row.enabled else "paused"),
                   delivery_state(last) if last else None, last.response_code if last else None)
            for row, last in db.execute(query)]


def deliveries(db: Session, subscription_id: int, limit: int = 100) -> list[WebhookOutbox]:
    return list(db.scalars(select(WebhookOutbox).where(WebhookOutbox.subscription_id == subscription_id)
                           .order_by(WebhookOutbox.id.desc()).limit(limit)))
