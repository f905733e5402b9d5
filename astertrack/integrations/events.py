"""The webhook events a subscription can ask for and the JSON body of each, as pydantic models:
the outbox builds every body through these models (``call_body`` / ``lead_body`` / ``chat_*_body``: validate, then
dump as JSON), and the API's OpenAPI document lists them in its ``webhooks`` section, so the
documented body and the sent body are one definition."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CALL_RINGING = "call.ringing"
CALL_ANSWERED = "call.answered"
CALL_FINISHED = "call.finished"
CALL_MISSED = "call.missed"
LEAD_CREATED = "lead.created"
LEAD_UPDATED = "lead.updated"
DEAL_UPDATED = "deal.updated"
CHAT_STARTED = "chat.started"
CHAT_MESSAGE = "chat.message"
CHAT_CLOSED = "chat.closed"
EVENTS = (CALL_RINGING, CALL_ANSWERED, CALL_FINISHED, CALL_MISSED, LEAD_CREATED, LEAD_UPDATED, DEAL_UPDATED,
          CHAT_STARTED, CHAT_MESSAGE, CHAT_CLOSED)
CALL_EVENTS = (CALL_RINGING, CALL_ANSWERED, CALL_FINISHED, CALL_MISSED)
LEAD_EVENTS = (LEAD_CREATED, LEAD_UPDATED, DEAL_UPDATED)
CHAT_EVENTS = (CHAT_STARTED, CHAT_MESSAGE, CHAT_CLOSED)

# When each event is sent (docs/webhooks.md says the same at length).
DESCRIPTIONS = {
    CALL_RINGING: "A call started (the AGI routed it, or the AMI listener saw it ring); once per call.",
    CALL_ANSWERED: "A person answered the call (a manager's phone, not an IVR); once per call.",
    CALL_FINISHED: "A call ended, whatever its outcome; once per call, after a gap's CDR check.",
    CALL_MISSED: "A call ended unanswered or busy; once per call, after a gap's CDR check.",
    LEAD_CREATED: "A new lead was opened by its first enquiry (call, web form, callback request); once per lead.",
    LEAD_UPDATED: "A lead changed (a new enquiry, its state, amount, manager, a merge); once per version: "
                  "the body is the lead as it is when sent, and quick changes may arrive as one event.",
    DEAL_UPDATED: "A lead's state, deal amount or currency changed; once per change (quick changes may merge).",
    CHAT_STARTED: "A visitor opened a website chat; once per chat.",
    CHAT_MESSAGE: "A visitor or a manager wrote in a website chat (not the chat's system lines); once per message.",
    CHAT_CLOSED: "A website chat was closed (by the visitor, a manager, or idle for a day); once per chat.",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallEventBody(_Body):
    """A call as a CRM needs it to create or update a lead: no recording paths, no raw AMI data.
    The body is the call as it was when the event was queued (a worker pass, every few seconds)."""

    event: Literal["call.ringing", "call.answered", "call.finished", "call.missed"]
    call_id: int
    call_uid: str = Field(description="the call's stable id, also in Asterisk's CT_CALL_UID channel variable")
    site_id: int | None
    channel: str = Field(description="call (inbound), callback or missed_call_callback (a call astertrack placed)")
    state: str = Field(description="ringing, up or finished: where the call was when the event was queued")
    did: str | None = Field(description="the number dialled (a tracking number), E.164")
    caller_number: str | None = Field(description="the caller, E.164 (null when it is not a phone number)")
    started_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    outcome: str | None = Field(description="answered, missed or busy (null while the call goes on)")
    missed_reason: str | None = Field(
        description="no_answer, all_busy, caller_hangup, queue_abandon, queue_timeout or failed")
    wait_seconds: float | None
    talk_seconds: float | None
    manager_endpoint: str | None = Field(description="the phone that answered (or the manager's), e.g. PJSIP/101")
    source: str | None = Field(description="the name of the traffic source the call is attributed to")
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    keyword: str | None
    is_first_call: bool | None
    recording_state: str | None = Field(description="kept, empty, missing or deleted")


class LeadEventBody(_Body):
    """A lead (one customer's enquiries on a site) with its state and deal, as it is when sent."""

    event: Literal["lead.created", "lead.updated", "deal.updated"]
    lead_id: int
    site_id: int | None
    state: str = Field(description="new, in_progress, qualified, won or lost")
    amount: str | None = Field(description="the deal's amount as a decimal string, e.g. \"15000.50\"")
    currency: str | None = Field(description="ISO 4217 code, e.g. RUB")
    phone: str | None
    email: str | None
    name: str | None
    first_channel: str = Field(description="call, form, callback or missed_call_callback")
    source: str | None
    manager_id: int | None
    call_id: int | None = Field(description="the call that opened the lead, if a call did")
    enquiries: int
    external_id: str | None = Field(description="the CRM's own id for the lead, when a CRM set one")
    created_at: dt.datetime
    updated_at: dt.datetime | None = Field(description="the lead's last change; the version lead.updated announces")
    deal_updated_at: dt.datetime | None = Field(
        default=None, description="the last change of state, amount or currency; the version deal.updated announces")
    merged_into_id: int | None = Field(description="set when the lead was merged into that one")


class ChatStartedBody(_Body):
    """A new website chat with the attribution of the visit it was opened from."""

    event: Literal["chat.started"]
    chat_id: int
    site_id: int
    session_id: int | None = Field(description="the visit the chat was opened from, when the snippet knew it")
    source: str | None = Field(description="the name of the visit's traffic source")
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    keyword: str | None
    page_url: str | None = Field(description="the page the visitor opened the chat on")
    language: str = Field(description="ru or en: the widget's language")
    status: str = Field(description="waiting (offered to managers), active, unanswered (nobody answered or was "
                                    "available: the visitor is asked for a phone) or closed: where the chat was "
                                    "when the event was queued")
    created_at: dt.datetime


class ChatMessageBody(_Body):
    """One message a visitor or a manager wrote; the text is the visitor's own words: show it as text."""

    event: Literal["chat.message"]
    chat_id: int
    site_id: int
    seq: int = Field(description="the message's number within its chat (1, 2, ...: system lines take numbers too)")
    author: Literal["visitor", "manager"]
    manager_id: int | None = Field(description="the manager who wrote it (null for the visitor)")
    manager: str | None = Field(description="that manager's name")
    text: str
    at: dt.datetime


class ChatClosedBody(_Body):
    """A closed chat: who closed it, how long it ran, what it left (a phone, an enquiry in a lead)."""

    event: Literal["chat.closed"]
    chat_id: int
    site_id: int
    closed_by: str = Field(description="visitor, manager or system (nobody wrote for a day)")
    manager_id: int | None = Field(description="the manager who had the chat last")
    manager: str | None
    created_at: dt.datetime
    first_reply_at: dt.datetime | None = Field(description="a manager's first message; null: nobody answered")
    closed_at: dt.datetime
    messages: int = Field(description="the messages the visitor and managers wrote (system lines not counted)")
    phone: str | None = Field(description="the phone the visitor left, E.164")
    name: str | None
    enquiry_id: int | None = Field(description="the chat's enquiry (channel chat), once the visitor wrote or left a phone")
    lead_id: int | None = Field(description="the lead that enquiry joined")


EVENT_MODELS: dict[str, type[BaseModel]] = {
    CALL_RINGING: CallEventBody, CALL_ANSWERED: CallEventBody, CALL_FINISHED: CallEventBody,
    CALL_MISSED: CallEventBody, LEAD_CREATED: LeadEventBody, LEAD_UPDATED: LeadEventBody,
    DEAL_UPDATED: LeadEventBody, CHAT_STARTED: ChatStartedBody, CHAT_MESSAGE: ChatMessageBody,
    CHAT_CLOSED: ChatClosedBody,
}


def body(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of ``event``: validated by its model (a bug raises here, not at the receiver)."""
    return EVENT_MODELS[event].model_validate({"event": event, **fields}).model_dump(mode="json")


def call_body(event: str, call: Any, source_name: str | None, manager_endpoint: str | None) -> dict[str, Any]:
    """The body of a call event, from a ``Call`` row."""
    return body(event, {
        "call_id": call.id, "call_uid": call.call_uid, "site_id": call.site_id,
        "channel": call.lead_channel or "call", "state": call.state,
        "did": call.did, "caller_number": call.caller_number,
        "started_at": call.started_at, "answered_at": call.answered_at, "ended_at": call.ended_at,
        "outcome": call.outcome, "missed_reason": call.missed_reason,
        "wait_seconds": call.wait_seconds, "talk_seconds": call.talk_seconds,
        "manager_endpoint": manager_endpoint or call.answered_by, "source": source_name,
        "utm_source": call.utm_source, "utm_medium": call.utm_medium, "utm_campaign": call.utm_campaign,
        "keyword": call.keyword, "is_first_call": call.is_first_call, "recording_state": call.recording_state,
    })


def lead_body(event: str, lead: Any, source_name: str | None) -> dict[str, Any]:
    """The body of a lead or deal event, from a ``Lead`` row."""
    return body(event, {
        "lead_id": lead.id, "site_id": lead.site_id, "state": lead.status,
        "amount": None if lead.amount is None else f"{lead.amount:.2f}", "currency": lead.currency,
        "phone": lead.phone, "email": lead.email, "name": lead.name, "first_channel": lead.first_channel,
        "source": source_name, "manager_id": lead.manager_id, "call_id": lead.call_id,
        "enquiries": lead.enquiries_count, "external_id": lead.external_id,
        "created_at": lead.created_at, "updated_at": lead.updated_at, "deal_updated_at": lead.deal_updated_at,
        "merged_into_id": lead.merged_into_id,
    })


def chat_started_body(chat: Any, visit: Any, source_name: str | None) -> dict[str, Any]:
    """The body of ``chat.started``, from a ``Chat`` and its ``VisitorSession`` (or None)."""
    return body(CHAT_STARTED, {
        "chat_id": chat.id, "site_id": chat.site_id, "session_id": chat.session_id, "source": source_name,
        "utm_source": getattr(visit, "utm_source", None), "utm_medium": getattr(visit, "utm_medium", None),
        "utm_campaign": getattr(visit, "utm_campaign", None), "keyword": getattr(visit, "keyword", None),
        "page_url": chat.page_url, "language": chat.language, "status": chat.status, "created_at": chat.created_at,
    })


def chat_message_body(chat: Any, message: Any, manager_name: str | None) -> dict[str, Any]:
    """The body of ``chat.message``, from a ``ChatMessage`` of author visitor or manager."""
    return body(CHAT_MESSAGE, {
        "chat_id": chat.id, "site_id": chat.site_id, "seq": message.seq, "author": message.author,
        "manager_id": message.manager_id, "manager": manager_name if message.manager_id else None,
        "text": message.text or "", "at": message.at,
    })


def chat_closed_body(chat: Any, manager_name: str | None, messages: int, lead_id: int | None) -> dict[str, Any]:
    """The body of ``chat.closed``, from a closed ``Chat``."""
    return body(CHAT_CLOSED, {
        "chat_id": chat.id, "site_id": chat.site_id, "closed_by": chat.closed_by or "system",
        "manager_id": chat.manager_id, "manager": manager_name, "created_at": chat.created_at,
        "first_reply_at": chat.first_reply_at, "closed_at": chat.closed_at, "messages": messages,
        "phone": chat.phone, "name": chat.name, "enquiry_id": chat.enquiry_id, "lead_id": lead_id,
    })
