"""Conversions to GA4, Yandex Metrica and Google Ads in the admin (admins only): per-site settings
and rules, "send now", upload files and the send log; the rules live in
astertrack.integrations.conversions."""

from flask import Blueprint

bp = Blueprint("conversions", __name__)

from webadmin.conversions import views  # noqa: E402,F401
