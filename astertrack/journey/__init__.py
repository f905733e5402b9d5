"""The visitor's journey (#24, capture side): what a person did on a site before calling or writing.

Owns the page-view and visitor-action rows (``PageView``, ``VisitorAction``): cleaning what the
snippet reports (``cleaning``: URLs without secrets, text capped, IP anonymisation), storing a
batch of it (``ingest``: validated, capped per request and per session, idempotent per page load),
linking one person's sessions across the attribution window (``linking``: first-party visitor id,
GA client id, Metrica id, and the phone a call or lead gave) and reading it all as one plain
structure for a call or a lead (``read.journey_for_call`` / ``read.journey_for_lead``), which the
call card, lead card and pop-up display.  Imports no app.
"""

from astertrack.journey.read import journey_for_call, journey_for_lead

__all__ = ["journey_for_call", "journey_for_lead"]
