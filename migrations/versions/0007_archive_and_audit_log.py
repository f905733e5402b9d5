"""Archived settings (sites, pools, sources, numbers, managers, groups, routing rules get
``archived_at``: out of routing and pickers, kept for history) and the settings audit log

Archiving is an UPDATE of a watched table's row, so ``archived_at`` joins the configuration
triggers' column lists (the AGI re-reads its snapshot when something is archived or restored).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 14:00:00
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types

from astertrack.db import config_revision


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The watched tables' columns as 0004 froze them (0005 and 0006 touch none of them).
BEFORE = {
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
    'tracking_numbers': ('id', 'number', 'site_id', 'source_id', 'pool_id', 'label', 'enabled'),
    'managers': ('id', 'name', 'endpoint', 'extension', 'enabled', 'schedule'),
    'manager_groups': ('id', 'name', 'queue_name'),
    'routing_rules': (
        'id', 'site_id', 'name', 'priority', 'enabled', 'match', 'group_id', 'strategy', 'sticky',
        'sticky_days', 'ring_timeout', 'max_attempts', 'schedule', 'after_hours_destination',
        'fallback_destination',
    ),
}
AFTER = {table: columns + ('archived_at',) for table, columns in BEFORE.items()}
# number_pools is not watched (the snapshot does not read it)
ARCHIVABLE = ('sites', 'number_pools', 'sources', 'tracking_numbers', 'managers', 'manager_groups', 'routing_rules')


def upgrade() -> None:
    config_revision.uninstall(op.get_bind(), list(BEFORE))
    for table in ARCHIVABLE:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('archived_at', astertrack.db.types.UTCDateTime(), nullable=True))
    config_revision.install(op.get_bind(), AFTER)
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('user_login', sa.String(length=80), nullable=True),
        sa.Column('action', sa.String(length=10), nullable=False),
        sa.Column('entity_kind', sa.String(length=30), nullable=False),
        sa.Column('entity_id', sa.Integer(), nullable=True),
        sa.Column('entity_label', sa.String(length=200), nullable=True),
        sa.Column('before', sa.JSON(), nullable=True),
        sa.Column('after', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_audit_log_user_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)
        batch_op.create_index('ix_audit_log_entity', ['entity_kind', 'entity_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_entity')
        batch_op.drop_index('ix_audit_log_at')
    op.drop_table('audit_log')
    config_revision.uninstall(op.get_bind(), list(BEFORE))
    for table in ARCHIVABLE:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('archived_at')
    config_revision.install(op.get_bind(), BEFORE)
