"""The website widget's settings in the admin (admins only): per site, the lead-capture pop-up and
the callback button, their texts in Russian and English, colour, corner and the pop-up's rules;
the checks and defaults live in astertrack.leads.widget (the tracker reads the same)."""

from flask import Blueprint

bp = Blueprint("widget", __name__)

from webadmin.widget import views  # noqa: E402,F401
