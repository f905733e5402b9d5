"""Leads: every enquiry — an inbound call, a web form, a callback request — makes or joins one lead
per customer on a site, with its channel and the attribution of the visit or call behind it.

Owns the vocabularies below, deduplication (which lead an enquiry joins), manual merges, lead
states with their deal amount, and the callback requests' schedule.  The apps (the AMI listener,
the tracker, the web admin) call it; it imports none of them.
"""

# How an enquiry reached us (Enquiry.channel, Lead.first_channel, Call.lead_channel).
CHANNELS = ("call", "form", "callback", "missed_call_callback")
# A lead's life (Lead.status); "won" and "lost" close it.
STATES = ("new", "in_progress", "qualified", "won", "lost")
CLOSED_STATES = ("won", "lost")
