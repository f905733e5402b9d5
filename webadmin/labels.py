"""Human labels for metric, dimension and outcome keys (the keys stay stable in CSV exports)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

LABELS = {
    "total": _l("Total"), "unique": _l("Unique"), "target": _l("Target"), "unique_target": _l("Unique target"),
    "answered": _l("Answered"), "missed": _l("Missed"), "busy": _l("Busy"), "in_progress": _l("In progress"),
    "answer_rate": _l("Answer rate"), "first_time": _l("First-time"), "repeat": _l("Repeat"),
    "avg_wait": _l("Avg wait, s"), "avg_talk": _l("Avg talk, s"), "routed": _l("Routed"), "leads": _l("Leads"),
    "deals": _l("Deals"), "revenue": _l("Revenue"), "cost": _l("Ad cost"), "sessions": _l("Sessions"),
    "calls": _l("Calls"), "peak": _l("Peak"), "utilisation": _l("Utilisation"), "overflows": _l("Overflows"),
    "recommended": _l("Recommended"), "source": _l("Source"), "channel": _l("Channel"), "campaign": _l("Campaign"),
    "keyword": _l("Keyword"), "utm_source": "utm_source", "admin": _l("admin"), "supervisor": _l("supervisor"),
    "manager": _l("manager"), "create": _l("create"), "update": _l("update"),
}


# why a call was missed (astertrack.callflow.outcomes.MissedReason)
MISSED_REASONS = {
    "no_answer": _l("nobody answered"), "all_busy": _l("all busy"),
    "caller_hangup": _l("caller hung up while it rang"), "queue_abandon": _l("caller left the queue"),
    "queue_timeout": _l("queue timed out (nobody answered)"), "failed": _l("could not be connected"),
}
# where a finished call's facts came from (Call.closed_by)
CLOSED_BY = {
    "events": _l("AMI events"), "cdr": _l("Asterisk's CDR (the AMI stream had a gap)"),
    "sweeper": _l("guessed: the call went silent"), "merged": _l("merged into another call"),
}


def label_for(key: str | None) -> str:
    return LABELS.get(key or "", key or "")


def missed_reason_label(key: str | None) -> str:
    return str(MISSED_REASONS.get(key or "", key or ""))


def closed_by_label(key: str | None) -> str:
    return str(CLOSED_BY.get(key or "", key or ""))
