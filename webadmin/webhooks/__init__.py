"""Webhook subscriptions in the admin (admins only): create, pause/resume, archive, the delivery
log and re-send; the rules live in astertrack.integrations.subscriptions."""

from flask import Blueprint

bp = Blueprint("webhooks", __name__)

from webadmin.webhooks import views  # noqa: E402,F401
