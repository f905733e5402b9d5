"""The journey as the admin shows it: ``astertrack.journey``'s structure, cut to what the viewer may
see and dressed for display (visit numbers, phone clicks, safe links, labels).

Who sees what follows the card the journey sits on: the card's own check has passed; a manager
then sees only the earlier calls routed to or answered by them (the call log's and
``reports.previous_calls``' rule) and only the leads they may open (``webadmin.leads.access``'s
rule), so a journey never leaks another manager's calls.  The visits themselves are the caller's
own browsing, shown whole.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Lead
from astertrack.journey import journey_for_call, journey_for_lead
from webadmin.leads.access import visible_condition

PHONE_KINDS = ("phone_click", "tel_link")  # what counts as a click on the phone number
ACTION_LABELS = {
    "phone_click": _l("Clicked the phone number"),
    "tel_link": _l("Clicked a phone link"),
    "sms_link": _l("Clicked an SMS link"),
    "messenger_link": _l("Clicked a messenger link"),
    "email_link": _l("Clicked an e-mail link"),
    "form_focus": _l("Started filling in a form"),
    "form_submit": _l("Sent a form"),
}
LINKED_BY_LABELS = {
    "call": _l("the call's visit"),
    "lead": _l("the lead's visit"),
    "visitor_id": _l("same browser"),
    "ga_client_id": _l("same Google Analytics id"),
    "ym_client_id": _l("same Yandex Metrica id"),
    "phone": _l("same phone number"),
}


def safe_href(url: str | None) -> str | None:
    """The URL when it may be a link (http or https with a host), else None: it is shown as text."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def action_label(kind: str | None) -> Any:
    """A lazy label (translated where it is rendered: the pop-up builds cards outside a request)."""
    return ACTION_LABELS.get(kind or "", kind or "")


def linked_by_label(how: str | None) -> Any:
    return LINKED_BY_LABELS.get(how or "", how or "")


def journey(db: Session, kind: str, object_id: int, only_manager_id: int | None = None) -> dict[str, Any] | None:
    """The journey of a call or lead for display; ``only_manager_id``: a manager's view (see above).
    The caller has already checked that the viewer may open the call or lead itself."""
    data = journey_for_call(db, object_id) if kind == "call" else journey_for_lead(db, object_id)
    if data is None:
        return None
    if only_manager_id is not None:
        mid = only_manager_id
        call_ids = [c["id"] for c in data["calls"]]
        lead_ids = [lead["id"] for lead in data["leads"]]
        own_calls = set(db.scalars(select(Call.id).where(
            Call.id.in_(call_ids), or_(Call.manager_id == mid, Call.routed_manager_id == mid)))) if call_ids else set()
        own_leads = set(db.scalars(select(Lead.id).where(Lead.id.in_(lead_ids), visible_condition(mid)))) \
            if lead_ids else set()
        data["calls"] = [c for c in data["calls"] if c["id"] in own_calls]
        data["leads"] = [lead for lead in data["leads"] if lead["id"] in own_leads]
    return dress(data)


def dress(data: dict[str, Any]) -> dict[str, Any]:
    """Numbers, counts and safe links over the plain structure (text stays as it came: escaped
    by Jinja where it is shown, neutralised by the CSV writer where it is exported)."""
    pages = clicks = 0
    for n, visit in enumerate(data["visits"], 1):
        visit["number"] = n
        visit["linked_label"] = linked_by_label(visit.get("linked_by"))
        visit["campaign"] = visit.get("utm_campaign")
        visit["keyword_shown"] = visit.get("keyword") or visit.get("utm_term")
        for page in visit["pages"]:
            page["href"] = safe_href(page.get("url"))
        for action in visit["actions"]:
            action["href"] = safe_href(action.get("url"))
            action["label"] = action_label(action.get("kind"))
        visit["rows"] = sorted([{"type": "page", **p} for p in visit["pages"]]
                               + [{"type": "action", **a} for a in visit["actions"]],
                               key=lambda r: (r["at"], r["type"] == "action"))
        visit["phone_clicks"] = sum(1 for a in visit["actions"] if a.get("kind") in PHONE_KINDS)
        visit["landing_href"] = safe_href(visit.get("landing_page"))
        visit["referrer_href"] = safe_href(visit.get("referrer"))
        pages += len(visit["pages"])
        clicks += visit["phone_clicks"]
    data["page_count"] = pages
    data["phone_clicks"] = clicks
    data["earlier_count"] = len(data["calls"]) + len(data["leads"])
    return data


def summary(data: dict[str, Any] | None) -> dict[str, str]:
    """The pop-up's compact lines, as text (the pop-up sets every value with textContent): the
    last visit's source, campaign and keyword, pages, phone clicks, days since the first visit,
    earlier calls and leads.  Empty strings when there is no journey."""
    keys = ("journey_source", "journey_campaign", "journey_keyword", "journey_pages", "journey_phone_clicks",
            "journey_days", "journey_earlier")
    if not data or not data["visits"]:
        return dict.fromkeys(keys, "")
    last = data["visits"][-1]
    source = last["source"]["name"] if last.get("source") else ""
    utm = " / ".join(v for v in (last.get("utm_source"), last.get("utm_medium")) if v)
    days = data.get("days_since_first_visit")
    return dict(zip(keys, (
        " · ".join(v for v in (source, utm) if v),
        last.get("campaign") or "",
        last.get("keyword_shown") or "",
        str(data["page_count"]),
        str(data["phone_clicks"]),
        "" if days is None else str(days),
        f"{len(data['calls'])} / {len(data['leads'])}",
    ), strict=True))


CSV_HEADER = ["visit", "session_id", "linked_by", "visit_started_at", "source", "utm_source", "utm_medium",
              "utm_campaign", "keyword", "landing_page", "referrer", "row", "at", "url", "title",
              "seconds_on_page", "target"]


def csv_rows(data: dict[str, Any] | None):
    """One line per page view and per action, in time order within each visit (times in UTC, ISO)."""
    if not data:
        return
    for visit in data["visits"]:
        head = [visit["number"], visit["session_id"], visit.get("linked_by"), visit["started_at"],
                visit["source"]["name"] if visit.get("source") else None, visit.get("utm_source"),
                visit.get("utm_medium"), visit.get("utm_campaign"), visit.get("keyword_shown"),
                visit.get("landing_page"), visit.get("referrer")]
        rows = [(p["at"], 0, [*head, "page", p["at"], p.get("url"), p.get("title"), p.get("seconds_on_page"), None])
                for p in visit["pages"]]
        rows += [(a["at"], 1, [*head, a.get("kind"), a["at"], a.get("url"), None, None, a.get("target")])
                 for a in visit["actions"]]
        for _at, _order, row in sorted(rows, key=lambda r: (r[0], r[1])):
            yield row
