"""The visitor's journey: page views and actions (cleaning, ingest), a person's linked sessions, and the read for the cards."""

# Owns the PageView and VisitorAction rows: ``cleaning`` (URLs without secrets, text capped, IP
# anonymisation), ``ingest`` (a batch: validated, capped per request and per session, idempotent
# per page load), ``linking`` (one person's sessions across the attribution window: visitor id, GA
# client id, Metrica id, the phone a call or lead gave; bounded), ``read`` (``journey_for_call`` /
# ``journey_for_lead``: the plain structure the call card, lead card and pop-up display).

from astertrack.journey.read import journey_for_call, journey_for_lead

__all__ = ["journey_for_call", "journey_for_lead"]
