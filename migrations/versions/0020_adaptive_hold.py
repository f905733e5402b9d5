"""Adaptive hold: per site, holds whose visitor stopped sending heartbeats end early when the
pool runs short (astertrack/dni/allocation.py); off by default, so every site keeps today's holds

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 10:00:00
"""
import sqlalchemy as sa
from alembic import op

from astertrack.db import config_revision

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# sites' columns as 0018 left them (its SITES_AFTER), then with the adaptive hold's two
SITES_BEFORE = (
    'id', 'name', 'domains', 'public_key', 'default_number', 'display_format', 'timezone',
    'hold_seconds', 'heartbeat_seconds', 'hold_cap_seconds', 'unload_grace_seconds',
    'overflow_policy', 'lazy_allocation', 'replace_selectors', 'replace_numbers',
    'default_pool_id', 'attribution_window_days', 'attribution_model', 'target_call_seconds',
    'crm_url_template', 'calls_retention_days', 'sessions_retention_days',
    'recordings_retention_days', 'created_at', 'archived_at', 'lead_window_days', 'missed_call_callback',
    'anonymise_ip', 'pageviews_retention_days', 'query_params_allowed',
)
SITES_AFTER = SITES_BEFORE + ('adaptive_hold', 'adaptive_free_percent')


def upgrade() -> None:
    bind = op.get_bind()
    config_revision.uninstall(bind, ['sites'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('adaptive_hold', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('adaptive_free_percent', sa.Integer(), nullable=False, server_default='20'))
    config_revision.install(bind, {'sites': SITES_AFTER})


def downgrade() -> None:
    bind = op.get_bind()
    config_revision.uninstall(bind, ['sites'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('adaptive_free_percent')
        batch_op.drop_column('adaptive_hold')
    config_revision.install(bind, {'sites': SITES_BEFORE})
