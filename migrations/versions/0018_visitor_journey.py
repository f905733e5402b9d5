"""Visitor journey (#24): page views and visitor actions per session, a per-session event count
(the ingestion cap), indexes to link a person's sessions by GA and Metrica ids, and each site's
privacy settings (IP anonymisation, page-view retention, query parameters kept)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 17:30:00
"""
import sqlalchemy as sa
from alembic import op

import astertrack.db.types
from astertrack.db import config_revision

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

UTC = astertrack.db.types.UTCDateTime
BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
# sites' columns as 0010 left them (its SITES_AFTER), then with this revision's privacy settings
SITES_BEFORE = (
    'id', 'name', 'domains', 'public_key', 'default_number', 'display_format', 'timezone',
    'hold_seconds', 'heartbeat_seconds', 'hold_cap_seconds', 'unload_grace_seconds',
    'overflow_policy', 'lazy_allocation', 'replace_selectors', 'replace_numbers',
    'default_pool_id', 'attribution_window_days', 'attribution_model', 'target_call_seconds',
    'crm_url_template', 'calls_retention_days', 'sessions_retention_days',
    'recordings_retention_days', 'created_at', 'archived_at', 'lead_window_days', 'missed_call_callback',
)
SITES_AFTER = SITES_BEFORE + ('anonymise_ip', 'pageviews_retention_days', 'query_params_allowed')


def _events_table(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column('id', BIGID, nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('client_key', sa.String(length=24), nullable=False),
        sa.Column('at', UTC(), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'], name=op.f(f'fk_{name}_session_id_visitor_sessions'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f(f'fk_{name}_site_id_sites'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
    )
    op.create_index(f'uq_{name}_session_key', name, ['session_id', 'client_key'], unique=True)
    op.create_index(f'ix_{name}_site_at', name, ['site_id', 'at'], unique=False)


def upgrade() -> None:
    bind = op.get_bind()
    config_revision.uninstall(bind, ['sites'])  # SQLite's batch copy would lose them; PostgreSQL's would block
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anonymise_ip', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('pageviews_retention_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('query_params_allowed', sa.JSON(), nullable=False, server_default='[]'))
    config_revision.install(bind, {'sites': SITES_AFTER})
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('journey_events', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_visitor_sessions_site_ga', ['site_id', 'ga_client_id'], unique=False)
        batch_op.create_index('ix_visitor_sessions_site_ym', ['site_id', 'ym_client_id'], unique=False)
    _events_table('page_views',
                  sa.Column('url', sa.String(length=2048), nullable=False),
                  sa.Column('title', sa.String(length=300), nullable=True),
                  sa.Column('referrer', sa.String(length=2048), nullable=True),
                  sa.Column('seconds_on_page', sa.Integer(), nullable=True))
    _events_table('visitor_actions',
                  sa.Column('kind', sa.String(length=20), nullable=False),
                  sa.Column('target', sa.String(length=500), nullable=True),
                  sa.Column('url', sa.String(length=2048), nullable=True))


def downgrade() -> None:
    for name in ('visitor_actions', 'page_views'):
        op.drop_index(f'ix_{name}_site_at', table_name=name)
        op.drop_index(f'uq_{name}_session_key', table_name=name)
        op.drop_table(name)
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_visitor_sessions_site_ym')
        batch_op.drop_index('ix_visitor_sessions_site_ga')
        batch_op.drop_column('journey_events')
    bind = op.get_bind()
    config_revision.uninstall(bind, ['sites'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('query_params_allowed')
        batch_op.drop_column('pageviews_retention_days')
        batch_op.drop_column('anonymise_ip')
    config_revision.install(bind, {'sites': SITES_BEFORE})
