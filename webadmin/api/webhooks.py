"""``/api/v1/webhooks``: webhook subscriptions through the API, with the same core as the admin's
page and CLI (``astertrack.integrations.subscriptions``): the secret answered once, pause/resume,
DELETE archives (deletes only a subscription nothing was queued for), the delivery log, re-send.

Every operation needs a token of every site: a subscription is not per site, and its deliveries
carry every site's calls and leads.  Changes need a write token and are in the audit log."""

from __future__ import annotations

from sqlalchemy import func, select

from astertrack.audit import log as audit_log
from astertrack.db.models import WebhookOutbox, WebhookSubscription
from astertrack.db.types import utcnow
from astertrack.integrations import subscriptions
from webadmin.api import bp
from webadmin.api.auth import ApiError, current_token
from webadmin.api.leads import AUDIT_LOGIN, _ApiActor
from webadmin.api.registry import found, operation, paginate
from webadmin.api.schemas import (
    DeliveryList,
    DeliveryOut,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    WebhookRemoved,
)
from webadmin.db import get_session

AUDIT_KIND = "webhooks"  # the admin page's kind: one history for both


def _fields(row: WebhookSubscription) -> dict:
    return {"url": row.url, "events": list(row.events or []), "enabled": row.enabled,
            "archived_at": row.archived_at.isoformat() if row.archived_at else None}


def _audit(db, action: str, row: WebhookSubscription, before: dict | None, after: dict | None) -> None:
    token = current_token()
    audit_log.record(db, action, AUDIT_KIND, row, before, after,
                     user=_ApiActor(token.user_id, AUDIT_LOGIN.format(prefix=token.prefix)))


def _state(row: WebhookSubscription) -> str:
    return "archived" if row.archived_at else ("active" if row.enabled else "paused")


def _out(row: WebhookSubscription, last: WebhookOutbox | None) -> WebhookOut:
    return WebhookOut(id=row.id, url=row.url, events=list(row.events or []), state=_state(row),
                      archived_at=row.archived_at, last_delivery=subscriptions.delivery_state(last) if last else None,
                      last_response_code=last.response_code if last else None)


def _with_last(db, row: WebhookSubscription) -> WebhookOut:
    last = db.scalars(select(WebhookOutbox).where(WebhookOutbox.subscription_id == row.id)
                      .order_by(WebhookOutbox.id.desc()).limit(1)).first()
    return _out(row, last)


def _delivery_out(row: WebhookOutbox) -> DeliveryOut:
    return DeliveryOut(id=row.id, subscription_id=row.subscription_id, event=row.event, call_id=row.call_id,
                       payload=row.payload or {}, state=subscriptions.delivery_state(row), attempts=row.attempts,
                       created_at=row.created_at, next_attempt_at=row.next_attempt_at, delivered_at=row.delivered_at,
                       dead_at=row.dead_at, response_code=row.response_code, response_excerpt=row.response_excerpt,
                       last_error=row.last_error)


def _bad(error: subscriptions.SubscriptionError, field: str) -> ApiError:
    return ApiError(400, "invalid_parameter", str(error),
                    [{"field": field, "message": str(error), "type": error.code}])


@bp.get("/webhooks")
@operation("Webhooks", "List subscriptions", query=Page, response=WebhookList, all_sites=True,
           description="Archived ones too (state `archived`); never a secret.")
def webhooks(query: Page):
    db = get_session()
    result = paginate(db, select(WebhookSubscription), WebhookSubscription.id, query, lambda row: row[0])
    rows = result["items"]
    newest = dict(db.execute(select(WebhookOutbox.subscription_id, func.max(WebhookOutbox.id))
                             .where(WebhookOutbox.subscription_id.in_([r.id for r in rows]))
                             .group_by(WebhookOutbox.subscription_id)).all()) if rows else {}
    last = {d.subscription_id: d for d in db.scalars(select(WebhookOutbox).where(WebhookOutbox.id.in_(newest.values())))}
    return WebhookList(items=[_out(row, last.get(row.id)) for row in rows], next_cursor=result["next_cursor"])


@bp.post("/webhooks")
@operation("Webhooks", "Subscribe", body=WebhookCreate, response=WebhookCreated, scope="write", all_sites=True,
           status=201, description="The answer holds the signing secret: the only time it is given out.")
def webhook_create(body: WebhookCreate):
    db = get_session()
    try:
        url = subscriptions.check_url(body.url)
    except subscriptions.SubscriptionError as error:
        raise _bad(error, "url") from None
    row, secret = subscriptions.create(db, url, body.events)
    _audit(db, "create", row, None, _fields(row))
    return WebhookCreated(**_out(row, None).model_dump(), secret=secret)


def _subscription(db, subscription_id: int) -> WebhookSubscription:
    return found(db.get(WebhookSubscription, subscription_id), "subscription", subscription_id)


@bp.get("/webhooks/<int:subscription_id>")
@operation("Webhooks", "One subscription", response=WebhookOut, all_sites=True)
def webhook(subscription_id: int):
    db = get_session()
    return _with_last(db, _subscription(db, subscription_id))


@bp.patch("/webhooks/<int:subscription_id>")
@operation("Webhooks", "Pause or resume a subscription", body=WebhookPatch, response=WebhookOut, scope="write",
           all_sites=True, errors=[(409, "archived")])
def webhook_patch(subscription_id: int, body: WebhookPatch):
    db = get_session()
    row = _subscription(db, subscription_id)
    if row.archived_at is not None:
        raise ApiError(409, "archived", "an archived subscription cannot be paused or resumed")
    before = _fields(row)
    if subscriptions.set_enabled(row, body.enabled):
        db.flush()
        _audit(db, "update", row, before, _fields(row))
    return _with_last(db, row)


@bp.delete("/webhooks/<int:subscription_id>")
@operation("Webhooks", "Archive a subscription", response=WebhookRemoved, scope="write", all_sites=True,
           description="Nothing more is sent to it. Kept with its delivery log (archived) when anything was "
                       "queued for it; a subscription nothing refers to is deleted. Archiving twice is harmless.")
def webhook_delete(subscription_id: int):
    db = get_session()
    row = _subscription(db, subscription_id)
    if row.archived_at is not None:
        return WebhookRemoved(id=row.id, result="archived")
    before = _fields(row)
    result = subscriptions.archive(db, row, utcnow())
    db.flush()
    _audit(db, "archive" if result == "archived" else "delete", row, before,
           _fields(row) if result == "archived" else None)
    return WebhookRemoved(id=subscription_id, result=result)


@bp.get("/webhooks/<int:subscription_id>/deliveries")
@operation("Webhooks", "A subscription's delivery log", query=Page, response=DeliveryList, all_sites=True,
           description="Newest first, with the receiver's status code and the start of its answer.")
def webhook_deliveries(subscription_id: int, query: Page):
    db = get_session()
    row = _subscription(db, subscription_id)
    stmt = select(WebhookOutbox).where(WebhookOutbox.subscription_id == row.id)
    return DeliveryList(**paginate(db, stmt, WebhookOutbox.id, query, lambda r: _delivery_out(r[0])))


@bp.post("/webhooks/deliveries/<int:delivery_id>/resend")
@operation("Webhooks", "Re-send a delivery", response=DeliveryOut, scope="write", all_sites=True,
           errors=[(409, "archived")],
           description="Due again now with a fresh attempt budget, even when delivered or dead.")
def webhook_resend(delivery_id: int):
    db = get_session()
    delivery = found(db.get(WebhookOutbox, delivery_id), "delivery", delivery_id)
    row = db.get(WebhookSubscription, delivery.subscription_id)
    before = _fields(row)
    try:
        subscriptions.resend(db, delivery, utcnow())
    except subscriptions.SubscriptionError as error:
        raise ApiError(409, "archived", str(error)) from None
    db.flush()
    _audit(db, "update", row, before, {**_fields(row), "resent_delivery": delivery_id})
    return _delivery_out(delivery)
