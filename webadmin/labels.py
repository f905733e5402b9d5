"""Human labels, in the user's language, for every code the admin shows: metric and dimension keys,
the core's vocabularies (outcomes, missed reasons, device states, strategies...), Asterisk's hangup
causes and the settings listings' column names.  The codes themselves stay stable in CSV exports
and URLs; ``tests/webadmin/test_labels.py`` fails when a core vocabulary gains a value without a label.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

LABELS = {
    "total": _l("Total"), "unique": _l("Unique"), "target": _l("Target"), "unique_target": _l("Unique target"),
    "answered": _l("Answered"), "missed": _l("Missed"), "busy": _l("Busy"), "in_progress": _l("In progress"),
    "answer_rate": _l("Answer rate"), "first_time": _l("First-time"), "repeat": _l("Repeat"),
    "avg_wait": _l("Avg wait"), "avg_talk": _l("Avg talk"), "routed": _l("Routed"), "leads": _l("Leads"),
    "deals": _l("Deals"), "revenue": _l("Revenue"), "cost": _l("Ad cost"), "sessions": _l("Sessions"),
    "unique_leads": _l("Unique leads"), "lead_channel": _l("Enquiry channel"),
    "calls": _l("Calls"), "peak": _l("Peak"), "utilisation": _l("Utilisation"), "overflows": _l("Overflows"),
    "recommended": _l("Recommended"), "source": _l("Source"), "channel": _l("Channel"), "campaign": _l("Campaign"),
    "keyword": _l("Keyword"), "utm_source": _l("UTM source"), "admin": _l("admin"), "supervisor": _l("supervisor"),
    "manager": _l("manager"), "create": _l("create"), "update": _l("update"), "archive": _l("archive"),
    "restore": _l("restore"), "delete": _l("delete"),
}

# why a call was missed (astertrack.callflow.outcomes.MissedReason)
MISSED_REASONS = {
    "no_answer": _l("nobody answered"), "all_busy": _l("all busy"),
    "caller_hangup": _l("caller hung up while it rang"), "queue_abandon": _l("caller left the queue"),
    "queue_timeout": _l("queue timed out (nobody answered)"), "failed": _l("could not be connected"),
    # callbacks (astertrack/leads/callbacks.py): the manager is rung first, then the visitor
    "manager_no_answer": _l("callback: the manager did not answer"),
    "manager_busy": _l("callback: the manager was busy"),
    "visitor_no_answer": _l("callback: the visitor did not answer"),
    "visitor_busy": _l("callback: the visitor's line was busy"),
}
# where a finished call's facts came from (Call.closed_by)
CLOSED_BY = {
    "events": _l("AMI events"), "cdr": _l("Asterisk's CDR (the AMI stream had a gap)"),
    "sweeper": _l("guessed: the call went silent"), "merged": _l("merged into another call"),
}

# Each vocabulary is named after the attribute that holds its codes, so a listing or a card can
# ask ``label_for(value, column)``; a code of no vocabulary is shown as it is (names, numbers).
VOCABULARIES: dict[str, dict[str, Any]] = {
    "outcome": {"answered": _l("answered"), "missed": _l("missed"), "busy": _l("busy"),
                "in_progress": _l("in progress")},
    "state": {"ringing": _l("ringing"), "up": _l("talking"), "finished": _l("finished")},
    "missed_reason": MISSED_REASONS,
    "closed_by": CLOSED_BY,
    "hangup_side": {"caller": _l("the caller hung up"), "manager": _l("the manager hung up"),
                    "pbx": _l("the PBX ended the call")},
    "recording_state": {"kept": _l("recorded"), "empty": _l("nothing to record"), "missing": _l("file missing"),
                        "deleted": _l("deleted by retention")},
    "attribution_kind": {"static": _l("static number"), "dynamic": _l("pool number of a website visit"),
                         "grace": _l("pool number just released by a visit"), "repeat": _l("repeat caller"),
                         "default": _l("site's default number"), "unknown": _l("unknown"),
                         "fallback": _l("pool's fallback number shown to one visit"),
                         "non_direct": _l("last non-direct visit of the same person")},
    "attribution_model": {"first_touch": _l("first touch"), "last_touch": _l("last touch"),
                          "last_non_direct": _l("last non-direct")},
    # astertrack.routing.attribution.REASONS: why the call card's attribution is what it is
    "attribution_reason": {
        "static_number": _l("The number belongs to one static source."),
        "held_now": _l("The pool number was shown to this visit alone when the call came."),
        "held_now_reassigned": _l("The number was shown to this visit when the call came, but another visit had "
                                  "it shortly before this visit got it: that visitor may be the one calling."),
        "reused_number": _l("The pool was full, so this visit got a number taken over from another visit, "
                            "which may still have it on screen."),
        "reused_contested": _l("The pool was full and this visit got a number another visit had shown until a "
                               "moment ago: either could be calling."),
        "released_recently": _l("Nobody held the number: the visit that released it last, within the grace "
                                "period, got the call."),
        "several_released": _l("Nobody held the number and several visits released it within the grace period: "
                               "the latest got the call."),
        "pool_no_visit": _l("A pool number nobody had been shown lately: only the pool's source is known."),
        "fallback_single_visit": _l("The pool's fallback number, shown to exactly one visit lately: that visit "
                                    "got the call."),
        "fallback_ambiguous": _l("The pool's fallback number, shown to several visits lately: not attributed."),
        "fallback_no_visit": _l("The pool's fallback number, shown to no visit lately: not attributed."),
        "repeat_first_touch": _l("A repeat caller: the source of their first call is kept."),
        "last_non_direct": _l("The call came during a direct visit: the same person's last advertising visit "
                              "got it."),
        "default_number": _l("The site's default number: no source is known."),
        "unknown_number": _l("A number astertrack does not track."),
    },
    "kind": {"static": _l("static number"), "dynamic": _l("dynamic pool")},
    "strategy": {"round_robin": _l("round robin"), "least_recent": _l("least recently called first"),
                 "fewest_today": _l("fewest calls today first"), "ring_all": _l("ring all at once"),
                 "queue": _l("Asterisk queue of the group")},
    "overflow_policy": {"fallback": _l("show the fallback number"), "reuse_oldest": _l("reuse the oldest number")},
    # Asterisk device states (ast_devstate_str), as the AMI listener stores them
    "device_state": {"UNKNOWN": _l("unknown"), "NOT_INUSE": _l("free"), "INUSE": _l("on a call"),
                     "BUSY": _l("busy"), "INVALID": _l("no such phone"), "UNAVAILABLE": _l("offline"),
                     "RINGING": _l("ringing"), "RINGINUSE": _l("on a call, another ringing"),
                     "ONHOLD": _l("on hold")},
    "role": {"admin": _l("admin"), "supervisor": _l("supervisor"), "manager": _l("manager")},
    "routed_by": {"after_hours": _l("after hours"), "fallback": _l("fallback: no manager free"),
                  "sticky": _l("personal manager"), "default": _l("default rule")},
    "action": {"create": _l("create"), "update": _l("update"), "archive": _l("archive"),
               "restore": _l("restore"), "delete": _l("delete")},
    # astertrack.leads.STATES and CHANNELS (Lead.status; Enquiry.channel, Lead.first_channel, Call.lead_channel)
    "lead_status": {"new": _l("new"), "in_progress": _l("in progress"), "qualified": _l("qualified"),
                    "won": _l("won"), "lost": _l("lost")},
    "lead_channel": {"call": _l("call"), "form": _l("web form"), "callback": _l("callback request"),
                     "missed_call_callback": _l("callback of a missed call"), "chat": _l("website chat"),
                     "lead_capture": _l("lead-capture pop-up"), "messenger": _l("messenger")},
    "api_scope": {"read": _l("read only"), "write": _l("read and write")},  # integrations.api_tokens.SCOPES
    # integrations.events.EVENTS: what a webhook subscription can ask for (tests check the keys match)
    "webhook_event": {"call.ringing": _l("Call ringing"), "call.answered": _l("Call answered"),
                      "call.finished": _l("Call finished"), "call.missed": _l("Call missed (busy included)"),
                      "lead.created": _l("Lead created"), "lead.updated": _l("Lead changed"),
                      "deal.updated": _l("Deal changed (state, amount, currency)"),
                      "chat.started": _l("Chat started"), "chat.message": _l("Chat message (visitor or manager)"),
                      "chat.closed": _l("Chat closed")},
    "deal_status": {"open": _l("open"), "won": _l("won"), "lost": _l("lost")},
    "locale": {"ru": _l("Russian"), "en": _l("English")},
    # astertrack.dni.poolhealth.PoolReport.status
    "pool_status": {"ok": _l("enough numbers"), "tight": _l("tight"), "exhausted": _l("exhausted"),
                    "idle": _l("no visits")},
}

# Asterisk hangup causes (Q.850 numbers, ast_cause2str names); any other is "cause N".
HANGUP_CAUSES: dict[int, tuple[str, Any]] = {
    1: ("Unallocated (unassigned) number", _l("number does not exist")),
    3: ("No route to destination", _l("no route to the number")),
    16: ("Normal Clearing", _l("normal hang-up")),
    17: ("User busy", _l("line busy")),
    18: ("No user responding", _l("no response")),
    19: ("User alerting, no answer", _l("no answer")),
    20: ("Subscriber absent", _l("subscriber unreachable")),
    21: ("Call Rejected", _l("call rejected")),
    22: ("Number changed", _l("number changed")),
    27: ("Destination out of order", _l("destination out of order")),
    28: ("Invalid number format (addressing incomplete)", _l("invalid number format")),
    31: ("Normal, unspecified", _l("normal hang-up (unspecified)")),
    34: ("Circuit/channel congestion", _l("circuit congestion")),
    38: ("Network out of order", _l("network out of order")),
    41: ("Temporary failure", _l("temporary failure")),
    42: ("Switching equipment congestion", _l("switching equipment congestion")),
    44: ("Requested channel not available", _l("requested channel not available")),
    58: ("Bearer capability not available", _l("media not available")),
    102: ("Recovery on timer expiry", _l("timer expired")),
    127: ("Interworking, unspecified", _l("network interworking error")),
}
_CAUSE_BY_NAME = {name.lower(): number for number, (name, _label) in HANGUP_CAUSES.items()}

# The settings listings' columns (webadmin/settings/crud.py), by column name
COLUMNS = {
    "name": _l("Name"), "timezone": _l("Time zone"), "display_format": _l("Display format"),
    "attribution_model": _l("Attribution model"), "target_call_seconds": _l("Target call, s"),
    "site_id": _l("Site"), "fallback_number": _l("Fallback number"), "kind": _l("Kind"),
    "channel": _l("Channel"), "priority": _l("Priority"), "enabled": _l("Enabled"), "number": _l("Number"),
    "source_id": _l("Source"), "pool_id": _l("Pool"), "label": _l("Label"), "endpoint": _l("Phone endpoint"),
    "extension": _l("Extension"), "device_state": _l("Phone state"), "paused": _l("Paused"),
    "queue_name": _l("Asterisk queue"), "strategy": _l("Strategy"), "group_id": _l("Group"),
    "domains": _l("Domains"), "default_number": _l("Default number"), "overflow_policy": _l("Overflow"),
    "manager_id": _l("Manager"), "archived_at": _l("Archived"), "role": _l("Role"), "login": _l("Login"),
    "locale": _l("Language"), "active": _l("Active"),
}


def label_for(key: str | None, vocabulary: str | None = None) -> str:
    """The label of ``key`` in ``vocabulary`` (an attribute name such as "device_state"), else of a
    metric or dimension key; a key no map knows comes back as it is (a name, a number, a campaign)."""
    if key is None or key == "":
        return ""
    if isinstance(key, bool):
        return _("yes") if key else _("no")
    labels = VOCABULARIES.get(vocabulary or "", LABELS)
    try:
        found = labels.get(key)
    except TypeError:  # an unhashable value (a JSON list) has no label
        found = None
    return str(found) if found is not None else str(key) if vocabulary else str(LABELS.get(key, key))


def missed_reason_label(key: str | None) -> str:
    return label_for(key, "missed_reason")


def closed_by_label(key: str | None) -> str:
    return label_for(key, "closed_by")


def hangup_cause_label(cause: int | None, text: str | None = None) -> str:
    """Asterisk's hangup cause as people say it: by number, else by Asterisk's name, else "cause N"."""
    if cause is None and text:
        cause = _CAUSE_BY_NAME.get(text.strip().lower())
        if cause is None:
            return text
    if cause is None:
        return ""
    known = HANGUP_CAUSES.get(cause)
    return str(known[1]) if known else _("cause %(n)s", n=cause)


class _TranslatedVocabularies:
    """``vocabularies.device_state`` in a template: code -> label in the page's language (for scripts)."""

    def __getattr__(self, name: str) -> dict[str, str]:
        if name not in VOCABULARIES:
            raise AttributeError(name)
        return {code: str(text) for code, text in VOCABULARIES[name].items()}


vocabularies = _TranslatedVocabularies()


def column_label(name: str) -> str:
    """A settings listing's column header; an unknown column is shown humanised, never as ``x_id``."""
    found = COLUMNS.get(name)
    return str(found) if found is not None else name.removesuffix("_id").replace("_", " ").capitalize()
