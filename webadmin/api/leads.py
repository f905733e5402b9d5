"""``/api/v1/leads``: a CRM reads a lead and sets its state and deal (revenue) by lead id, call id
or phone number.  The state and deal go through the same core function as the admin's lead card
(``astertrack.leads.deals.set_state``), so the funnel and managers reports count them alike.

    POST /api/v1/leads/state   {"lead_id": 12 | "call_id": 345 | "call_uid": "..." | "phone": "+7...",
                                "site_id": 1 (with "phone", for a token of every site),
                                "state": "won", "amount": "15000.50", "currency": "RUB",
                                "external_id": "deal-77"}
    GET  /api/v1/leads/<id>

Both answer with the lead (see ``lead_json``); a merged lead answers as the lead it was merged into.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.audit import log as audit_log
from astertrack.db.models import Call, Enquiry, Lead, Source
from astertrack.integrations import api_tokens
from astertrack.leads import STATES
from astertrack.leads.contacts import clean_text
from astertrack.leads.deals import parse_amount, parse_currency, set_state
from astertrack.leads.enquiries import record_enquiry, resolve
from astertrack.leads.errors import LeadError
from astertrack.phones import try_normalize
from webadmin.api import bp
from webadmin.api.auth import ApiError, current_token, json_body, token_required
from webadmin.db import get_session

EXTERNAL_ID_MAX = 100
IDENTIFIERS = ("lead_id", "call_id", "call_uid", "phone")
AUDIT_LOGIN = "api:{prefix}"  # who changed a lead through the API, in the audit log


def lead_json(db: Session, lead: Lead) -> dict[str, Any]:
    """A lead as the API shows it; money as a decimal string ("15000.50") so no float rounds it."""
    source = db.get(Source, lead.source_id) if lead.source_id else None
    return {
        "id": lead.id, "site_id": lead.site_id, "state": lead.status,
        "amount": None if lead.amount is None else str(lead.amount), "currency": lead.currency,
        "phone": lead.phone, "email": lead.email, "name": lead.name, "first_channel": lead.first_channel,
        "source_id": lead.source_id, "source": source.name if source else None, "manager_id": lead.manager_id,
        "call_id": lead.call_id, "enquiries": lead.enquiries_count, "external_id": lead.external_id,
        "created_at": _time(lead.created_at), "last_enquiry_at": _time(lead.last_enquiry_at),
        "updated_at": _time(lead.updated_at), "merged_into_id": lead.merged_into_id,
        "url": url_for("api.lead", lead_id=lead.id, _external=True),
    }


def _time(value) -> str | None:
    return value.isoformat() if value is not None else None


def _allowed(lead: Lead, write: bool) -> Lead:
    reason = api_tokens.refusal(current_token(), lead.site_id, write)
    if reason is not None:
        raise ApiError(403, reason, "this token is limited to another site" if reason == api_tokens.WRONG_SITE
                       else "this token may only read")
    return lead


@bp.get("/leads/<int:lead_id>")
@token_required(write=False)
def lead(lead_id: int):
    db = get_session()
    row = db.get(Lead, lead_id)
    if row is None:
        raise ApiError(404, "lead_not_found", f"no lead {lead_id}")
    return jsonify(lead_json(db, _allowed(resolve(db, row), write=False)))


def _integer(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or len(str(value)) > 12:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a positive integer")
    return int(value)


def _find_by_call(db: Session, body: dict[str, Any]) -> Lead:
    if "call_id" in body:
        call = db.get(Call, _integer(body, "call_id"))
    else:
        uid = body["call_uid"]
        if not isinstance(uid, str) or not uid or len(uid) > 64:
            raise ApiError(400, "invalid_call_uid", "call_uid must be a call's uid")
        call = db.scalars(select(Call).where(Call.call_uid == uid)).first()
    if call is None:
        raise ApiError(404, "call_not_found", "no such call")
    if api_tokens.refusal(current_token(), call.site_id, write=True) == api_tokens.WRONG_SITE:
        raise ApiError(403, api_tokens.WRONG_SITE, "this token is limited to another site")
    enquiry = db.scalars(select(Enquiry).where(Enquiry.call_id == call.id)).first()
    if enquiry is not None:
        return db.get(Lead, enquiry.lead_id)
    first = db.scalars(select(Lead).where(Lead.call_id == call.id)).first()
    if first is not None:
        return first
    if call.site_id is None:
        raise ApiError(404, "lead_not_found", "the call has no site, so no lead")
    # The call has not become an enquiry yet (the leads worker is behind): it does now, the one way.
    try:
        made = record_enquiry(db, call.site_id, call.lead_channel or "call", at=call.started_at, call=call)
    except LeadError:
        raise ApiError(404, "lead_not_found", "the call cannot make a lead (no caller number)") from None
    return db.get(Lead, made.lead_id)


def _find_by_phone(db: Session, body: dict[str, Any]) -> Lead:
    raw = body["phone"]
    phone = try_normalize(raw) if isinstance(raw, str) else None
    if phone is None:
        raise ApiError(400, "invalid_phone", "phone must be a phone number, best in E.164 (+74951234567)")
    token = current_token()
    site_id = token.site_id
    if "site_id" in body and body["site_id"] is not None:
        site_id = _integer(body, "site_id")
        if token.site_id is not None and site_id != token.site_id:
            raise ApiError(403, api_tokens.WRONG_SITE, "this token is limited to another site")
    if site_id is None:
        raise ApiError(400, "site_required", "a token of every site must give site_id with a phone")
    found = db.scalars(select(Lead).where(Lead.site_id == site_id, Lead.phone == phone,
                                          Lead.merged_into_id.is_(None))
                       .order_by(Lead.last_enquiry_at.desc().nulls_last(), Lead.id.desc()).limit(1)).first()
    if found is None:
        raise ApiError(404, "lead_not_found", "no lead with this phone on this site")
    return found


def find_lead(db: Session, body: dict[str, Any]) -> Lead:
    """The lead the body names by exactly one of ``IDENTIFIERS`` (merged leads followed)."""
    given = [name for name in IDENTIFIERS if body.get(name) is not None]
    if len(given) != 1:
        raise ApiError(400, "lead_identifier_required", "give exactly one of " + ", ".join(IDENTIFIERS))
    if given[0] == "lead_id":
        row = db.get(Lead, _integer(body, "lead_id"))
        if row is None:
            raise ApiError(404, "lead_not_found", f"no lead {body['lead_id']}")
    elif given[0] == "phone":
        row = _find_by_phone(db, body)
    else:
        row = _find_by_call(db, body)
    return resolve(db, row)


def _checked_values(body: dict[str, Any]) -> tuple[str, Any, Any, str | None]:
    """The state, amount, currency and external id, checked by the core's rules before any lookup."""
    state = body.get("state")
    if not isinstance(state, str) or state not in STATES:
        raise ApiError(400, "invalid_state", "state must be one of " + ", ".join(STATES))
    amount, currency = body.get("amount"), body.get("currency")
    if isinstance(amount, bool) or (amount is not None and not isinstance(amount, (int, float, str))):
        raise ApiError(400, "invalid_amount", "amount must be a number or a decimal string")
    if currency is not None and not isinstance(currency, str):
        raise ApiError(400, "invalid_currency", "currency must be an ISO 4217 code such as RUB")
    try:
        parse_amount(amount)
        parse_currency(currency)
    except LeadError as error:
        raise ApiError(400, f"invalid_{error.field}", str(error)) from None
    external = body.get("external_id")
    if external is not None:
        if not isinstance(external, (str, int)) or isinstance(external, bool) or len(str(external)) > EXTERNAL_ID_MAX:
            raise ApiError(400, "invalid_external_id", f"external_id is text of at most {EXTERNAL_ID_MAX} characters")
        external = clean_text(str(external), EXTERNAL_ID_MAX)
    return state, amount, currency, external


@bp.post("/leads/state")
@token_required(write=True)
def set_lead_state():
    db = get_session()
    body = json_body()
    state, amount, currency, external = _checked_values(body)
    row = _allowed(find_lead(db, body), write=True)
    before = {"status": row.status, "amount": audit_log.json_safe(row.amount), "currency": row.currency,
              "external_id": row.external_id}
    try:
        row = set_state(db, row, state, amount, currency)
    except LeadError as error:
        raise ApiError(400, f"invalid_{error.field}", str(error)) from None
    if external is not None:
        row.external_id = external
    db.flush()
    token = current_token()
    audit_log.record(db, "update", "leads", row, before,
                     {"status": row.status, "amount": audit_log.json_safe(row.amount), "currency": row.currency,
                      "external_id": row.external_id},
                     user=_ApiActor(token.user_id, AUDIT_LOGIN.format(prefix=token.prefix)))
    return jsonify(lead_json(db, row))


class _ApiActor:
    """Who the audit log names for a change made with a token: its creator's id, the token's prefix."""

    def __init__(self, user_id: int | None, login: str):
        self.id, self.login = user_id, login
