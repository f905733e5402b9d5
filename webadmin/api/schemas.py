"""The API's bodies as pydantic models: they validate what comes in (query strings, JSON bodies)
and describe what goes out, and the OpenAPI document is generated from them (``openapi.py``),
so the documented shape and the checked shape are one definition.

Conventions: integer ids; timestamps ISO 8601 in UTC; money as decimal strings ("15000.50").
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from astertrack.chat import STATUSES as CHAT_STATUSES
from astertrack.integrations.events import EVENTS
from astertrack.leads import CHANNELS, STATES
from astertrack.leads.deals import parse_amount, parse_currency
from astertrack.leads.errors import LeadError
from astertrack.routing.attribution import REASONS

MAX_ID = 2**31 - 1  # ids are 32-bit integers; a larger one names no row (and SQLite cannot bind past 2**63)
LIMIT_MAX = 500
LIMIT_DEFAULT = 100
OUTCOMES = ("answered", "missed", "busy")
CALL_STATES = ("ringing", "up", "finished")

Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC (a time without an offset is read as UTC); a time that cannot be in UTC is refused."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise ValueError("the time is out of range") from None


UtcTime = Annotated[dt.datetime, AfterValidator(_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """An answer's model: built from rows, serialised with timestamps in UTC."""

    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------- errors


class ErrorDetail(_Out):
    field: str | None = Field(description="the parameter or body field at fault (dotted path), if one")
    message: str
    type: str = Field(description="the kind of problem, e.g. missing, int_parsing, literal_error")


class ErrorBody(_Out):
    code: str = Field(description="stable, machine-readable: unauthorized, wrong_site, read_only, "
                                  "invalid_parameter, invalid_cursor, not_found, ...")
    message: str = Field(description="for people; may change")
    details: list[ErrorDetail] | None = None


class Error(_Out):
    """Every answer other than 2xx."""

    error: ErrorBody


# ---------------------------------------------------------------- queries


class Page(_Model):
    """Cursor pagination, newest first (by id): pass ``next_cursor`` of one answer as ``cursor`` of
    the next; rows added meanwhile neither repeat nor push rows out of the pages."""

    limit: int = Field(LIMIT_DEFAULT, ge=1, le=LIMIT_MAX, description="rows per page")
    cursor: str | None = Field(None, max_length=200, description="opaque: next_cursor of the previous page")


class Period(Page):
    from_: UtcTime | None = Field(None, alias="from", description="from this time, inclusive (ISO 8601)")
    to: UtcTime | None = Field(None, description="up to this time, exclusive (ISO 8601)")
    site_id: Id | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class CallsQuery(Period):
    source_id: Id | None = None
    manager_id: Id | None = Field(None, description="the manager who answered")
    outcome: Literal[OUTCOMES] | None = None  # type: ignore[valid-type]
    channel: Literal[CHANNELS] | None = Field(None, description="how the call came: an inbound call or a callback")  # type: ignore[valid-type]
    state: Literal[CALL_STATES] | None = None  # type: ignore[valid-type]
    min_confidence: float | None = Field(None, ge=0, le=1,
                                         description="only calls attributed at least this sure (0..1), as the reports filter")


class LeadsQuery(Period):
    """``from``/``to`` bound the lead's creation; merged leads are not listed."""

    source_id: Id | None = None
    manager_id: Id | None = None
    channel: Literal[CHANNELS] | None = Field(None, description="the lead's first channel")  # type: ignore[valid-type]
    state: Literal[STATES] | None = None  # type: ignore[valid-type]


class SessionsQuery(Period):
    """``from``/``to`` bound the visit's first request."""

    source_id: Id | None = None


class ChatsQuery(Period):
    """``from``/``to`` bound the chat's start."""

    status: Literal[CHAT_STATUSES] | None = Field(  # type: ignore[valid-type]
        None, description="waiting, active, unanswered (the visitor is asked for a phone) or closed")
    manager_id: Id | None = Field(None, description="the manager who has (or had) the chat")


class ChatMessagesQuery(_Model):
    """A chat's messages oldest first, after a message number: pass ``next_after`` of one answer
    as ``after`` of the next (a client that saw messages up to 12 asks ``after=12``)."""

    after: int = Field(0, ge=0, le=MAX_ID, description="only messages numbered above this")
    limit: int = Field(LIMIT_DEFAULT, ge=1, le=LIMIT_MAX, description="messages per answer")


class SiteQuery(Page):
    site_id: Id | None = None


class NumbersQuery(SiteQuery):
    source_id: Id | None = None
    pool_id: Id | None = None


# ---------------------------------------------------------------- bodies in


def _amount(value: Any) -> Any:
    try:
        parse_amount(value)
    except LeadError as error:
        raise ValueError(str(error)) from None
    return value


def _currency(value: Any) -> Any:
    try:
        parse_currency(value)
    except LeadError as error:
        raise ValueError(str(error)) from None
    return value


Amount = Annotated[StrictStr | StrictInt | StrictFloat | None, AfterValidator(_amount),
                   Field(description="the deal's amount: a decimal string (\"15000.50\") or a number; "
                                     "null keeps the amount known")]
Currency = Annotated[StrictStr | None, AfterValidator(_currency),
                     Field(description="ISO 4217 code (RUB, USD, ...); null keeps the lead's, RUB by default")]
ExternalId = Annotated[StrictStr | StrictInt | None, Field(description="the CRM's id of the deal, up to 100 characters")]
DigitId = Annotated[StrictInt | Annotated[StrictStr, Field(pattern=r"^[0-9]{1,10}$")], Field(description="a positive integer")]


class _DealValues(_Model):
    state: Literal[STATES] = Field(description="new, in_progress, qualified, won or lost")  # type: ignore[valid-type]
    amount: Amount = None
    currency: Currency = None
    external_id: ExternalId = None

    @field_validator("external_id")
    @classmethod
    def _external_length(cls, value):
        if value is not None and len(str(value)) > 100:
            raise ValueError("external_id is text of at most 100 characters")
        return value


class DealPatch(_DealValues):
    """The lead's state and deal, as the lead card sets them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"state": "won", "amount": "15000.50", "currency": "RUB", "external_id": "deal-77"}]})


class LeadStateBody(_DealValues):
    """Name the lead by exactly one of lead_id, call_id, call_uid or phone (with site_id for a
    token of every site); the error codes are ``invalid_<field>`` for this operation."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={  # older CRMs send more than these fields
        "examples": [{"lead_id": 1, "state": "won", "amount": "15000.50", "currency": "RUB"},
                     {"phone": "+79161234567", "site_id": 1, "state": "in_progress"}]})

    lead_id: DigitId | None = None
    call_id: DigitId | None = None
    call_uid: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    phone: Annotated[StrictStr, Field(max_length=64)] | None = Field(None, description="best in E.164: +74951234567")
    site_id: DigitId | None = Field(None, description="with phone, for a token of every site")


class WebhookCreate(_Model):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"url": "https://crm.example/hooks/astertrack", "events": ["call.finished", "lead.created"]}]})

    url: str = Field(min_length=1, max_length=1000, description="http:// or https://, no user or password in it")
    events: list[Literal[EVENTS]] = Field(min_length=1, description="the events to receive")  # type: ignore[valid-type]


class WebhookPatch(_Model):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    enabled: StrictBool = Field(description="false pauses deliveries, true resumes them")


# ---------------------------------------------------------------- answers

T = TypeVar("T")


class ListPage(_Out, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class CallOut(_Out):
    id: int
    call_uid: str
    site_id: int | None
    did: str | None = Field(description="the number dialled (a tracking number), E.164")
    caller_number: str | None
    caller_name: str | None
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    state: str = Field(description="ringing, up or finished")
    outcome: str | None = Field(description="answered, missed or busy; null while the call goes on")
    missed_reason: str | None
    wait_seconds: float | None
    talk_seconds: float | None
    total_seconds: float | None
    manager_id: int | None = Field(description="the manager who answered")
    manager: str | None
    routed_manager_id: int | None = Field(description="the manager routing chose first")
    source_id: int | None
    source: str | None
    session_id: int | None = Field(description="the visit the call is attributed to")
    attribution_kind: str | None
    attribution_confidence: float | None
    attribution_reason: str | None = Field(description="why this attribution: " + ", ".join(REASONS))
    attribution_candidates: int | None = Field(description="how many visits could have made the call, where that matters")
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    keyword: str | None
    is_first_call: bool | None
    channel: str = Field(description="call, or callback / missed_call_callback for a call astertrack placed")
    hangup_side: str | None
    transferred: bool
    recording_state: str | None


class LeadOut(_Out):
    id: int
    site_id: int | None
    state: str
    amount: str | None = Field(description="the deal's amount as a decimal string")
    currency: str | None
    phone: str | None
    email: str | None
    name: str | None
    first_channel: str
    source_id: int | None
    source: str | None
    manager_id: int | None
    call_id: int | None = Field(description="the call that opened the lead, if a call did")
    session_id: int | None
    enquiries: int
    external_id: str | None
    created_at: dt.datetime
    last_enquiry_at: dt.datetime | None
    updated_at: dt.datetime | None
    merged_into_id: int | None
    url: str


class EnquiryOut(_Out):
    id: int
    lead_id: int
    site_id: int | None
    channel: str
    at: dt.datetime
    repeat: bool = Field(description="joined a lead that existed")
    call_id: int | None
    session_id: int | None
    source_id: int | None
    source: str | None
    manager_id: int | None
    name: str | None
    phone: str | None
    phone_raw: str | None
    phone_invalid: bool
    email: str | None
    email_invalid: bool
    message: str | None
    page_url: str | None
    form_name: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_content: str | None
    utm_term: str | None
    keyword: str | None
    gclid: str | None
    yclid: str | None
    fbclid: str | None
    ga_client_id: str | None
    ym_client_id: str | None


class SessionOut(_Out):
    """A website visit.  No IP address and no user agent: a CRM needs the attribution, not the
    visitor's network identity (personal data kept in astertrack only for its bot limits)."""

    id: int
    site_id: int
    source_id: int | None
    source: str | None
    visitor_id: str | None = Field(description="the snippet's first-party visitor id")
    ga_client_id: str | None = Field(description="Google Analytics client id (from _ga)")
    ym_client_id: str | None = Field(description="Yandex Metrica client id (_ym_uid)")
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_content: str | None
    utm_term: str | None
    keyword: str | None
    gclid: str | None
    yclid: str | None
    fbclid: str | None
    referrer: str | None
    landing_page: str | None
    is_bot: bool
    page_views: int
    first_seen: dt.datetime
    last_seen: dt.datetime


class SourceOut(_Out):
    id: int
    site_id: int
    name: str
    kind: str = Field(description="static (owns a number) or dynamic (a pool)")
    channel: str | None
    priority: int
    pool_id: int | None
    enabled: bool
    archived_at: dt.datetime | None


class NumberOut(_Out):
    id: int
    number: str
    site_id: int
    source_id: int | None
    pool_id: int | None
    label: str | None
    enabled: bool
    archived_at: dt.datetime | None


class PoolOut(_Out):
    id: int
    site_id: int
    name: str
    fallback_number: str | None
    numbers: int = Field(description="numbers in the pool, archived ones not counted")
    archived_at: dt.datetime | None


class ManagerOut(_Out):
    id: int
    name: str
    endpoint: str = Field(description="the phone, e.g. PJSIP/101")
    extension: str | None
    enabled: bool
    paused: bool
    archived_at: dt.datetime | None


class WebhookOut(_Out):
    id: int
    url: str
    events: list[str]
    state: Literal["active", "paused", "archived"]
    archived_at: dt.datetime | None
    last_delivery: Literal["delivered", "dead", "retrying", "pending"] | None
    last_response_code: int | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret: returned only in this answer, never again")


class WebhookRemoved(_Out):
    id: int
    result: Literal["archived", "deleted"] = Field(
        description="archived when deliveries refer to it (kept with its log), deleted when nothing did")


class DeliveryOut(_Out):
    id: int
    subscription_id: int
    event: str
    call_id: int | None
    payload: dict[str, Any]
    state: Literal["delivered", "dead", "retrying", "pending"]
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    delivered_at: dt.datetime | None
    dead_at: dt.datetime | None
    response_code: int | None
    response_excerpt: str | None
    last_error: str | None


class ChatOut(_Out):
    """A website chat with its state and the attribution of the visit it was opened from.  No IP
    address and no visitor token."""

    id: int
    site_id: int
    status: str = Field(description="waiting, active, unanswered (the visitor is asked for a phone) or closed")
    manager_id: int | None = Field(description="the manager who has the chat (had it, once closed)")
    manager: str | None
    offered_to: list[int] = Field(description="the managers the chat was offered to, first notified first")
    seq: int = Field(description="the number of the chat's last message (system lines included)")
    visitor_read_seq: int = Field(description="the visitor has seen every message up to this number")
    manager_read_seq: int = Field(description="the manager has seen every message up to this number")
    name: str | None = Field(description="the name the visitor gave")
    phone: str | None = Field(description="the phone the visitor left, E.164")
    language: str
    page_url: str | None = Field(description="the page the chat was opened on")
    enquiry_id: int | None = Field(description="the chat's enquiry (channel chat), once the visitor wrote or left a phone")
    lead_id: int | None = Field(description="the lead that enquiry joined")
    created_at: dt.datetime
    updated_at: dt.datetime
    first_reply_at: dt.datetime | None = Field(description="a manager's first message; null: nobody has answered")
    closed_at: dt.datetime | None
    closed_by: str | None = Field(description="visitor, manager or system (idle for a day)")
    session_id: int | None = Field(description="the visit the chat was opened from")
    source_id: int | None
    source: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    keyword: str | None


class ChatMessageOut(_Out):
    """A message, or a system line (``kind`` other than text: ``meta`` says who to whom; the admin
    words it in the reader's language).  ``text`` is what a person typed: show it as text."""

    id: int
    seq: int = Field(description="the message's number within its chat, from 1")
    author: str = Field(description="visitor, manager or system")
    kind: str = Field(description="text, claimed, transferred, asked_phone, contact or closed")
    text: str | None
    manager_id: int | None = Field(description="the manager who wrote it, or who took, moved or closed the chat")
    at: dt.datetime
    meta: dict[str, Any] = Field(description="a system line's details: manager, to / from (names and ids), "
                                             "by (who closed), reason (why a phone was asked for), phone")


class ChatMessageList(_Out):
    items: list[ChatMessageOut]
    next_after: int | None = Field(description="pass as after for the next messages; null when these were the last")


def money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class CallList(ListPage[CallOut]):
    pass


class LeadList(ListPage[LeadOut]):
    pass


class EnquiryList(ListPage[EnquiryOut]):
    pass


class SessionList(ListPage[SessionOut]):
    pass


class SourceList(ListPage[SourceOut]):
    pass


class NumberList(ListPage[NumberOut]):
    pass


class PoolList(ListPage[PoolOut]):
    pass


class ManagerList(ListPage[ManagerOut]):
    pass


class WebhookList(ListPage[WebhookOut]):
    pass


class DeliveryList(ListPage[DeliveryOut]):
    pass


class ChatList(ListPage[ChatOut]):
    pass
