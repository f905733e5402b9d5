"""The lead card: contact data, state and deal, every enquiry in order with its attribution, the
calls' recordings, the website chats' conversations, the visit; merging another lead into this one."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from astertrack.audit.log import json_safe
from astertrack.chat.views import chats_of_lead, manager_names
from astertrack.db.engine import begin_write
from astertrack.db.models import Call, ChatMessage, Enquiry, Lead, Manager, Site, Source, VisitorSession
from astertrack.db.types import utcnow
from astertrack.leads import callbacks
from astertrack.leads.deals import set_state as set_lead_state
from astertrack.leads.errors import LeadError
from astertrack.leads.merging import merge_leads
from webadmin.calls.access import can_see
from webadmin.calls.card import recording_file
from webadmin.db import get_session
from webadmin.filters import arg_str
from webadmin.leads import bp
from webadmin.leads.access import visible_condition, visible_lead_or_404
from webadmin.leads.forms import FIELD_ERRORS, ButtonForm, StateForm
from webadmin.leads.listing import _search_condition
from webadmin.security import ROLES, roles_required
from webadmin.settings.audit import record_change

STATE_FIELDS = ("status", "amount", "currency")
MERGE_CANDIDATES = 20


def _fields(lead: Lead, names: tuple[str, ...]) -> dict:
    return {name: json_safe(getattr(lead, name)) for name in names}


def chat_line(message: ChatMessage, names: dict[int, str]) -> str:
    """A chat's system line worded in the reader's language (plain text: the template escapes it,
    names and the phone included)."""
    meta = message.meta or {}
    unknown = _("a manager")
    if message.kind == "claimed":
        return _("%(manager)s took the chat", manager=meta.get("manager") or names.get(message.manager_id) or unknown)
    if message.kind == "transferred":
        if meta.get("from"):
            return _("transferred from %(source)s to %(target)s", source=meta["from"], target=meta.get("to") or unknown)
        return _("given to %(target)s", target=meta.get("to") or unknown)
    if message.kind == "asked_phone":
        if meta.get("reason") == "nobody_available":
            return _("asked for a phone: nobody was available")
        return _("asked for a phone: nobody answered in time")
    if message.kind == "contact":
        if meta.get("name"):
            return _("left a phone %(phone)s, name %(name)s", phone=meta.get("phone") or "", name=meta["name"])
        return _("left a phone %(phone)s", phone=meta.get("phone") or "")
    if message.kind == "closed":
        if meta.get("by") == "visitor":
            return _("the visitor closed the chat")
        if meta.get("by") == "manager":
            return _("%(manager)s closed the chat", manager=meta.get("manager") or unknown)
        return _("closed: nobody wrote for a day")
    return message.kind


def _conversations(db, lead_id: int) -> list[dict]:
    """The lead's website chats as the card shows them: who wrote each line, system lines worded."""
    chats = chats_of_lead(db, lead_id)
    ids = {c.manager_id for c, _lines in chats if c.manager_id}
    ids |= {m.manager_id for _c, lines in chats for m in lines if m.manager_id}
    names = manager_names(db, ids)
    out = []
    for chat, lines in chats:
        shown = []
        for m in lines:
            if m.author == "system":
                shown.append({"at": m.at, "author": "system", "who": "", "text": chat_line(m, names)})
            else:
                who = _("Visitor") if m.author == "visitor" else names.get(m.manager_id) or _("a manager")
                shown.append({"at": m.at, "author": m.author, "who": who, "text": m.text or ""})
        out.append({"chat": chat, "manager": names.get(chat.manager_id), "lines": shown})
    return out


def _card(lead: Lead, form: StateForm | None = None, status: int = 200):
    db = get_session()
    enquiries = db.scalars(select(Enquiry).where(Enquiry.lead_id == lead.id).order_by(Enquiry.at, Enquiry.id)).all()
    call_ids = {e.call_id for e in enquiries if e.call_id} | ({lead.call_id} if lead.call_id else set())
    calls = {c.id: c for c in db.scalars(select(Call).where(Call.id.in_(call_ids)))} if call_ids else {}
    recordings = {cid: {"visible": can_see(call), "playable": can_see(call) and recording_file(call) is not None}
                  for cid, call in calls.items()}
    source_ids = {e.source_id for e in enquiries if e.source_id} | ({lead.source_id} if lead.source_id else set())
    sources = dict(db.execute(select(Source.id, Source.name).where(Source.id.in_(source_ids))).all())
    session_ids = {e.session_id for e in enquiries if e.session_id} | ({lead.session_id} if lead.session_id else set())
    visits = {v.id: v for v in db.scalars(select(VisitorSession).where(VisitorSession.id.in_(session_ids)))}
    if form is None:
        form = StateForm(formdata=None, data={"status": lead.status, "amount": "" if lead.amount is None else str(lead.amount),
                                              "currency": lead.currency or "RUB"})
    merged_from = db.scalars(select(Lead).where(Lead.merged_into_id == lead.id).order_by(Lead.id)).all()
    invalid_phone = next((e.phone_raw for e in enquiries if e.phone_invalid and e.phone_raw), None)
    invalid_email = next((e.email for e in enquiries if e.email_invalid and e.email), None)
    return render_template(
        "leads/card.html", lead=lead, form=form, enquiries=enquiries, calls=calls, recordings=recordings,
        sources=sources, visits=visits, visit=visits.get(lead.session_id), merged_from=merged_from,
        invalid_phone=invalid_phone, invalid_email=invalid_email, site=db.get(Site, lead.site_id) if lead.site_id else None,
        manager=db.get(Manager, lead.manager_id) if lead.manager_id else None,
        button=ButtonForm(formdata=None), conversations=_conversations(db, lead.id)), status


@bp.get("/<int:lead_id>")
@roles_required(*ROLES)
def card(lead_id: int):
    return _card(visible_lead_or_404(lead_id))


@bp.post("/<int:lead_id>/state")
@roles_required(*ROLES)
def set_state(lead_id: int):
    lead = visible_lead_or_404(lead_id)
    form = StateForm()
    if lead.merged_into_id is not None:
        flash(_("This lead was merged into another one: change that lead instead."), "error")
        return redirect(url_for("leads.card", lead_id=lead.id))
    if not form.validate():
        return _card(lead, form, 400)
    db = get_session()
    before = _fields(lead, STATE_FIELDS)
    try:
        amount = form.amount.data or None
        currency = form.currency.data if amount is not None or lead.amount is not None else None
        set_lead_state(db, lead, form.status.data, amount, currency)
    except LeadError as error:
        db.rollback()
        field = form.field_for(error.field)
        field.errors = [*field.errors, str(FIELD_ERRORS.get(error.field, FIELD_ERRORS["state"]))]
        return _card(visible_lead_or_404(lead_id), form, 400)
    if not record_change(db, "update", "leads", lead, before, lambda: _fields(lead, STATE_FIELDS)):
        flash(_("The lead changed meanwhile; try again."), "error")
    else:
        flash(_("Lead saved."), "ok")
    return redirect(url_for("leads.card", lead_id=lead_id))


# ---------------------------------------------------------------- merge


@bp.get("/<int:lead_id>/merge")
@roles_required(*ROLES)
def merge_pick(lead_id: int):
    """Find the other lead by phone, e-mail, name or id."""
    lead = visible_lead_or_404(lead_id)
    query = arg_str("q", 100)
    candidates = []
    if query:
        candidates = get_session().scalars(
            select(Lead).where(_search_condition(query), Lead.id != lead.id, Lead.merged_into_id.is_(None),
                               visible_condition())
            .order_by(Lead.created_at.desc(), Lead.id.desc()).limit(MERGE_CANDIDATES)).all()
    return render_template("leads/merge_pick.html", lead=lead, query=query or "", candidates=candidates)


def _merge_pair(lead_id: int, other_id: int) -> tuple[Lead, Lead]:
    lead, other = visible_lead_or_404(lead_id), visible_lead_or_404(other_id)
    if lead.id == other.id:
        abort(404)
    return lead, other


@bp.get("/<int:lead_id>/merge/<int:other_id>")
@roles_required(*ROLES)
def merge_confirm(lead_id: int, other_id: int):
    lead, other = _merge_pair(lead_id, other_id)
    return render_template("leads/merge_confirm.html", lead=lead, other=other, button=ButtonForm(formdata=None))


@bp.post("/<int:lead_id>/merge/<int:other_id>")
@roles_required(*ROLES)
def merge(lead_id: int, other_id: int):
    lead, other = _merge_pair(lead_id, other_id)
    form = ButtonForm()
    if not form.validate():
        return render_template("leads/merge_confirm.html", lead=lead, other=other, button=form), 400
    if lead.merged_into_id is not None or other.merged_into_id is not None:
        flash(_("One of the two leads was merged meanwhile; nothing changed."), "error")
        return redirect(url_for("leads.card", lead_id=lead.id))
    db = get_session()
    before = {"merged_into_id": None}
    try:
        merge_leads(db, lead, other, current_user)
    except LeadError as error:
        db.rollback()
        flash(_("The leads were not merged: %(reason)s", reason=str(error)), "error")
        return redirect(url_for("leads.merge_confirm", lead_id=lead_id, other_id=other_id))
    if record_change(db, "update", "leads", other, before, lambda: {"merged_into_id": other.merged_into_id}):
        flash(_("Lead #%(other)s was merged into this lead.", other=other_id), "ok")
    else:
        flash(_("The lead changed meanwhile; try again."), "error")
    return redirect(url_for("leads.card", lead_id=lead_id))


# ---------------------------------------------------------------- call back


@bp.post("/<int:lead_id>/callback")
@roles_required(*ROLES)
def callback(lead_id: int):
    """Ask Asterisk to call the customer back (a manager first, then the lead's phone), through the
    callbacks core: the same working hours, routing and retries as a visitor's callback request."""
    form = ButtonForm()
    if not form.validate():
        flash(_("The form expired; try again."), "error")
        return redirect(url_for("leads.card", lead_id=lead_id))
    db = get_session()
    db.commit()
    begin_write(db)
    lead = visible_lead_or_404(lead_id)
    if lead.merged_into_id is not None or not lead.phone:
        db.rollback()
        flash(_("This lead has no phone number to call back."), "error")
        return redirect(url_for("leads.card", lead_id=lead_id))
    settings = callbacks.CallbackSettings.from_config(current_app.config["ASTERTRACK_CONFIG"].values)
    try:
        request = callbacks.request_callback(db, db.get(Site, lead.site_id) if lead.site_id else None, lead.phone,
                                             "callback", lead=lead, requested_by=current_user, now=utcnow(),
                                             settings=settings)
    except callbacks.CallbackError:
        db.rollback()
        flash(_("This lead has no phone number to call back."), "error")
        return redirect(url_for("leads.card", lead_id=lead_id))
    db.commit()
    flash(_("Callback requested: Asterisk calls a manager, then %(phone)s, from %(when)s.", phone=request.phone,
            when=format_datetime(request.next_attempt_at, "short") if request.next_attempt_at else "—"), "ok")
    return redirect(url_for("leads.card", lead_id=lead_id))
