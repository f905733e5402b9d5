"""The webhook events a subscription can ask for and the JSON body of each, as pydantic models:
the outbox builds every body through these models, and the API's OpenAPI document lists them
in its ``webhooks`` section, so the documented body and the sent body are one definition."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CALL_RINGING = "call.ringing"
CALL_ANSWERED = "call.answered"
CALL_FINISHED = "call.finished"
CALL_MISSED = "call.missed"
LEAD_CREATED = "lead.created"
LEAD_UPDATED = "lead.updated"
DEAL_UPDATED = "deal.updated"
EVENTS = (CALL_RINGING, CALL_ANSWERED, CALL_FINISHED, CALL_MISSED, LEAD_CREATED, LEAD_UPDATED, DEAL_UPDATED)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallEventBody(_Body):
    """A call as a CRM needs it to create or update a lead: no recording paths, no raw AMI data."""

    event: Literal["call.ringing", "call.answered", "call.finished", "call.missed"]
    call_id: int
    call_uid: str
    site_id: int | None
    did: str | None = Field(description="the number dialled (a tracking number), E.164")
    caller_number: str | None
    started_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    outcome: str | None = Field(description="answered, missed, busy, ... (null while the call goes on)")
    missed_reason: str | None
    wait_seconds: int | None
    talk_seconds: int | None
    manager_endpoint: str | None
    source: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    keyword: str | None
    is_first_call: bool | None
    recording_state: str | None


class LeadEventBody(_Body):
    """A lead (one customer's enquiries on a site) with its state and deal."""

    event: Literal["lead.created", "lead.updated", "deal.updated"]
    lead_id: int
    site_id: int | None
    state: str = Field(description="new, in_progress, qualified, won or lost")
    amount: str | None = Field(description="the deal's amount as a decimal string, e.g. \"15000.50\"")
    currency: str | None
    phone: str | None
    email: str | None
    name: str | None
    first_channel: str
    source: str | None
    manager_id: int | None
    call_id: int | None = Field(description="the call that opened the lead, if a call did")
    enquiries: int
    external_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime | None
    merged_into_id: int | None


EVENT_MODELS: dict[str, type[BaseModel]] = {
    CALL_RINGING: CallEventBody, CALL_ANSWERED: CallEventBody, CALL_FINISHED: CallEventBody,
    CALL_MISSED: CallEventBody, LEAD_CREATED: LeadEventBody, LEAD_UPDATED: LeadEventBody,
    DEAL_UPDATED: LeadEventBody,
}
