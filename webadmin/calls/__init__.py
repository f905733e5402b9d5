"""Call log, call card and recordings (served by call id after an authorisation check)."""

from flask import Blueprint

bp = Blueprint("calls", __name__)

from webadmin.calls import review, views  # noqa: E402,F401
