"""``/api/v1/leads``: a CRM lists and reads leads and their enquiries, and sets a lead's state and
deal (revenue).  The state and deal go through the same core function as the admin's lead card
(``astertrack.leads.deals.set_state``), so the funnel and managers reports count them alike, and
each change is in the audit log under the token's prefix.

    GET   /api/v1/leads, /leads/<id>, /leads/<id>/enquiries
    PATCH /api/v1/leads/<id>/deal   {"state": "won", "amount": "15000.50", "currency": "RUB", "external_id": "deal-77"}
    POST  /api/v1/leads/state       the same values, the lead named by lead_id, call_id, call_uid or phone

A merged lead answers as the lead it was merged into.
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.audit import log as audit_log
from astertrack.db.models import Call, Enquiry, Lead, Source
from astertrack.integrations import api_tokens
from astertrack.leads.contacts import clean_text
from astertrack.leads.deals import set_state
from astertrack.leads.enquiries import record_enquiry, resolve
from astertrack.leads.errors import LeadError
from astertrack.phones import try_normalize
from webadmin.api import bp
from webadmin.api.auth import ApiError, current_token
from webadmin.api.registry import check_site, limit_to_site, operation, paginate, within_period
from webadmin.api.schemas import (
    MAX_ID,
    DealPatch,
    EnquiryList,
    EnquiryOut,
    LeadList,
    LeadOut,
    LeadsQuery,
    LeadStateBody,
    Page,
    money,
)
from webadmin.db import get_session

EXTERNAL_ID_MAX = 100
IDENTIFIERS = ("lead_id", "call_id", "call_uid", "phone")
AUDIT_LOGIN = "api:{prefix}"  # who changed a lead through the API, in the audit log
DEAL_ERRORS = ((400, "invalid_state"), (400, "invalid_amount"), (400, "invalid_currency"))


def lead_out(lead: Lead, source: str | None) -> LeadOut:
    """A lead as the API shows it; money as a decimal string ("15000.50") so no float rounds it."""
    return LeadOut(
        id=lead.id, site_id=lead.site_id, state=lead.status, amount=money(lead.amount), currency=lead.currency,
        phone=lead.phone, email=lead.email, name=lead.name, first_channel=lead.first_channel,
        source_id=lead.source_id, source=source, manager_id=lead.manager_id, call_id=lead.call_id,
        session_id=lead.session_id, enquiries=lead.enquiries_count, external_id=lead.external_id,
        created_at=lead.created_at, last_enquiry_at=lead.last_enquiry_at, updated_at=lead.updated_at,
        merged_into_id=lead.merged_into_id, url=url_for("api.lead", lead_id=lead.id, _external=True))


def _lead_answer(db: Session, lead: Lead) -> LeadOut:
    source = db.get(Source, lead.source_id) if lead.source_id else None
    return lead_out(lead, source.name if source else None)


def _lead(db: Session, lead_id: int, write: bool = False) -> Lead:
    row = db.get(Lead, lead_id)
    if row is None:
        raise ApiError(404, "lead_not_found", f"no lead {lead_id}")
    row = resolve(db, row)
    check_site(row.site_id, write)
    return row


@bp.get("/leads")
@operation("Leads", "List leads", query=LeadsQuery, response=LeadList,
           description="Newest first; merged leads are left out (they answer as the lead they joined). "
                       "`from`/`to` bound the lead's creation, `channel` is its first channel.")
def leads(query: LeadsQuery):
    stmt = limit_to_site(select(Lead, Source.name).outerjoin(Source, Source.id == Lead.source_id)
                         .where(Lead.merged_into_id.is_(None)), Lead.site_id, query.site_id)
    for column, value in ((Lead.source_id, query.source_id), (Lead.manager_id, query.manager_id),
                          (Lead.first_channel, query.channel), (Lead.status, query.state)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = within_period(stmt, Lead.created_at, query)
    return LeadList(**paginate(get_session(), stmt, Lead.id, query, lambda row: lead_out(*row)))


@bp.get("/leads/<int:lead_id>")
@operation("Leads", "One lead", response=LeadOut, errors=[(404, "lead_not_found")])
def lead(lead_id: int):
    db = get_session()
    return _lead_answer(db, _lead(db, lead_id))


@bp.get("/leads/<int:lead_id>/enquiries")
@operation("Leads", "A lead's enquiries", query=Page, response=EnquiryList, errors=[(404, "lead_not_found")],
           description="Every call, form and callback request of the lead, newest first, each with the "
                       "attribution of its visit or call as it was then.")
def lead_enquiries(lead_id: int, query: Page):
    db = get_session()
    row = _lead(db, lead_id)
    stmt = (select(Enquiry, Source.name).outerjoin(Source, Source.id == Enquiry.source_id)
            .where(Enquiry.lead_id == row.id))

    def out(pair) -> EnquiryOut:
        enquiry, source = pair
        return EnquiryOut.model_validate({**{c.key: getattr(enquiry, c.key) for c in Enquiry.__table__.columns
                                             if c.key in EnquiryOut.model_fields}, "source": source})

    return EnquiryList(**paginate(db, stmt, Enquiry.id, query, out))


def _integer(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or len(str(value)) > 12:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a positive integer")
    return min(int(value), MAX_ID + 1)  # beyond any id: found nowhere (and bindable on SQLite)


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


def _apply(db: Session, row: Lead, values: DealPatch | LeadStateBody) -> LeadOut:
    """Set the state and deal through the core, with the audit row naming the token."""
    before = {"status": row.status, "amount": audit_log.json_safe(row.amount), "currency": row.currency,
              "external_id": row.external_id}
    try:
        row = set_state(db, row, values.state, values.amount, values.currency)
    except LeadError as error:
        raise ApiError(400, f"invalid_{error.field}", str(error)) from None
    if values.external_id is not None:
        row.external_id = clean_text(str(values.external_id), EXTERNAL_ID_MAX)
    db.flush()
    token = current_token()
    audit_log.record(db, "update", "leads", row, before,
                     {"status": row.status, "amount": audit_log.json_safe(row.amount), "currency": row.currency,
                      "external_id": row.external_id},
                     user=_ApiActor(token.user_id, AUDIT_LOGIN.format(prefix=token.prefix)))
    return _lead_answer(db, row)


@bp.patch("/leads/<int:lead_id>/deal")
@operation("Leads", "Set a lead's state and deal", body=DealPatch, response=LeadOut, scope="write",
           errors=[(404, "lead_not_found"), *DEAL_ERRORS],
           description="As the lead card does: won makes a won deal with the amount as revenue, lost a lost "
                       "one; `amount: null` keeps the amount known. Audited under the token's prefix.")
def lead_deal(lead_id: int, body: DealPatch):
    db = get_session()
    return _apply(db, _lead(db, lead_id, write=True), body)


@bp.post("/leads/state")
@operation("Leads", "Set a lead's state and deal, the lead named by id, call or phone", body=LeadStateBody,
           response=LeadOut, scope="write", field_codes=True,
           errors=[(400, "lead_identifier_required"), (400, "site_required"), (404, "lead_not_found"),
                   (404, "call_not_found")],
           description="For CRMs that know the call or the phone rather than the lead. Give exactly one of "
                       "`lead_id`, `call_id`, `call_uid`, `phone` (a token of every site adds `site_id` to "
                       "`phone`). Errors in a field answer `invalid_<field>` (e.g. `invalid_state`).")
def set_lead_state(body: LeadStateBody):
    db = get_session()
    row = find_lead(db, body.model_dump(exclude_none=True))
    check_site(row.site_id, write=True)
    return _apply(db, row, body)


class _ApiActor:
    """Who the audit log names for a change made with a token: its creator's id, the token's prefix."""

    def __init__(self, user_id: int | None, login: str):
        self.id, self.login = user_id, login
