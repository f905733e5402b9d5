"""The webhooks page: subscriptions (never their secrets, except once on the answer that created
one), their buttons, and one subscription's delivery log with a re-send button per delivery.
Every change is written to the settings audit log with the change itself."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from astertrack.db.engine import begin_write
from astertrack.db.models import WebhookOutbox, WebhookSubscription
from astertrack.db.types import utcnow
from astertrack.integrations import subscriptions
from astertrack.integrations.events import EVENTS
from webadmin.db import get_session
from webadmin.labels import VOCABULARIES
from webadmin.security import roles_required
from webadmin.settings.audit import record_change
from webadmin.webhooks import bp

AUDIT_KIND = "webhooks"
EVENT_LABELS = {event: VOCABULARIES["webhook_event"][event] for event in EVENTS}  # lazy: in the page's language
STATE_LABELS = {"active": _l("Delivering"), "paused": _l("Paused"), "archived": _l("Archived")}
DELIVERY_LABELS = {"delivered": _l("Delivered"), "dead": _l("Gave up"), "retrying": _l("Failed, will retry"),
                   "pending": _l("Waiting")}
URL_ERRORS = {"url_empty": _l("Enter the receiver’s URL."),
              "url_long": _l("The URL is too long (at most 1000 characters)."),
              "url_bad": _l("This is not a valid URL."),
              "url_scheme": _l("Only http:// and https:// addresses with a host are allowed."),
              "url_credentials": _l("Do not put a user or password in the URL: the signature proves the sender.")}
EVENT_ERRORS = {"event_none": _l("Choose at least one event."), "event_unknown": _l("Unknown event.")}


class SubscriptionForm(FlaskForm):
    url = StringField(_l("Receiver URL"), description=_l("Your CRM’s address that accepts POST requests."))
    events = SelectMultipleField(_l("Events"), choices=[SelectChoice(event, label) for event, label in EVENT_LABELS.items()],
                                 widget=ListWidget(prefix_label=False), option_widget=CheckboxInput(),
                                 validate_choice=False)

    def validate_url(self, field):
        try:
            field.data = subscriptions.check_url(field.data)
        except subscriptions.SubscriptionError as exc:
            raise ValidationError(URL_ERRORS[exc.code]) from exc

    def validate_events(self, field):
        try:
            field.data = subscriptions.check_events(field.data or [])
        except subscriptions.SubscriptionError as exc:
            raise ValidationError(EVENT_ERRORS[exc.code]) from exc


class ButtonForm(FlaskForm):
    """Pause, resume, archive and re-send: only the CSRF token."""


def _fields(row: WebhookSubscription) -> dict:
    return {"url": row.url, "events": list(row.events or []), "enabled": row.enabled,
            "archived_at": row.archived_at.isoformat() if row.archived_at else None}


def _page(form: SubscriptionForm, shown: tuple[WebhookSubscription, str] | None = None, status: int = 200):
    return render_template("webhooks/index.html", form=form, rows=subscriptions.listing(get_session()), shown=shown,
                           button=ButtonForm(formdata=None), event_labels=EVENT_LABELS, state_labels=STATE_LABELS,
                           delivery_labels=DELIVERY_LABELS), status


@bp.get("/")
@roles_required("admin")
def index():
    return _page(SubscriptionForm(formdata=None))


@bp.post("/")
@roles_required("admin")
def create():
    form = SubscriptionForm()
    if not form.validate():
        return _page(form, status=400)
    db = get_session()
    db.commit()
    begin_write(db)
    row, secret = subscriptions.create(db, form.url.data, form.events.data)
    if not record_change(db, "create", AUDIT_KIND, row, None, lambda: _fields(row)):
        flash(_("The subscription was not created; try again."), "error")
        return redirect(url_for("webhooks.index"))
    # The only time the secret is shown: on this answer, which is never cached (Cache-Control: no-store).
    return _page(SubscriptionForm(formdata=None), shown=(row, secret))


def _change(subscription_id: int, change, extra: dict | None = None) -> bool:
    """Run ``change(db, row)`` (the audit action, or None when nothing changes) under the write
    lock, with its audit row; True when something changed."""
    if not ButtonForm().validate():
        flash(_("The form expired; try again."), "error")
        return False
    db = get_session()
    db.commit()
    begin_write(db)
    row = db.get(WebhookSubscription, subscription_id)
    if row is None:
        db.rollback()
        abort(404)
    before = _fields(row)
    action = change(db, row)
    if not action:
        db.rollback()
        return False
    after = None if action == "delete" else {**_fields(row), **(extra or {})}
    return record_change(db, action, AUDIT_KIND, row, before, lambda: after)


@bp.post("/<int:subscription_id>/pause")
@roles_required("admin")
def pause(subscription_id: int):
    if _change(subscription_id, lambda db, row: subscriptions.set_enabled(row, False) and "update"):
        flash(_("Subscription paused: deliveries wait until you resume it."), "ok")
    return redirect(url_for("webhooks.index"))


@bp.post("/<int:subscription_id>/resume")
@roles_required("admin")
def resume(subscription_id: int):
    if _change(subscription_id, lambda db, row: subscriptions.set_enabled(row, True) and "update"):
        flash(_("Subscription resumed."), "ok")
    return redirect(url_for("webhooks.index"))


@bp.post("/<int:subscription_id>/archive")
@roles_required("admin")
def archive(subscription_id: int):
    def change(db, row):
        if row.archived_at is not None:
            return None
        return "archive" if subscriptions.archive(db, row, utcnow()) == "archived" else "delete"

    if _change(subscription_id, change):
        flash(_("Subscription archived: nothing more is sent to it."), "ok")
    return redirect(url_for("webhooks.index"))


@bp.get("/<int:subscription_id>/")
@roles_required("admin")
def deliveries(subscription_id: int):
    db = get_session()
    row = db.get(WebhookSubscription, subscription_id)
    if row is None:
        abort(404)
    return render_template("webhooks/deliveries.html", row=row, deliveries=subscriptions.deliveries(db, row.id),
                           state_of=subscriptions.delivery_state, button=ButtonForm(formdata=None),
                           event_labels=EVENT_LABELS, delivery_labels=DELIVERY_LABELS)


@bp.post("/deliveries/<int:delivery_id>/resend")
@roles_required("admin")
def resend(delivery_id: int):
    db = get_session()
    delivery = db.get(WebhookOutbox, delivery_id)
    if delivery is None:
        abort(404)
    subscription_id = delivery.subscription_id

    def change(db, row):
        target = db.get(WebhookOutbox, delivery_id)
        try:
            subscriptions.resend(db, target, utcnow())
        except subscriptions.SubscriptionError:
            flash(_("An archived subscription’s deliveries cannot be re-sent."), "error")
            return None
        return "update"

    if _change(subscription_id, change, {"resent_delivery": delivery_id}):
        flash(_("Delivery %(id)s is due again: the worker sends it on its next pass.", id=delivery_id), "ok")
    return redirect(url_for("webhooks.deliveries", subscription_id=subscription_id))
