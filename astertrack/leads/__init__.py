"""Leads: each enquiry (call, web form, callback) joins one lead per customer; dedup, merges, states, callbacks."""

# How an enquiry reached us (Enquiry.channel, Lead.first_channel, Call.lead_channel).
CHANNELS = ("call", "form", "callback", "missed_call_callback",
            "chat", "lead_capture", "messenger")  # the website widget and messengers (#25)
# A lead's life (Lead.status); "won" and "lost" close it.
STATES = ("new", "in_progress", "qualified", "won", "lost")
CLOSED_STATES = ("won", "lost")
