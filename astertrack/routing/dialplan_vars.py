"""Every channel variable and UserEvent name shared by the AGI, the dialplan and the AMI listener.

The AGI *announces* its decision in these variables and in one UserEvent; the AMI listener
trusts them over anything it could infer from Dial/Bridge events.  The dialplan in
``asterisk-conf/extensions_astertrack.conf`` reads the same names.  The names match the ones
in the recorded traffic in tests/fixtures/asterisk (CT_*, UserEvent ``AstertrackRoute``).
"""

CALL_ID = "CT_CALL_ID"  # our call id (Call.call_uid)
SOURCE = "CT_SOURCE"  # attributed source name
CAMPAIGN = "CT_CAMPAIGN"  # utm_campaign of the attributed session
MANAGER = "CT_MANAGER"  # endpoint of the chosen manager, e.g. PJSIP/101
DIAL = "CT_DIAL"  # Dial() string; empty means "no candidate left"
TIMEOUT = "CT_TIMEOUT"  # ring timeout in seconds for Dial/Queue
QUEUE = "CT_QUEUE"  # queue name when the decision is a queue
RECORDING = "CT_RECORDING"  # recording file name without extension (see astertrack.routing.recording)
ROUTED_BY = "CT_ROUTED_BY"  # rule name / sticky / fallback, for reports and debugging
FALLBACK = "CT_FALLBACK"  # destination when every candidate failed: dial:..., queue:..., voicemail:...
ATTEMPT = "CT_ATTEMPT"  # how many candidates have been tried
CALLBACK_ID = "CT_CALLBACK_ID"  # CallbackRequest.id of a call astertrack originated (callback)
CALLBACK_ACTION_PREFIX = "astertrack-cb-"  # ActionID of our callbacks' Originate (and its OriginateResponse)
LEAD_CHANNEL = "CT_LEAD_CHANNEL"  # callback | missed_call_callback: the enquiry channel of an originated call
STATUS = "CT_STATUS"  # OK or FAILED: set by the AGI itself so the dialplan can fall back

# Variables the listener wants on every channel event (manager.conf channelvars).
CHANNELVARS = (CALL_ID, SOURCE, MANAGER, RECORDING)

ROUTE_USEREVENT = "AstertrackRoute"  # headers: call_id, source, manager[, campaign, recording, routed_by]
