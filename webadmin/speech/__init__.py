"""Speech analytics in the admin: each site's engine and model (with its error when missing or broken),
the dictionaries of phrases per tag, and search across transcripts (astertrack.speech)."""

from flask import Blueprint

bp = Blueprint("speech", __name__)

from webadmin.speech import views  # noqa: E402,F401
