"""The visitor's journey as the admin shows it (#24, display side): a partial for the call card,
the lead card and the manager's pop-up, and a per-call CSV export.  The data comes from
``astertrack.journey`` (the capture side); this package only decides who may see it and how.

The cards include ``journey/_call.html`` / ``journey/_lead.html``; those call the template global
``journey_view`` registered here, so the cards' views need no change to carry the journey."""

from flask import Blueprint

bp = Blueprint("journey", __name__)

from webadmin.journey import views  # noqa: E402,F401
