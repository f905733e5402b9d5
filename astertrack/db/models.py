"""SQLAlchemy 2.0 models shared by the AGI server, the AMI listener, the tracker and the admin.

Conventions: times are aware UTC (``UTCDateTime``); phone numbers are E.164 strings
(``+74951234567``); Asterisk uniqueid/linkedid are opaque strings (up to 150 chars, never
parsed or ordered); money is Numeric(14, 2).  Every change goes through an Alembic migration.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from astertrack.db import config_revision
from astertrack.db.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ASTERISK_ID = 150  # AST_MAX_PUBLIC_UNIQUEID is 149 + NUL
E164 = 20  # 15 digits + "+" with room to spare


def new_uid() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


# ---------------------------------------------------------------- sites, sources, numbers


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    domains: Mapped[list[Any]] = mapped_column(default=list)  # ["example.ru", "www.example.ru"]
    public_key: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    default_number: Mapped[str | None] = mapped_column(String(E164))
    display_format: Mapped[str] = mapped_column(String(60), default="+7 (XXX) XXX-XX-XX")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    # Dynamic number insertion
    hold_seconds: Mapped[int] = mapped_column(default=600)
    heartbeat_seconds: Mapped[int] = mapped_column(default=60)
    hold_cap_seconds: Mapped[int] = mapped_column(default=3600)
    unload_grace_seconds: Mapped[int] = mapped_column(default=120)
    overflow_policy: Mapped[str] = mapped_column(String(20), default="fallback")  # fallback|reuse_oldest
    lazy_allocation: Mapped[bool] = mapped_column(default=False)
    # Adaptive hold (astertrack/dni/allocation.py): once the pool's free share falls below this
    # percentage, holds whose visitor stopped sending heartbeats end early; active ones are kept.
    adaptive_hold: Mapped[bool] = mapped_column(default=False)
    adaptive_free_percent: Mapped[int] = mapped_column(default=20)
    replace_selectors: Mapped[list[Any]] = mapped_column(default=list)  # CSS selectors
    replace_numbers: Mapped[list[Any]] = mapped_column(default=list)  # E.164 numbers to swap in text
    default_pool_id: Mapped[int | None] = mapped_column(ForeignKey("number_pools.id", use_alter=True))
    # Attribution
    attribution_window_days: Mapped[int] = mapped_column(default=30)
    attribution_model: Mapped[str] = mapped_column(String(20), default="first_touch")  # |last_touch
    target_call_seconds: Mapped[int] = mapped_column(default=30)
    crm_url_template: Mapped[str | None] = mapped_column(String(500))
    # Leads (astertrack/leads): later enquiries from the same phone (or e-mail) within this many
    # days join the lead; a missed inbound call is called back through Asterisk when enabled.
    lead_window_days: Mapped[int] = mapped_column(default=30)
    missed_call_callback: Mapped[bool] = mapped_column(default=False)
    # Retention (days; None keeps forever)
    calls_retention_days: Mapped[int | None] = mapped_column()
    sessions_retention_days: Mapped[int | None] = mapped_column()
    recordings_retention_days: Mapped[int | None] = mapped_column()
    # Visitor journey privacy (astertrack/journey): the host part of visitors' addresses zeroed;
    # page views and actions kept this many days (None: as long as their session); query
    # parameters kept in page URLs besides utm_* and click ids.
    anonymise_ip: Mapped[bool] = mapped_column(default=False)
    pageviews_retention_days: Mapped[int | None] = mapped_column()
    query_params_allowed: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    sources: Mapped[list[Source]] = relationship(back_populates="site", foreign_keys="Source.site_id")
    pools: Mapped[list[NumberPool]] = relationship(back_populates="site", foreign_keys="NumberPool.site_id")


class NumberPool(Base):
    __tablename__ = "number_pools"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    fallback_number: Mapped[str | None] = mapped_column(String(E164))
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    site: Mapped[Site] = relationship(back_populates="pools", foreign_keys=[site_id])
    numbers: Mapped[list[TrackingNumber]] = relationship(back_populates="pool")


class Source(Base):
    """A traffic source/channel.  Static sources own a number; dynamic ones a pool."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10), default="static")  # static|dynamic
    channel: Mapped[str | None] = mapped_column(String(50))  # cpc, organic, social, offline, ...
    # [{"field": "utm_source", "op": "equals|contains|prefix|regex", "value": "yandex"}, ...] all must match
    match_rules: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(default=100)  # lower is tried first
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("number_pools.id", ondelete="SET NULL"))
    fallback_number: Mapped[str | None] = mapped_column(String(E164))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    site: Mapped[Site] = relationship(back_populates="sources", foreign_keys=[site_id])
    pool: Mapped[NumberPool | None] = relationship()


class TrackingNumber(Base):
    __tablename__ = "tracking_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(E164), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("number_pools.id", ondelete="SET NULL"), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Least-recently-released allocation: pick the number idle the longest.
    last_released_at: Mapped[dt.datetime | None] = mapped_column()
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    source: Mapped[Source | None] = relationship()
    pool: Mapped[NumberPool | None] = relationship(back_populates="numbers")


# ---------------------------------------------------------------- visitors


class VisitorSession(Base):
    __tablename__ = "visitor_sessions"
    __table_args__ = (Index("ix_visitor_sessions_site_visitor", "site_id", "visitor_id"),
                      Index("ix_visitor_sessions_site_first_seen", "site_id", "first_seen"),
                      # the journey links a person's sessions by these ids (astertrack.journey)
                      Index("ix_visitor_sessions_site_ga", "site_id", "ga_client_id"),
                      Index("ix_visitor_sessions_site_ym", "site_id", "ym_client_id"),
                      # Funnel report: sessions per source in a period, read from the index alone.
                      Index("ix_visitor_sessions_funnel", "first_seen", "source_id", "site_id", "is_bot"),
                      Index("ix_visitor_sessions_site_code", "site_id", "messenger_code"))

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    visitor_id: Mapped[str | None] = mapped_column(String(64))
    ga_client_id: Mapped[str | None] = mapped_column(String(64))
    ym_client_id: Mapped[str | None] = mapped_column(String(64))
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_content: Mapped[str | None] = mapped_column(String(255))
    utm_term: Mapped[str | None] = mapped_column(String(255))
    gclid: Mapped[str | None] = mapped_column(String(255))
    yclid: Mapped[str | None] = mapped_column(String(255))
    fbclid: Mapped[str | None] = mapped_column(String(255))
    referrer: Mapped[str | None] = mapped_column(String(2048))
    landing_page: Mapped[str | None] = mapped_column(String(2048))
    current_page: Mapped[str | None] = mapped_column(String(2048))
    keyword: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(45))
    is_bot: Mapped[bool] = mapped_column(default=False)
    page_views: Mapped[int] = mapped_column(default=1)
    interacted: Mapped[bool] = mapped_column(default=False)
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # page views and actions taken in so far: the per-session cap of astertrack.journey.ingest
    journey_events: Mapped[int] = mapped_column(server_default="0")  # (no Python default: inserts leave it out)
    # the visit code a messenger message carries (astertrack.leads.messengers): given on demand
    messenger_code: Mapped[str | None] = mapped_column(String(8))

    source: Mapped[Source | None] = relationship()


class PageView(Base):
    """One page a visitor saw (``astertrack.journey``): its URL without secrets, title, referrer and
    seconds on it.  ``client_key`` is the snippet's id of the page load: a re-sent view updates
    its seconds instead of adding a row."""

    __tablename__ = "page_views"
    __table_args__ = (Index("uq_page_views_session_key", "session_id", "client_key", unique=True),  # by session
                      Index("ix_page_views_site_at", "site_id", "at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    client_key: Mapped[str] = mapped_column(String(24))
    at: Mapped[dt.datetime] = mapped_column()
    url: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(String(300))
    referrer: Mapped[str | None] = mapped_column(String(2048))
    seconds_on_page: Mapped[int | None] = mapped_column()


class VisitorAction(Base):
    """Something a visitor did on a page that tells of intent (``astertrack.journey.ACTION_KINDS``):
    a click on a phone number, a tel: or messenger link, a form's focus or submit."""

    __tablename__ = "visitor_actions"
    __table_args__ = (Index("uq_visitor_actions_session_key", "session_id", "client_key", unique=True),  # by session
                      Index("ix_visitor_actions_site_at", "site_id", "at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    client_key: Mapped[str] = mapped_column(String(24))
    at: Mapped[dt.datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(20))
    target: Mapped[str | None] = mapped_column(String(500))  # the link's address or the element's text
    url: Mapped[str | None] = mapped_column(String(2048))  # the page it happened on


class NumberAssignment(Base):
    """A pool number shown to one session.  At most one live (unreleased) row per number."""

    __tablename__ = "number_assignments"
    __table_args__ = (
        Index("uq_number_assignments_live_number", "number_id", unique=True,
              sqlite_where=text("released_at IS NULL"), postgresql_where=text("released_at IS NULL")),
        Index("ix_number_assignments_number_released", "number_id", "released_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number_id: Mapped[int] = mapped_column(ForeignKey("tracking_numbers.id", ondelete="CASCADE"))
    session_id: Mapped[int] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="CASCADE"), index=True)
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    hard_expires_at: Mapped[dt.datetime] = mapped_column()
    released_at: Mapped[dt.datetime | None] = mapped_column()
    release_reason: Mapped[str | None] = mapped_column(String(20))  # expired|unload|reused|call|adaptive
    reused: Mapped[bool] = mapped_column(default=False)  # taken over from another session on overflow

    number: Mapped[TrackingNumber] = relationship()
    session: Mapped[VisitorSession] = relationship()


class OverflowEvent(Base):
    __tablename__ = "overflow_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("number_pools.id", ondelete="SET NULL"), index=True)
    # indexed: every heartbeat of an overflowed session asks "already counted?"
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"),
                                                   index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    policy: Mapped[str] = mapped_column(String(20))  # fallback|reuse_oldest
    visitor: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PoolUsageSample(Base):
    """Concurrent live assignments per pool, sampled every minute for pool health."""

    __tablename__ = "pool_usage_samples"
    __table_args__ = (Index("ix_pool_usage_samples_pool_at", "pool_id", "sampled_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("number_pools.id", ondelete="CASCADE"))
    sampled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    live: Mapped[int] = mapped_column()
    size: Mapped[int] = mapped_column()


# ---------------------------------------------------------------- managers and routing

manager_group_members = Table(
    "manager_group_members",
    Base.metadata,
    Column("group_id", ForeignKey("manager_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("manager_id", ForeignKey("managers.id", ondelete="CASCADE"), primary_key=True),
)


class Manager(Base):
    __tablename__ = "managers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(100), unique=True)  # PJSIP/101, SIP/101
    extension: Mapped[str | None] = mapped_column(String(40))
    paused: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    # {"mon": [["09:00", "18:00"]], ...} in the site's time zone; empty = always
    schedule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Live state (written by the AMI listener, read by the AGI)
    device_state: Mapped[str] = mapped_column(String(20), default="UNKNOWN")
    device_state_at: Mapped[dt.datetime | None] = mapped_column()
    # Routing reservation: a manager chosen for one call is not offered to another meanwhile
    reserved_until: Mapped[dt.datetime | None] = mapped_column()
    reserved_call_uid: Mapped[str | None] = mapped_column(String(64))
    last_routed_at: Mapped[dt.datetime | None] = mapped_column()
    # The manager's chat status, set on the chats page: away = offered no chat (calls are unaffected)
    chat_away: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    groups: Mapped[list[ManagerGroup]] = relationship(secondary=manager_group_members, back_populates="managers")


class ManagerGroup(Base):
    __tablename__ = "manager_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    queue_name: Mapped[str | None] = mapped_column(String(80))  # an Asterisk queue serving this group
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    managers: Mapped[list[Manager]] = relationship(secondary=manager_group_members, back_populates="groups",
                                                   order_by="Manager.id")


class RoutingRule(Base):
    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(default=100)  # lower is tried first
    enabled: Mapped[bool] = mapped_column(default=True)
    # {"dids": [...], "source_ids": [...], "utm_campaign": [...], "landing_contains": [...],
    #  "caller_numbers": [...], "caller_tags": [...]}; every present key must match
    match: Mapped[dict[str, Any]] = mapped_column(default=dict)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("manager_groups.id", ondelete="SET NULL"))
    strategy: Mapped[str] = mapped_column(String(20), default="round_robin")
    # round_robin|least_recent|fewest_today|ring_all
    sticky: Mapped[bool] = mapped_column(default=True)
    sticky_days: Mapped[int] = mapped_column(default=30)
    ring_timeout: Mapped[int | None] = mapped_column()
    max_attempts: Mapped[int | None] = mapped_column()
    schedule: Mapped[dict[str, Any]] = mapped_column(default=dict)  # same shape as Manager.schedule
    after_hours_destination: Mapped[str | None] = mapped_column(String(200))  # "queue:sales", "voicemail:100@default", "dial:PJSIP/200"
    fallback_destination: Mapped[str | None] = mapped_column(String(200))
    rr_cursor: Mapped[int] = mapped_column(default=0)
    # Archived (not deleted): out of routing and pickers, kept for history (webadmin settings)
    archived_at: Mapped[dt.datetime | None] = mapped_column()

    group: Mapped[ManagerGroup | None] = relationship()


# ---------------------------------------------------------------- calls


class CallerProfile(Base):
    """What we know about one caller number across calls: first touch, personal manager."""

    __tablename__ = "caller_profiles"
    __table_args__ = (UniqueConstraint("site_id", "number", name="uq_caller_profiles_site_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(E164), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    first_call_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    first_session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"))
    last_call_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    last_session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"))
    personal_manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    personal_manager_at: Mapped[dt.datetime | None] = mapped_column()
    calls_count: Mapped[int] = mapped_column(default=0)
    is_vip: Mapped[bool] = mapped_column(default=False)
    tags: Mapped[list[Any]] = mapped_column(default=list)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_site_started", "site_id", "started_at"),
        Index("ix_calls_source_started", "source_id", "started_at"),
        Index("ix_calls_manager_started", "manager_id", "started_at"),
        Index("ix_calls_caller_started", "caller_number", "started_at"),
        Index("ix_calls_node_linkedid", "node", "linkedid"),
        Index("ix_calls_node_state", "node", "state"),
        # Covering index for the period reports (calls by source/day): an index-only range scan
        # instead of one table lookup per call.  Keep the column list in sync with reports.py.
        Index("ix_calls_report", "started_at", "site_id", "source_id", "outcome", "talk_seconds", "is_first_call",
              "wait_seconds", "caller_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_uid: Mapped[str] = mapped_column(String(64), unique=True, default=new_uid)
    node: Mapped[str] = mapped_column(String(64), default="pbx1")
    linkedid: Mapped[str | None] = mapped_column(String(ASTERISK_ID))
    uniqueid: Mapped[str | None] = mapped_column(String(ASTERISK_ID))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    did: Mapped[str | None] = mapped_column(String(E164))
    caller_number: Mapped[str | None] = mapped_column(String(E164))
    caller_raw: Mapped[str | None] = mapped_column(String(80))  # as Asterisk gave it, when not a number
    caller_name: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(12), default="ringing")  # ringing|up|finished
    outcome: Mapped[str | None] = mapped_column(String(12), index=True)  # answered|missed|busy
    missed_reason: Mapped[str | None] = mapped_column(String(30))
    # no_answer|all_busy|caller_hangup|queue_abandon|queue_timeout|failed
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    total_seconds: Mapped[float | None] = mapped_column(Float)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    answered_by: Mapped[str | None] = mapped_column(String(100))  # endpoint, e.g. PJSIP/101
    # Live: endpoint(s) ringing for this call now, comma-separated ("PJSIP/101,PJSIP/102"), set by the AMI listener
    ringing_endpoint: Mapped[str | None] = mapped_column(String(100))
    transferred_to: Mapped[str | None] = mapped_column(String(100))  # last endpoint after a transfer
    routed_manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    routed_by: Mapped[str | None] = mapped_column(String(200))  # rule name / sticky / fallback
    routing_attempts: Mapped[int] = mapped_column(default=0)
    # Which rule routed the call and which managers were offered it, so the AGI `next` route
    # can pick the next candidate without offering the same one twice.
    routing_rule_id: Mapped[int | None] = mapped_column(ForeignKey("routing_rules.id", ondelete="SET NULL"))
    routing_tried: Mapped[list[Any] | None] = mapped_column()
    transferred: Mapped[bool] = mapped_column(default=False)
    hangup_cause: Mapped[int | None] = mapped_column()
    hangup_cause_text: Mapped[str | None] = mapped_column(String(100))
    hangup_side: Mapped[str | None] = mapped_column(String(10))  # caller|manager|pbx
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    recording_state: Mapped[str | None] = mapped_column(String(10))  # kept|empty|missing|deleted
    # Why the transcription worker gave up on this call (set once, so it is not retried forever)
    transcription_error: Mapped[str | None] = mapped_column(String(200))
    closed_by: Mapped[str | None] = mapped_column(String(10))  # events|sweeper|cdr|merged
    # A gap in the AMI stream touched this call: "pending" until Asterisk's CDR gives its facts
    # ("done"), or "no_cdr" when none came within [ami] cdr_wait (the listener's guess stays).
    reconcile_state: Mapped[str | None] = mapped_column(String(10))
    # Attribution (denormalised for fast reports)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"), index=True)
    # static|dynamic|grace|fallback|repeat|non_direct|default|unknown
    attribution_kind: Mapped[str | None] = mapped_column(String(12))
    attribution_confidence: Mapped[float | None] = mapped_column(Float)
    # why (astertrack.routing.attribution.REASONS) and how many visits could have made the call
    attribution_reason: Mapped[str | None] = mapped_column(String(24))
    attribution_candidates: Mapped[int | None] = mapped_column()
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255), index=True)
    keyword: Mapped[str | None] = mapped_column(String(255))
    is_first_call: Mapped[bool | None] = mapped_column()
    # The enquiry channel this call is (leads.CHANNELS): "call" for an inbound call, "callback" /
    # "missed_call_callback" for a call astertrack originated (not an Asterisk channel).
    lead_channel: Mapped[str] = mapped_column(String(24), default="call", server_default="call")

    source: Mapped[Source | None] = relationship()
    session: Mapped[VisitorSession | None] = relationship()
    manager: Mapped[Manager | None] = relationship(foreign_keys=[manager_id])
    routed_manager: Mapped[Manager | None] = relationship(foreign_keys=[routed_manager_id])
    tags: Mapped[list[Tag]] = relationship(secondary="call_tags", back_populates="calls")


class CallEvent(Base):
    """A raw AMI event kept so outcomes can be rebuilt (``astertrack-ami rebuild``)."""

    __tablename__ = "call_events"
    __table_args__ = (Index("ix_call_events_node_linkedid", "node", "linkedid"),
                      Index("ix_call_events_received", "received_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    node: Mapped[str] = mapped_column(String(64), default="pbx1")
    linkedid: Mapped[str | None] = mapped_column(String(ASTERISK_ID))
    uniqueid: Mapped[str | None] = mapped_column(String(ASTERISK_ID))
    name: Mapped[str] = mapped_column(String(80))
    event_time: Mapped[float | None] = mapped_column(Float)  # Asterisk Timestamp header (epoch seconds)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CdrRecord(Base):
    """One line of Asterisk's CDR (asterisk-conf/cdr_custom_astertrack.conf), kept like raw events:
    calls a gap touched are reconciled from these, and a rebuild applies them again."""

    __tablename__ = "cdr_records"
    __table_args__ = (Index("ix_cdr_records_node_linkedid", "node", "linkedid"),
                      Index("ix_cdr_records_read", "read_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(ASTERISK_ID))
    uniqueid: Mapped[str] = mapped_column(String(ASTERISK_ID))
    sequence: Mapped[int | None] = mapped_column()
    channel: Mapped[str] = mapped_column(String(200))
    dstchannel: Mapped[str | None] = mapped_column(String(200))
    lastapp: Mapped[str | None] = mapped_column(String(80))
    lastdata: Mapped[str | None] = mapped_column(String(255))
    disposition: Mapped[str] = mapped_column(String(20))
    start: Mapped[float] = mapped_column(Float)  # epoch seconds, as CDR(start,u)
    answer: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    read_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CdrCursor(Base):
    """How far the listener of one node has read the CDR file (committed with the lines it read)."""

    __tablename__ = "cdr_cursors"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    inode: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AmiGap(Base):
    """A period the listener was not connected: events in it were never seen."""

    __tablename__ = "ami_gaps"

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(200))


class AmiListenerStatus(Base):
    """One node's AMI listener, as it last said (``callflow/listener_status``): the admin's banner
    and the live board read it; a heartbeat older than a few ticks means the process is gone."""

    __tablename__ = "ami_listener_status"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # connected|logged_in|disconnected|stopped
    since: Mapped[dt.datetime] = mapped_column()  # logged in since, or not followed since
    heartbeat_at: Mapped[dt.datetime] = mapped_column()  # every reconcile tick while the process runs
    last_error: Mapped[str | None] = mapped_column(String(500))


# ---------------------------------------------------------------- funnel and costs


class Lead(Base):
    """One customer's enquiries on a site (``astertrack.leads``): the first enquiry opens it, later
    ones from the same phone (or e-mail) within ``Site.lead_window_days`` join it as repeats; it
    keeps its first channel and first source.  Merged by hand into another lead, it is kept (with
    ``merged_into_id``) and leaves the lists; nothing is deleted."""

    __tablename__ = "leads"
    __table_args__ = (Index("ix_leads_site_phone", "site_id", "phone"),
                      Index("ix_leads_site_email", "site_id", "email"),
                      Index("ix_leads_site_paging", "site_id", "id"))  # the API's pages of one site

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), index=True)  # first call
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    phone: Mapped[str | None] = mapped_column(String(E164))  # normalised E.164
    email: Mapped[str | None] = mapped_column(String(254))  # lower-cased
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="new")  # leads.STATES: new|in_progress|qualified|won|lost
    first_channel: Mapped[str] = mapped_column(String(24), default="call", server_default="call")
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # the deal's amount, when known
    currency: Mapped[str | None] = mapped_column(String(3))
    enquiries_count: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    last_enquiry_at: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column()
    deal_updated_at: Mapped[dt.datetime | None] = mapped_column()  # state, amount or currency really changed
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    merged_at: Mapped[dt.datetime | None] = mapped_column()
    external_id: Mapped[str | None] = mapped_column(String(100))


class Enquiry(Base):
    """One contact that made or joined a lead: a call, a web form, a callback request...
    with the attribution of the visit or call it came from, as it was then."""

    __tablename__ = "enquiries"
    __table_args__ = (Index("ix_enquiries_lead_at", "lead_id", "at"),
                      Index("ix_enquiries_site_at", "site_id", "at"),
                      # a call makes at most one enquiry (the leads worker may see it twice)
                      Index("uq_enquiries_call_id", "call_id", unique=True),
                      Index("ix_enquiries_session_id", "session_id"))  # a visit's phones, for the journey

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(24))  # leads.CHANNELS: call|form|callback|missed_call_callback
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    repeat: Mapped[bool] = mapped_column(default=False)  # joined an existing lead
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(E164))  # normalised; None when it does not parse
    phone_raw: Mapped[str | None] = mapped_column(String(64))  # as given
    phone_invalid: Mapped[bool] = mapped_column(default=False)  # given but not a phone number: kept, flagged
    email: Mapped[str | None] = mapped_column(String(254))
    email_invalid: Mapped[bool] = mapped_column(default=False)  # kept as given, flagged
    message: Mapped[str | None] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(String(2048))
    form_name: Mapped[str | None] = mapped_column(String(200))  # a web form's id or name, as the site set it
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_content: Mapped[str | None] = mapped_column(String(255))
    utm_term: Mapped[str | None] = mapped_column(String(255))
    keyword: Mapped[str | None] = mapped_column(String(255))
    gclid: Mapped[str | None] = mapped_column(String(255))
    yclid: Mapped[str | None] = mapped_column(String(255))
    fbclid: Mapped[str | None] = mapped_column(String(255))
    ga_client_id: Mapped[str | None] = mapped_column(String(64))
    ym_client_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class SiteMessengers(Base):
    """A site's messengers (``astertrack.leads.messengers``): its own Telegram bot (the token, the
    secret Telegram sends back on each update) and the secret of its WhatsApp provider's webhook."""

    __tablename__ = "site_messengers"

    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    telegram_enabled: Mapped[bool] = mapped_column(default=False)
    telegram_bot_token: Mapped[str | None] = mapped_column(String(200))
    telegram_bot_username: Mapped[str | None] = mapped_column(String(64))  # without @
    telegram_secret: Mapped[str | None] = mapped_column(String(256))
    telegram_webhook_at: Mapped[dt.datetime | None] = mapped_column()  # setWebhook last accepted
    whatsapp_enabled: Mapped[bool] = mapped_column(default=False)
    whatsapp_secret: Mapped[str | None] = mapped_column(String(256))
    updated_at: Mapped[dt.datetime | None] = mapped_column()


class MessengerChat(Base):
    """One person's conversation with a site in one messenger, tied to the enquiry it made (and so
    to the visit its code named, if any): later messages of the chat join the same enquiry."""

    __tablename__ = "messenger_chats"
    __table_args__ = (Index("uq_messenger_chats_site_chat", "site_id", "messenger", "chat_key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    messenger: Mapped[str] = mapped_column(String(16))  # telegram|whatsapp
    chat_key: Mapped[str] = mapped_column(String(64))  # Telegram's from.id; WhatsApp's phone
    username: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"))
    enquiry_id: Mapped[int | None] = mapped_column(ForeignKey("enquiries.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[dt.datetime | None] = mapped_column()


class MessengerMessage(Base):
    """One inbound message, its text without the visit code; ``message_key`` (the provider's id)
    makes a repeated delivery store once."""

    __tablename__ = "messenger_messages"
    __table_args__ = (Index("uq_messenger_messages_key", "site_id", "messenger", "message_key", unique=True),
                      Index("ix_messenger_messages_chat_at", "chat_id", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    messenger: Mapped[str] = mapped_column(String(16))
    message_key: Mapped[str] = mapped_column(String(100))
    chat_id: Mapped[int] = mapped_column(ForeignKey("messenger_chats.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    text: Mapped[str | None] = mapped_column(Text)


class CallbackRequest(Base):
    """A call astertrack places through Asterisk (AMI Originate): the manager first, then the
    visitor.  Scheduled, retried with back-off, kept with every attempt's call."""

    __tablename__ = "callback_requests"
    __table_args__ = (Index("ix_callback_requests_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    enquiry_id: Mapped[int | None] = mapped_column(ForeignKey("enquiries.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(24), default="callback")  # callback|missed_call_callback
    phone: Mapped[str] = mapped_column(String(E164))  # the visitor's number, E.164
    missed_call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"))
    # scheduled|dialing|connected|failed|cancelled
    state: Mapped[str] = mapped_column(String(12), default="scheduled")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))  # the last attempt
    last_result: Mapped[str | None] = mapped_column(String(40))
    node: Mapped[str | None] = mapped_column(String(64))  # the PBX whose listener dials it
    claimed_until: Mapped[dt.datetime | None] = mapped_column()
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column()


class OutboundCall(Base):
    """A call a manager dialled from their own phone (not placed by astertrack): kept apart from
    the inbound ``calls`` so it never counts as a customer's call, read by the missed-calls report
    ("called back")."""

    __tablename__ = "outbound_calls"
    __table_args__ = (UniqueConstraint("node", "linkedid", name="uq_outbound_calls_node_linkedid"),
                      Index("ix_outbound_calls_number_started", "number", "started_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(ASTERISK_ID))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    endpoint: Mapped[str] = mapped_column(String(100))  # the manager's phone, e.g. PJSIP/101
    number: Mapped[str | None] = mapped_column(String(E164))  # dialled, E.164; None when not a number
    number_raw: Mapped[str | None] = mapped_column(String(80))  # as dialled
    started_at: Mapped[dt.datetime] = mapped_column()
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    disposition: Mapped[str] = mapped_column(String(20))  # answered|noanswer|busy|chanunavail|...


class Deal(Base):
    __tablename__ = "deals"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open|won|lost
    revenue: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    external_id: Mapped[str | None] = mapped_column(String(100))


class AdCost(Base):
    __tablename__ = "ad_costs"
    __table_args__ = (UniqueConstraint("source_id", "day", name="uq_ad_costs_source_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")


# ---------------------------------------------------------------- users, integrations


class ApiToken(Base):
    """A token a CRM or an integration sends as ``Authorization: Bearer``: shown once, stored as
    its SHA-256, revocable; ``site_id`` limits it to one site, ``scope`` is read or write."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the first characters, to recognise it in lists
    scope: Mapped[str] = mapped_column(String(10), default="write")  # read|write
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(12), default="manager")  # admin|supervisor|manager
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    locale: Mapped[str | None] = mapped_column(String(5))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()

    manager: Mapped[Manager | None] = relationship()


class WebSession(Base):
    """One login to the web admin, kept here so that logout, a password change and the idle
    timeout end it for every copy of the cookie; the cookie holds only a random token whose
    SHA-256 is the id."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_mark: Mapped[str] = mapped_column(String(64))  # which password it was opened with
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """A failed (or still being checked) admin login, seen by every worker: the limiter counts them
    per address and per (address, login), so an attacker locks out only their own address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_address_at", "address", "at"),
                      Index("ix_login_failures_at", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    login: Mapped[str] = mapped_column(String(80))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """One settings change (who, when, what, before/after), written by the admin in the same
    transaction as the change; ``astertrack.audit`` builds the rows, retention sweeps old ones."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_entity", "entity_kind", "entity_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    user_login: Mapped[str | None] = mapped_column(String(80))  # kept when the user is gone
    action: Mapped[str] = mapped_column(String(10))  # create|update|archive|restore|delete
    entity_kind: Mapped[str] = mapped_column(String(30))  # sites, sources, ..., users
    entity_id: Mapped[int | None] = mapped_column()
    entity_label: Mapped[str | None] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column()  # updates: only the changed fields
    after: Mapped[dict[str, Any] | None] = mapped_column()


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    events: Mapped[list[Any]] = mapped_column(default=list)  # ["call.finished", "call.missed"]
    secret: Mapped[str] = mapped_column(String(64), default=new_uid)
    enabled: Mapped[bool] = mapped_column(default=True)
    archived_at: Mapped[dt.datetime | None] = mapped_column()  # kept for its delivery log, never delivered to


def _outbox_subject(context) -> str:
    """A row added without a subject (by hand, or an older caller) announces its call, else a key of its own."""
    call_id = context.get_current_parameters().get("call_id")
    return f"call:{call_id}" if call_id is not None else f"row:{new_uid()}"


class WebhookOutbox(Base):
    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_pending", "delivered_at", "next_attempt_at"),
                      Index("ix_webhook_outbox_subscription_id", "subscription_id", "id"),  # a delivery log
                      # one delivery per subscription/event/occurrence even with a worker on every node
                      UniqueConstraint("subscription_id", "event", "subject",
                                       name="uq_webhook_outbox_subscription_event_subject"))

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(50))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    # the occurrence announced: "call:12", "lead:5", "lead:5@<updated_at>", "deal:5@<deal_updated_at>"
    subject: Mapped[str] = mapped_column(String(100), default=_outbox_subject)
    occurred_at: Mapped[dt.datetime | None] = mapped_column()  # the lead's updated_at / deal_updated_at announced
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    response_code: Mapped[int | None] = mapped_column()  # the receiver's HTTP status of the last attempt
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the start of its answer, for the delivery log
    dead_at: Mapped[dt.datetime | None] = mapped_column()  # dead letter: gave up after the last attempt


class Transcript(Base):
    __tablename__ = "transcripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    language: Mapped[str | None] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Speech analytics (#26, astertrack.speech): done|silent|empty|truncated|not_audio|missing|retry|failed
    status: Mapped[str] = mapped_column(String(12), default="done", server_default="done")
    detail: Mapped[str | None] = mapped_column(String(200))  # why a file gave no text, in words
    words: Mapped[list[Any] | None] = mapped_column()  # [{"w", "s", "e", "sp"}]: word, seconds, speaker
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()  # a failed engine run tried again then
    search_text: Mapped[str | None] = mapped_column(Text)  # normalised words (speech.normalize) the search reads



# Transcript search (astertrack.speech.search) is part of the schema, made with the table, not on
# first use: SQLite's FTS5 table kept in step by triggers, PostgreSQL's GIN index on the normalised
# words.  Migration 0025 writes the same statements; a migration that recreates ``transcripts``
# (batch mode on SQLite) must create the triggers again.
TRANSCRIPT_SEARCH_DDL: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "CREATE VIRTUAL TABLE transcript_fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 0')",
        "CREATE TRIGGER trg_transcripts_fts_ins AFTER INSERT ON transcripts WHEN new.search_text IS NOT NULL "
        "BEGIN INSERT INTO transcript_fts (rowid, body) VALUES (new.id, new.search_text); END",
        "CREATE TRIGGER trg_transcripts_fts_upd AFTER UPDATE OF search_text ON transcripts "
        "BEGIN DELETE FROM transcript_fts WHERE rowid = old.id; "
        "INSERT INTO transcript_fts (rowid, body) SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL; END",
        "CREATE TRIGGER trg_transcripts_fts_del AFTER DELETE ON transcripts "
        "BEGIN DELETE FROM transcript_fts WHERE rowid = old.id; END",
    ),
    "postgresql": (
        "CREATE INDEX ix_transcripts_search ON transcripts USING gin (to_tsvector('simple', coalesce(search_text, '')))",
    ),
}


@event.listens_for(Transcript.__table__, "after_create")
def _create_transcript_search(target, connection, **kw) -> None:
    for statement in TRANSCRIPT_SEARCH_DDL.get(connection.dialect.name, ()):
        connection.exec_driver_sql(statement)


@event.listens_for(Transcript.__table__, "after_drop")
def _drop_transcript_search(target, connection, **kw) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TABLE IF EXISTS transcript_fts")


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)

    calls: Mapped[list[Call]] = relationship(secondary="call_tags", back_populates="tags")


call_tags = Table(
    "call_tags",
    Base.metadata,
    Column("call_id", ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


# ---------------------------------------------------------------- supervisor call review (astertrack.review)


class CallComment(Base):
    """A supervisor's note on a call; never edited, so the card reads as a history."""

    __tablename__ = "call_comments"
    __table_args__ = (Index("ix_call_comments_call_at", "call_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship()


class ChecklistItem(Base):
    """One point of a site's call checklist (site_id NULL: every site); archived, never deleted,
    because past scores name it."""

    __tablename__ = "checklist_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(300))
    points: Mapped[int] = mapped_column(default=1)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[dt.datetime | None] = mapped_column()


class CallScore(Base):
    """One scoring of a call against its checklist; the newest is the call's score, the older
    ones stay as history.  ``ticks`` keeps each item as it was then: [{id, text, points, ticked}]."""

    __tablename__ = "call_scores"
    __table_args__ = (Index("ix_call_scores_call_at", "call_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ticks: Mapped[list[Any]] = mapped_column(default=list)
    points: Mapped[int] = mapped_column(default=0)
    max_points: Mapped[int] = mapped_column(default=0)
    total: Mapped[float] = mapped_column(Float, default=0.0)  # points / max_points, 0..1

    user: Mapped[User | None] = relationship()


class CallHandled(Base):
    """A missed call marked as dealt with; an undo stamps ``undone_*`` instead of deleting, and at
    most one mark per call is current (undone_at NULL)."""

    __tablename__ = "call_handled"
    __table_args__ = (Index("uq_call_handled_current", "call_id", unique=True,
                            sqlite_where=text("undone_at IS NULL"), postgresql_where=text("undone_at IS NULL")),
                      Index("ix_call_handled_call_id", "call_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    handled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    undone_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    undone_at: Mapped[dt.datetime | None] = mapped_column()

    handled_by: Mapped[User | None] = relationship(foreign_keys=[handled_by_id])
    undone_by: Mapped[User | None] = relationship(foreign_keys=[undone_by_id])


# ---------------------------------------------------------------- configuration revision


class ConfigRevision(Base):
    """One row (id 1): bumped by database triggers on every routing-configuration change, so
    the AGI re-reads its snapshot only when something changed (``astertrack.db.config_revision``)."""

    __tablename__ = config_revision.TABLE

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


@event.listens_for(Base.metadata, "after_create")
def _install_config_triggers(metadata: MetaData, connection, **_kw) -> None:
    """A schema made by ``create_all`` (tests, benches) gets the same triggers as one made by
    ``astertrack db upgrade``."""
    config_revision.install(connection, metadata)


# ---------------------------------------------------------------- conversions to GA4, Metrica, Google Ads


class ConversionSettings(Base):
    """One site's accounts on the analytics and ad platforms (``astertrack.integrations.conversions``).
    The GA4 API secret and the Metrica OAuth token are kept here because sending needs them; the
    admin only ever shows them masked."""

    __tablename__ = "conversion_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    ga4_enabled: Mapped[bool] = mapped_column(default=False)
    ga4_measurement_id: Mapped[str | None] = mapped_column(String(40))  # G-XXXXXXXXXX
    ga4_api_secret: Mapped[str | None] = mapped_column(String(200))
    ga4_call_event: Mapped[str] = mapped_column(String(40), default="phone_call")
    ga4_lead_event: Mapped[str] = mapped_column(String(40), default="close_convert_lead")
    metrica_enabled: Mapped[bool] = mapped_column(default=False)
    metrica_counter_id: Mapped[str | None] = mapped_column(String(20))
    metrica_token: Mapped[str | None] = mapped_column(String(200))
    google_ads_enabled: Mapped[bool] = mapped_column(default=False)
    google_ads_conversion_name: Mapped[str | None] = mapped_column(String(100))
    google_ads_timezone: Mapped[str | None] = mapped_column(String(64))  # None: the site's time zone
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column()


class ConversionRule(Base):
    """Which of a site's calls and leads are conversions, and their value (one row per site)."""

    __tablename__ = "conversion_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    calls: Mapped[str] = mapped_column(String(12), default="answered")  # off|all|answered|target
    first_time_only: Mapped[bool] = mapped_column(default=False)
    call_value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    lead_state: Mapped[str | None] = mapped_column(String(20))  # None: leads are not sent; qualified|won|...
    lead_value: Mapped[str] = mapped_column(String(10), default="amount")  # amount|fixed
    lead_fixed_value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))


class ConversionLog(Base):
    """One conversion (a call, or a lead reaching a state) per site and platform: sent, refused
    (with the platform's answer), failed (network: retried), skipped (and why) or exported to a
    file.  The unique key is what makes every run incremental."""

    __tablename__ = "conversion_log"
    __table_args__ = (UniqueConstraint("site_id", "platform", "subject", name="uq_conversion_log_site_platform_subject"),
                      Index("ix_conversion_log_status", "status", "platform"),
                      Index("ix_conversion_log_site_at", "site_id", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(12))  # ga4|metrica|google_ads
    subject: Mapped[str] = mapped_column(String(40))  # call:12 | lead:5@won
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(10))  # sending|sent|refused|failed|skipped|exported
    reason: Mapped[str | None] = mapped_column(String(30))  # no_gclid|no_client_id|too_old|rule|validation|...
    occurred_at: Mapped[dt.datetime] = mapped_column()  # the conversion's own time
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    payload: Mapped[dict[str, Any] | None] = mapped_column()  # what was sent (never a secret)
    attempts: Mapped[int] = mapped_column(default=0)
    response_code: Mapped[int | None] = mapped_column()
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SiteWidget(Base):
    """One site's website widget (docs/widget.md): which channels it shows (the lead-capture pop-up,
    the callback button), their texts per language (empty: the defaults), its colour and corner, and
    the pop-up's rules.  ``revision`` grows on every save: the tracker's config answer is keyed by it."""

    __tablename__ = "site_widgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    popup_enabled: Mapped[bool] = mapped_column(default=False)
    callback_enabled: Mapped[bool] = mapped_column(default=False)
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"ru": {"popup_title": ...}, "en": {...}}
    colour: Mapped[str] = mapped_column(String(7), default="#1f6feb")
    position: Mapped[str] = mapped_column(String(12), default="bottom-right")  # |bottom-left
    popup_delay_seconds: Mapped[int] = mapped_column(default=0)  # 0: no delay rule
    popup_exit_intent: Mapped[bool] = mapped_column(default=False)
    popup_page_views: Mapped[int] = mapped_column(default=0)  # the Nth page view of the visitor; 0: any
    popup_url_contains: Mapped[list[Any]] = mapped_column(default=list)  # substrings of the page URL
    popup_utm: Mapped[list[Any]] = mapped_column(default=list)  # "utm_source=google"
    popup_period_days: Mapped[int] = mapped_column(default=7)  # at most once per visitor per period
    chat_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # no manager's reply within this many seconds: the chat asks the visitor for a phone (astertrack.chat)
    chat_wait_seconds: Mapped[int] = mapped_column(default=90, server_default="90")
    chat_retention_days: Mapped[int] = mapped_column(default=365, server_default="365")  # messages kept
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column()


class Chat(Base):
    """One website chat between a visitor and the site's managers (``astertrack.chat``).

    ``seq`` is the number of its last message (messages are numbered 1, 2, ... within a chat, in the
    order they were stored: a client resumes after the last one it saw); ``rev`` grows on every
    change a stream shows (a message, the status, a claim, read marks, typing), and ``updated_at``
    with it, so the stream servers find what changed with one indexed read.  The visitor holds a
    token, kept here only as its SHA-256."""

    __tablename__ = "chats"
    __table_args__ = (Index("ix_chats_updated_at", "updated_at"),
                      Index("ix_chats_site_status", "site_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_sessions.id", ondelete="SET NULL"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="waiting")  # chat.STATUSES
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"), index=True)
    offered_to: Mapped[list[Any]] = mapped_column(default=list)  # manager ids, in the order they are notified
    enquiry_id: Mapped[int | None] = mapped_column(ForeignKey("enquiries.id", ondelete="SET NULL"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(E164))
    language: Mapped[str] = mapped_column(String(2), default="ru")
    page_url: Mapped[str | None] = mapped_column(String(2048))
    ip: Mapped[str | None] = mapped_column(String(45))
    seq: Mapped[int] = mapped_column(default=0)
    rev: Mapped[int] = mapped_column(default=0)
    visitor_read_seq: Mapped[int] = mapped_column(default=0)
    manager_read_seq: Mapped[int] = mapped_column(default=0)
    visitor_typing_until: Mapped[dt.datetime | None] = mapped_column()
    manager_typing_until: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_reply_at: Mapped[dt.datetime | None] = mapped_column()
    last_visitor_at: Mapped[dt.datetime | None] = mapped_column()
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    closed_by: Mapped[str | None] = mapped_column(String(10))  # visitor|manager|system


class ChatMessage(Base):
    """One message of a chat, or a system line (``kind``: claimed, transferred, asked for a phone,
    closed) whose words the reader's language gives.  ``client_id`` is the sender's own id of a
    message: a message sent again after a network drop is stored once."""

    __tablename__ = "chat_messages"
    __table_args__ = (Index("uq_chat_messages_seq", "chat_id", "seq", unique=True),
                      Index("uq_chat_messages_client", "chat_id", "author", "client_id", unique=True))

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column()
    author: Mapped[str] = mapped_column(String(10))  # visitor|manager|system
    kind: Mapped[str] = mapped_column(String(16), default="text")  # chat.MESSAGE_KINDS
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id", ondelete="SET NULL"))
    client_id: Mapped[str | None] = mapped_column(String(40))
    text: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)  # a system line's details (who to whom)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- speech analytics (astertrack.speech, #26)


class SpeechSettings(Base):
    """One site's speech engine and model; sites without a row use [transcription] engine/model_path."""

    __tablename__ = "speech_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    engine: Mapped[str] = mapped_column(String(20))
    model_path: Mapped[str | None] = mapped_column(String(1024))
    language: Mapped[str | None] = mapped_column(String(10))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SpeechPhrase(Base):
    """A dictionary phrase: found in a call's words (any form, small slips allowed), it tags the call."""

    __tablename__ = "speech_phrases"
    __table_args__ = (Index("ix_speech_phrases_site_tag", "site_id", "tag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))  # None: every site
    tag: Mapped[str] = mapped_column(String(80))
    phrase: Mapped[str] = mapped_column(String(200))
    speaker: Mapped[str] = mapped_column(String(10), default="any")  # any|caller|manager
    negative: Mapped[bool] = mapped_column(default=False)  # a "needs attention" tag
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CallSpeechTag(Base):
    """A tag the speech analytics set on a call (automatic), beside the supervisor's manual ``call_tags``."""

    __tablename__ = "call_speech_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(80), index=True)
    phrase: Mapped[str] = mapped_column(String(200))
    speaker: Mapped[str | None] = mapped_column(String(10))  # caller|manager; None: one mixed channel
    at_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    negative: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TrackingPrice(Base):
    """What a tracking number costs (#27): a monthly rent and a per-minute price, set on a pool (its numbers
    inherit it) or on one number (its own value wins, field by field).  A separate table, not columns of
    the watched ``tracking_numbers``, because prices are no routing configuration.  ``rented_from`` /
    ``rented_until`` (numbers only) bound the rent for months the number was held in part (pro rata)."""

    __tablename__ = "tracking_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("number_pools.id", ondelete="CASCADE"), unique=True)
    number_id: Mapped[int | None] = mapped_column(ForeignKey("tracking_numbers.id", ondelete="CASCADE"), unique=True)
    monthly_rent: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    minute_price: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    rented_from: Mapped[dt.date | None] = mapped_column(Date)  # None: held since before any month reported
    rented_until: Mapped[dt.date | None] = mapped_column(Date)  # None: still held (or until archived)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    pool: Mapped[NumberPool | None] = relationship()
    number: Mapped[TrackingNumber | None] = relationship()
