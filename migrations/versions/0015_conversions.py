"""Conversions to GA4, Yandex Metrica and Google Ads: per-site accounts (secrets kept to send,
shown masked), per-site rules (which calls and lead states count, with what value) and the log
that makes every run incremental (one row per site, platform and conversion)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 17:10:00
"""
import sqlalchemy as sa
from alembic import op

import astertrack.db.types

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

UTC = astertrack.db.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'conversion_settings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('ga4_enabled', sa.Boolean(), nullable=False),
        sa.Column('ga4_measurement_id', sa.String(length=40), nullable=True),
        sa.Column('ga4_api_secret', sa.String(length=200), nullable=True),
        sa.Column('ga4_call_event', sa.String(length=40), nullable=False),
        sa.Column('ga4_lead_event', sa.String(length=40), nullable=False),
        sa.Column('metrica_enabled', sa.Boolean(), nullable=False),
        sa.Column('metrica_counter_id', sa.String(length=20), nullable=True),
        sa.Column('metrica_token', sa.String(length=200), nullable=True),
        sa.Column('google_ads_enabled', sa.Boolean(), nullable=False),
        sa.Column('google_ads_conversion_name', sa.String(length=100), nullable=True),
        sa.Column('google_ads_timezone', sa.String(length=64), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('created_at', UTC(), nullable=False),
        sa.Column('updated_at', UTC(), nullable=True),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_conversion_settings_site_id_sites'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_conversion_settings')),
        sa.UniqueConstraint('site_id', name=op.f('uq_conversion_settings_site_id')),
    )
    op.create_table(
        'conversion_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('calls', sa.String(length=12), nullable=False),
        sa.Column('first_time_only', sa.Boolean(), nullable=False),
        sa.Column('call_value', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('lead_state', sa.String(length=20), nullable=True),
        sa.Column('lead_value', sa.String(length=10), nullable=False),
        sa.Column('lead_fixed_value', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_conversion_rules_site_id_sites'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_conversion_rules')),
        sa.UniqueConstraint('site_id', name=op.f('uq_conversion_rules_site_id')),
    )
    op.create_table(
        'conversion_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('platform', sa.String(length=12), nullable=False),
        sa.Column('subject', sa.String(length=40), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=True),
        sa.Column('lead_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.String(length=30), nullable=True),
        sa.Column('occurred_at', UTC(), nullable=False),
        sa.Column('value', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('response_code', sa.Integer(), nullable=True),
        sa.Column('response_excerpt', sa.Text(), nullable=True),
        sa.Column('created_at', UTC(), nullable=False),
        sa.Column('updated_at', UTC(), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_conversion_log_site_id_sites'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_conversion_log_call_id_calls'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_conversion_log_lead_id_leads'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_conversion_log')),
        sa.UniqueConstraint('site_id', 'platform', 'subject', name='uq_conversion_log_site_platform_subject'),
    )
    op.create_index('ix_conversion_log_status', 'conversion_log', ['status', 'platform'], unique=False)
    op.create_index('ix_conversion_log_site_at', 'conversion_log', ['site_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversion_log_site_at', table_name='conversion_log')
    op.drop_index('ix_conversion_log_status', table_name='conversion_log')
    op.drop_table('conversion_log')
    op.drop_table('conversion_rules')
    op.drop_table('conversion_settings')
