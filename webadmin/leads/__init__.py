"""Leads in the admin: the list with filters and CSV export, the lead card (enquiries, recordings,
visit), its state and deal form, merging two leads, and a callback request from the card."""

from flask import Blueprint

bp = Blueprint("leads", __name__)

from webadmin.leads import card, views  # noqa: E402,F401
