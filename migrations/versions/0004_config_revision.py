"""Configuration revision: a counter that triggers bump on every routing-configuration change

Lets the AGI re-read its routing snapshot only when an admin changed something, instead of in
full every few seconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:30:00
"""
from alembic import op
import sqlalchemy as sa

from astertrack.db import config_revision


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# The tables the triggers watch, as they stand at this revision (0001's columns: 0002 and 0003
# touch none of them), minus the live state that calls write all day.  Frozen here, never read
# from today's models: a fresh upgrade replays this migration against this revision's schema,
# and a later column would not exist yet.  A migration that changes one of these tables
# re-installs its triggers with its own list (see astertrack/db/config_revision.py).
CONFIG_COLUMNS = {
    'sites': (
        'id', 'name', 'domains', 'public_key', 'default_number', 'display_format', 'timezone',
        'hold_seconds', 'heartbeat_seconds', 'hold_cap_seconds', 'unload_grace_seconds',
        'overflow_policy', 'lazy_allocation', 'replace_selectors', 'replace_numbers',
        'default_pool_id', 'attribution_window_days', 'attribution_model', 'target_call_seconds',
        'crm_url_template', 'calls_retention_days', 'sessions_retention_days',
        'recordings_retention_days', 'created_at',
    ),
    'sources': (
        'id', 'site_id', 'name', 'kind', 'channel', 'match_rules', 'priority', 'pool_id',
        'fallback_number', 'enabled',
    ),
    # not last_released_at
    'tracking_numbers': ('id', 'number', 'site_id', 'source_id', 'pool_id', 'label', 'enabled'),
    # not paused, device_state, device_state_at, reserved_until, reserved_call_uid, last_routed_at
    'managers': ('id', 'name', 'endpoint', 'extension', 'enabled', 'schedule'),
    'manager_groups': ('id', 'name', 'queue_name'),
    'manager_group_members': ('group_id', 'manager_id'),
    # not rr_cursor
    'routing_rules': (
        'id', 'site_id', 'name', 'priority', 'enabled', 'match', 'group_id', 'strategy', 'sticky',
        'sticky_days', 'ring_timeout', 'max_attempts', 'schedule', 'after_hours_destination',
        'fallback_destination',
    ),
}


def upgrade() -> None:
    op.create_table(
        'config_revision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_config_revision')),
    )
    config_revision.install(op.get_bind(), CONFIG_COLUMNS)


def downgrade() -> None:
    config_revision.uninstall(op.get_bind(), CONFIG_COLUMNS)
    op.drop_table('config_revision')
