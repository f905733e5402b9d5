"""Database reads for the live board and the pop-up card (one fresh session per poll)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session

from astertrack.callflow import listener_status
from astertrack.db.models import Call, CallerProfile, Manager, Site, Source
from astertrack.db.types import utcnow
from astertrack.phones import format_display
from astertrack.reporting import reports
from webadmin.journey.data import journey as visitor_journey
from webadmin.journey.data import summary as journey_summary

ACTIVE_STATES = ("ringing", "up")
STALE_AFTER = dt.timedelta(hours=6)  # a call "up" for longer is an orphan the sweeper will close
RINGING_WINDOW = dt.timedelta(minutes=5)


def board_state(db: Session) -> dict[str, Any]:
    """Calls in progress, managers' phones and whether Asterisk is followed (``ami``).

    While a node is not followed its calls say ``followed: false`` and no manager's state is known
    (``state_known: false``): the stored device states are only the last ones seen.  The answer
    changes with the clock (a heartbeat goes stale), so a stream must recompute it every few
    seconds even when nothing was written."""
    status = listener_status.read(db)
    since = utcnow() - STALE_AFTER
    rows = db.execute(
        select(Call.id, Call.node, Call.state, Call.caller_number, Call.caller_raw, Call.did, Call.started_at, Call.answered_at,
               Source.name.label("source"), Manager.name.label("manager"), Call.utm_campaign)
        .outerjoin(Source, Source.id == Call.source_id)
        .outerjoin(Manager, Manager.id == func.coalesce(Call.manager_id, Call.routed_manager_id))
        .where(Call.state.in_(ACTIVE_STATES), Call.started_at >= since)
        .order_by(Call.started_at)).all()
    managers = db.execute(select(Manager.id, Manager.name, Manager.endpoint, Manager.device_state, Manager.paused,
                                 Manager.enabled, Manager.device_state_at).order_by(Manager.name)).all()
    return {
        "calls": [{"id": r.id, "state": r.state, "caller": r.caller_number or r.caller_raw or "", "did": r.did or "",
                   "started_at": r.started_at.isoformat(), "answered_at": r.answered_at.isoformat() if r.answered_at else None,
                   "source": r.source or "", "manager": r.manager or "", "campaign": r.utm_campaign or "",
                   "followed": status.call_followed(r.node, r.state, r.started_at)} for r in rows],
        "managers": [{"id": m.id, "name": m.name, "endpoint": m.endpoint, "device_state": m.device_state,
                      "paused": m.paused, "enabled": m.enabled, "state_known": status.followed,
                      "since": m.device_state_at.isoformat() if m.device_state_at else None} for m in managers],
        "ami": status.as_dict(),
    }


def ringing_for(db: Session, manager: Manager) -> list[Call]:
    """Calls ringing at this manager's phone.

    ``Call.ringing_endpoint`` (written by the AMI listener on DialBegin) says exactly which
    phones ring; until it is known, a ringing call routed to this manager counts.
    """
    routed_here = Call.routed_manager_id == manager.id
    # A ring-all call lists every ringing phone, comma-separated ("PJSIP/101,PJSIP/102"):
    # match whole items only, so PJSIP/10 never matches PJSIP/101.
    listed = (literal(",") + Call.ringing_endpoint + literal(",")).contains(f",{manager.endpoint},", autoescape=True)
    cond = or_(listed, and_(Call.ringing_endpoint.is_(None), routed_here))
    return list(db.scalars(select(Call).where(Call.state == "ringing", Call.started_at >= utcnow() - RINGING_WINDOW,
                                              cond).order_by(Call.started_at)))


def crm_link(template: str | None, call: Call) -> str | None:
    """Fill the site's CRM URL template; only http(s) results are offered as links."""
    if not template:
        return None
    number = call.caller_number or ""
    values = {"phone": number, "phone_digits": number.lstrip("+"), "call_id": str(call.id), "call_uid": call.call_uid,
              "caller_name": call.caller_name or "", "did": call.did or ""}
    url = template
    for key, value in values.items():
        url = url.replace("{" + key + "}", quote(value, safe=""))
    if urlsplit(url).scheme not in ("http", "https"):
        return None
    return url


def popup_card(db: Session, call: Call, card_url: str, only_manager_id: int | None = None) -> dict[str, Any]:
    """The pop-up's fields; ``only_manager_id``: a manager's card counts only their own earlier
    calls with this caller (``reports.previous_calls``' rule)."""
    site = db.get(Site, call.site_id) if call.site_id else None
    profile = None
    if call.caller_number:
        profile = db.scalars(select(CallerProfile).where(CallerProfile.number == call.caller_number)
                             .order_by(CallerProfile.id)).first()
    previous, earlier = reports.previous_calls(db, call, limit=1, only_manager_id=only_manager_id)
    last_at = earlier[0].started_at if earlier else None
    session = call.session
    display = call.caller_number or call.caller_raw or ""
    if call.caller_number and site is not None:
        display = format_display(call.caller_number, site.display_format)
    return {
        "id": call.id,
        "caller": display,
        "caller_name": call.caller_name or (profile.name if profile and profile.name else ""),
        "source": call.source.name if call.source else "",
        "campaign": call.utm_campaign or (session.utm_campaign if session else "") or "",
        "keyword": call.keyword or (session.keyword if session else "") or "",
        "landing_page": (session.landing_page if session else "") or "",
        "previous": int(previous or 0),
        "last_call_at": last_at.isoformat() if last_at else None,
        "crm_url": crm_link(site.crm_url_template if site else None, call),
        "card_url": card_url,
        **journey_summary(visitor_journey(db, "call", call.id, only_manager_id=only_manager_id)),  # #24
    }


def ringing_calls(db: Session) -> list[Any]:
    """Every call ringing now, for all managers at once (the live streams' one query per tick):
    rows of ``id``, ``ringing_endpoint``, ``routed_manager_id``, oldest first.  Which manager's
    phone each one rings at is :func:`rings_at`."""
    return list(db.execute(select(Call.id, Call.ringing_endpoint, Call.routed_manager_id)
                           .where(Call.state == "ringing", Call.started_at >= utcnow() - RINGING_WINDOW)
                           .order_by(Call.started_at, Call.id)).all())


def rings_at(ringing_endpoint: str | None, routed_manager_id: int | None, manager_id: int, endpoint: str) -> bool:
    """:func:`ringing_for`'s rule for one ringing call and one manager: the phones the AMI
    listener lists (whole comma-separated items), or, until it has, the routed manager."""
    if ringing_endpoint is None:
        return routed_manager_id == manager_id
    return endpoint in ringing_endpoint.split(",")
