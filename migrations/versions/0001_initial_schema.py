"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 14:05:11.990445
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ami_gaps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('started_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ami_gaps'))
    )
    op.create_table('manager_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('queue_name', sa.String(length=80), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_manager_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_manager_groups_name'))
    )
    op.create_table('managers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('endpoint', sa.String(length=100), nullable=False),
    sa.Column('extension', sa.String(length=40), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('device_state', sa.String(length=20), nullable=False),
    sa.Column('device_state_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reserved_until', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reserved_call_uid', sa.String(length=64), nullable=True),
    sa.Column('last_routed_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_managers')),
    sa.UniqueConstraint('endpoint', name=op.f('uq_managers_endpoint'))
    )
    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domains', sa.JSON(), nullable=False),
    sa.Column('public_key', sa.String(length=32), nullable=False),
    sa.Column('default_number', sa.String(length=20), nullable=True),
    sa.Column('display_format', sa.String(length=60), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('hold_seconds', sa.Integer(), nullable=False),
    sa.Column('heartbeat_seconds', sa.Integer(), nullable=False),
    sa.Column('hold_cap_seconds', sa.Integer(), nullable=False),
    sa.Column('unload_grace_seconds', sa.Integer(), nullable=False),
    sa.Column('overflow_policy', sa.String(length=20), nullable=False),
    sa.Column('lazy_allocation', sa.Boolean(), nullable=False),
    sa.Column('replace_selectors', sa.JSON(), nullable=False),
    sa.Column('replace_numbers', sa.JSON(), nullable=False),
    sa.Column('default_pool_id', sa.Integer(), nullable=True),
    sa.Column('attribution_window_days', sa.Integer(), nullable=False),
    sa.Column('attribution_model', sa.String(length=20), nullable=False),
    sa.Column('target_call_seconds', sa.Integer(), nullable=False),
    sa.Column('crm_url_template', sa.String(length=500), nullable=True),
    sa.Column('calls_retention_days', sa.Integer(), nullable=True),
    sa.Column('sessions_retention_days', sa.Integer(), nullable=True),
    sa.Column('recordings_retention_days', sa.Integer(), nullable=True),
    sa.Column('created_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites')),
    sa.UniqueConstraint('public_key', name=op.f('uq_sites_public_key'))
    )
    op.create_table('tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tags')),
    sa.UniqueConstraint('name', name=op.f('uq_tags_name'))
    )
    op.create_table('webhook_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=1000), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_subscriptions'))
    )
    op.create_table('manager_group_members',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['manager_groups.id'], name=op.f('fk_manager_group_members_group_id_manager_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_manager_group_members_manager_id_managers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'manager_id', name=op.f('pk_manager_group_members'))
    )
    op.create_table('number_pools',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('fallback_number', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_number_pools_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_number_pools'))
    )
    with op.batch_alter_table('number_pools', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_number_pools_site_id'), ['site_id'], unique=False)
    # sites.default_pool_id and number_pools.site_id point at each other: add this one last.
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.create_foreign_key(op.f('fk_sites_default_pool_id_number_pools'), 'number_pools',
                                    ['default_pool_id'], ['id'])

    op.create_table('routing_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('match', sa.JSON(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('strategy', sa.String(length=20), nullable=False),
    sa.Column('sticky', sa.Boolean(), nullable=False),
    sa.Column('sticky_days', sa.Integer(), nullable=False),
    sa.Column('ring_timeout', sa.Integer(), nullable=True),
    sa.Column('max_attempts', sa.Integer(), nullable=True),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('after_hours_destination', sa.String(length=200), nullable=True),
    sa.Column('fallback_destination', sa.String(length=200), nullable=True),
    sa.Column('rr_cursor', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['manager_groups.id'], name=op.f('fk_routing_rules_group_id_manager_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_routing_rules_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_rules'))
    )
    with op.batch_alter_table('routing_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_routing_rules_site_id'), ['site_id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=80), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=12), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('locale', sa.String(length=5), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_users_manager_id_managers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('login', name=op.f('uq_users_login'))
    )
    op.create_table('webhook_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=50), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscriptions.id'], name=op.f('fk_webhook_outbox_subscription_id_webhook_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_outbox'))
    )
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_outbox_pending', ['delivered_at', 'next_attempt_at'], unique=False)

    op.create_table('pool_usage_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('sampled_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('live', sa.Integer(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['number_pools.id'], name=op.f('fk_pool_usage_samples_pool_id_number_pools'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_usage_samples'))
    )
    with op.batch_alter_table('pool_usage_samples', schema=None) as batch_op:
        batch_op.create_index('ix_pool_usage_samples_pool_at', ['pool_id', 'sampled_at'], unique=False)

    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('channel', sa.String(length=50), nullable=True),
    sa.Column('match_rules', sa.JSON(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=True),
    sa.Column('fallback_number', sa.String(length=20), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['number_pools.id'], name=op.f('fk_sources_pool_id_number_pools'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_sources_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sources'))
    )
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sources_site_id'), ['site_id'], unique=False)

    op.create_table('ad_costs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_ad_costs_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_costs')),
    sa.UniqueConstraint('source_id', 'day', name='uq_ad_costs_source_day')
    )
    op.create_table('tracking_numbers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('pool_id', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('last_released_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['number_pools.id'], name=op.f('fk_tracking_numbers_pool_id_number_pools'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_tracking_numbers_site_id_sites'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_tracking_numbers_source_id_sources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tracking_numbers')),
    sa.UniqueConstraint('number', name=op.f('uq_tracking_numbers_number'))
    )
    with op.batch_alter_table('tracking_numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tracking_numbers_pool_id'), ['pool_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tracking_numbers_site_id'), ['site_id'], unique=False)

    op.create_table('visitor_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('visitor_id', sa.String(length=64), nullable=True),
    sa.Column('ga_client_id', sa.String(length=64), nullable=True),
    sa.Column('ym_client_id', sa.String(length=64), nullable=True),
    sa.Column('utm_source', sa.String(length=255), nullable=True),
    sa.Column('utm_medium', sa.String(length=255), nullable=True),
    sa.Column('utm_campaign', sa.String(length=255), nullable=True),
    sa.Column('utm_content', sa.String(length=255), nullable=True),
    sa.Column('utm_term', sa.String(length=255), nullable=True),
    sa.Column('gclid', sa.String(length=255), nullable=True),
    sa.Column('yclid', sa.String(length=255), nullable=True),
    sa.Column('fbclid', sa.String(length=255), nullable=True),
    sa.Column('referrer', sa.String(length=2048), nullable=True),
    sa.Column('landing_page', sa.String(length=2048), nullable=True),
    sa.Column('current_page', sa.String(length=2048), nullable=True),
    sa.Column('keyword', sa.String(length=255), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('is_bot', sa.Boolean(), nullable=False),
    sa.Column('page_views', sa.Integer(), nullable=False),
    sa.Column('interacted', sa.Boolean(), nullable=False),
    sa.Column('first_seen', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_visitor_sessions_site_id_sites'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_visitor_sessions_source_id_sources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visitor_sessions')),
    sa.UniqueConstraint('public_id', name=op.f('uq_visitor_sessions_public_id'))
    )
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_visitor_sessions_site_first_seen', ['site_id', 'first_seen'], unique=False)
        batch_op.create_index('ix_visitor_sessions_site_visitor', ['site_id', 'visitor_id'], unique=False)

    op.create_table('caller_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('first_call_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_source_id', sa.Integer(), nullable=True),
    sa.Column('first_session_id', sa.Integer(), nullable=True),
    sa.Column('last_call_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_source_id', sa.Integer(), nullable=True),
    sa.Column('last_session_id', sa.Integer(), nullable=True),
    sa.Column('personal_manager_id', sa.Integer(), nullable=True),
    sa.Column('personal_manager_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('calls_count', sa.Integer(), nullable=False),
    sa.Column('is_vip', sa.Boolean(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['first_session_id'], ['visitor_sessions.id'], name=op.f('fk_caller_profiles_first_session_id_visitor_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['first_source_id'], ['sources.id'], name=op.f('fk_caller_profiles_first_source_id_sources'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['last_session_id'], ['visitor_sessions.id'], name=op.f('fk_caller_profiles_last_session_id_visitor_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['last_source_id'], ['sources.id'], name=op.f('fk_caller_profiles_last_source_id_sources'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['personal_manager_id'], ['managers.id'], name=op.f('fk_caller_profiles_personal_manager_id_managers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_caller_profiles_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caller_profiles')),
    sa.UniqueConstraint('site_id', 'number', name='uq_caller_profiles_site_number')
    )
    with op.batch_alter_table('caller_profiles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_caller_profiles_number'), ['number'], unique=False)

    op.create_table('calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_uid', sa.String(length=64), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('linkedid', sa.String(length=150), nullable=True),
    sa.Column('uniqueid', sa.String(length=150), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('did', sa.String(length=20), nullable=True),
    sa.Column('caller_number', sa.String(length=20), nullable=True),
    sa.Column('caller_raw', sa.String(length=80), nullable=True),
    sa.Column('caller_name', sa.String(length=200), nullable=True),
    sa.Column('started_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=12), nullable=True),
    sa.Column('missed_reason', sa.String(length=30), nullable=True),
    sa.Column('wait_seconds', sa.Float(), nullable=True),
    sa.Column('talk_seconds', sa.Float(), nullable=True),
    sa.Column('total_seconds', sa.Float(), nullable=True),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('answered_by', sa.String(length=100), nullable=True),
    sa.Column('routed_manager_id', sa.Integer(), nullable=True),
    sa.Column('routed_by', sa.String(length=200), nullable=True),
    sa.Column('routing_attempts', sa.Integer(), nullable=False),
    sa.Column('transferred', sa.Boolean(), nullable=False),
    sa.Column('hangup_cause', sa.Integer(), nullable=True),
    sa.Column('hangup_cause_text', sa.String(length=100), nullable=True),
    sa.Column('hangup_side', sa.String(length=10), nullable=True),
    sa.Column('recording_path', sa.String(length=1024), nullable=True),
    sa.Column('recording_state', sa.String(length=10), nullable=True),
    sa.Column('closed_by', sa.String(length=10), nullable=True),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('attribution_kind', sa.String(length=12), nullable=True),
    sa.Column('attribution_confidence', sa.Float(), nullable=True),
    sa.Column('utm_source', sa.String(length=255), nullable=True),
    sa.Column('utm_medium', sa.String(length=255), nullable=True),
    sa.Column('utm_campaign', sa.String(length=255), nullable=True),
    sa.Column('keyword', sa.String(length=255), nullable=True),
    sa.Column('is_first_call', sa.Boolean(), nullable=True),
    sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_calls_manager_id_managers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['routed_manager_id'], ['managers.id'], name=op.f('fk_calls_routed_manager_id_managers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'], name=op.f('fk_calls_session_id_visitor_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_calls_site_id_sites'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_calls_source_id_sources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('call_uid', name=op.f('uq_calls_call_uid'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_caller_started', ['caller_number', 'started_at'], unique=False)
        batch_op.create_index('ix_calls_manager_started', ['manager_id', 'started_at'], unique=False)
        batch_op.create_index('ix_calls_node_linkedid', ['node', 'linkedid'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_session_id'), ['session_id'], unique=False)
        batch_op.create_index('ix_calls_site_started', ['site_id', 'started_at'], unique=False)
        batch_op.create_index('ix_calls_source_started', ['source_id', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_utm_campaign'), ['utm_campaign'], unique=False)

    op.create_table('number_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('assigned_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_heartbeat_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hard_expires_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('released_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('release_reason', sa.String(length=20), nullable=True),
    sa.Column('reused', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['number_id'], ['tracking_numbers.id'], name=op.f('fk_number_assignments_number_id_tracking_numbers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'], name=op.f('fk_number_assignments_session_id_visitor_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_number_assignments'))
    )
    with op.batch_alter_table('number_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_number_assignments_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index('ix_number_assignments_number_released', ['number_id', 'released_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_number_assignments_session_id'), ['session_id'], unique=False)
        batch_op.create_index('uq_number_assignments_live_number', ['number_id'], unique=True, sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))

    op.create_table('overflow_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('occurred_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('policy', sa.String(length=20), nullable=False),
    sa.Column('visitor', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['number_pools.id'], name=op.f('fk_overflow_events_pool_id_number_pools'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'], name=op.f('fk_overflow_events_session_id_visitor_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_overflow_events_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_overflow_events'))
    )
    with op.batch_alter_table('overflow_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_overflow_events_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_overflow_events_pool_id'), ['pool_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_overflow_events_site_id'), ['site_id'], unique=False)

    op.create_table('call_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('linkedid', sa.String(length=150), nullable=True),
    sa.Column('uniqueid', sa.String(length=150), nullable=True),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('event_time', sa.Float(), nullable=True),
    sa.Column('received_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_events_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_events'))
    )
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_events_call_id'), ['call_id'], unique=False)
        batch_op.create_index('ix_call_events_node_linkedid', ['node', 'linkedid'], unique=False)
        batch_op.create_index('ix_call_events_received', ['received_at'], unique=False)

    op.create_table('call_tags',
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_tags_call_id_calls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], name=op.f('fk_call_tags_tag_id_tags'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('call_id', 'tag_id', name=op.f('pk_call_tags'))
    )
    op.create_table('leads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_leads_call_id_calls'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_leads_manager_id_managers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'], name=op.f('fk_leads_session_id_visitor_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_leads_site_id_sites'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_leads_source_id_sources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_leads'))
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leads_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_source_id'), ['source_id'], unique=False)

    op.create_table('transcripts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=10), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('engine', sa.String(length=50), nullable=True),
    sa.Column('created_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_transcripts_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcripts')),
    sa.UniqueConstraint('call_id', name=op.f('uq_transcripts_call_id'))
    )
    op.create_table('deals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('revenue', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', astertrack.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_deals_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deals'))
    )
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deals_lead_id'), ['lead_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('fk_sites_default_pool_id_number_pools'), type_='foreignkey')
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deals_lead_id'))

    op.drop_table('deals')
    op.drop_table('transcripts')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_source_id'))
        batch_op.drop_index(batch_op.f('ix_leads_site_id'))
        batch_op.drop_index(batch_op.f('ix_leads_created_at'))
        batch_op.drop_index(batch_op.f('ix_leads_call_id'))

    op.drop_table('leads')
    op.drop_table('call_tags')
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.drop_index('ix_call_events_received')
        batch_op.drop_index('ix_call_events_node_linkedid')
        batch_op.drop_index(batch_op.f('ix_call_events_call_id'))

    op.drop_table('call_events')
    with op.batch_alter_table('overflow_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_overflow_events_site_id'))
        batch_op.drop_index(batch_op.f('ix_overflow_events_pool_id'))
        batch_op.drop_index(batch_op.f('ix_overflow_events_occurred_at'))

    op.drop_table('overflow_events')
    with op.batch_alter_table('number_assignments', schema=None) as batch_op:
        batch_op.drop_index('uq_number_assignments_live_number', sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_number_assignments_session_id'))
        batch_op.drop_index('ix_number_assignments_number_released')
        batch_op.drop_index(batch_op.f('ix_number_assignments_expires_at'))

    op.drop_table('number_assignments')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_utm_campaign'))
        batch_op.drop_index(batch_op.f('ix_calls_started_at'))
        batch_op.drop_index('ix_calls_source_started')
        batch_op.drop_index('ix_calls_site_started')
        batch_op.drop_index(batch_op.f('ix_calls_session_id'))
        batch_op.drop_index(batch_op.f('ix_calls_outcome'))
        batch_op.drop_index('ix_calls_node_linkedid')
        batch_op.drop_index('ix_calls_manager_started')
        batch_op.drop_index('ix_calls_caller_started')

    op.drop_table('calls')
    with op.batch_alter_table('caller_profiles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caller_profiles_number'))

    op.drop_table('caller_profiles')
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_visitor_sessions_site_visitor')
        batch_op.drop_index('ix_visitor_sessions_site_first_seen')

    op.drop_table('visitor_sessions')
    with op.batch_alter_table('tracking_numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tracking_numbers_site_id'))
        batch_op.drop_index(batch_op.f('ix_tracking_numbers_pool_id'))

    op.drop_table('tracking_numbers')
    op.drop_table('ad_costs')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sources_site_id'))

    op.drop_table('sources')
    with op.batch_alter_table('pool_usage_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_pool_usage_samples_pool_at')

    op.drop_table('pool_usage_samples')
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_outbox_pending')

    op.drop_table('webhook_outbox')
    op.drop_table('users')
    with op.batch_alter_table('routing_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_routing_rules_site_id'))

    op.drop_table('routing_rules')
    with op.batch_alter_table('number_pools', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_number_pools_site_id'))

    op.drop_table('number_pools')
    op.drop_table('manager_group_members')
    op.drop_table('webhook_subscriptions')
    op.drop_table('tags')
    op.drop_table('sites')
    op.drop_table('managers')
    op.drop_table('manager_groups')
    op.drop_table('ami_gaps')
