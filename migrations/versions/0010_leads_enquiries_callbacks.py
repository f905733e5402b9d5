"""Leads across channels: enquiries (a call, a form, a callback) joining one lead per phone or
e-mail within the site's window, callback requests dialled through Asterisk, API tokens for CRMs

Existing leads (one per call until now) get their one enquiry and first channel; "rejected" is
"lost" in the new states.  ``sites`` is a watched table: its triggers are re-installed with the
two new columns.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 15:00:00
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types

from astertrack.db import config_revision


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# sites' columns as 0007 left them
SITES_BEFORE = (
    'id', 'name', 'domains', 'public_key', 'default_number', 'display_format', 'timezone',
    'hold_seconds', 'heartbeat_seconds', 'hold_cap_seconds', 'unload_grace_seconds',
    'overflow_policy', 'lazy_allocation', 'replace_selectors', 'replace_numbers',
    'default_pool_id', 'attribution_window_days', 'attribution_model', 'target_call_seconds',
    'crm_url_template', 'calls_retention_days', 'sessions_retention_days',
    'recordings_retention_days', 'created_at', 'archived_at',
)
SITES_AFTER = SITES_BEFORE + ('lead_window_days', 'missed_call_callback')
UTC = astertrack.db.types.UTCDateTime


def upgrade() -> None:
    bind = op.get_bind()
    config_revision.uninstall(bind, ['sites'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lead_window_days', sa.Integer(), nullable=False, server_default='30'))
        batch_op.add_column(sa.Column('missed_call_callback', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    config_revision.install(bind, {'sites': SITES_AFTER})

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lead_channel', sa.String(length=24), nullable=False, server_default='call'))

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('first_channel', sa.String(length=24), nullable=False, server_default='call'))
        batch_op.add_column(sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.add_column(sa.Column('currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('enquiries_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_enquiry_at', UTC(), nullable=True))
        batch_op.add_column(sa.Column('updated_at', UTC(), nullable=True))
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('merged_at', UTC(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_leads_merged_into_id_leads'), 'leads', ['merged_into_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_leads_merged_into_id', ['merged_into_id'], unique=False)
        batch_op.create_index('ix_leads_site_phone', ['site_id', 'phone'], unique=False)
        batch_op.create_index('ix_leads_site_email', ['site_id', 'email'], unique=False)

    op.create_table(
        'enquiries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('channel', sa.String(length=24), nullable=False),
        sa.Column('at', UTC(), nullable=False),
        sa.Column('repeat', sa.Boolean(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=True),
        sa.Column('session_id', sa.Integer(), nullable=True),
        sa.Column('source_id', sa.Integer(), nullable=True),
        sa.Column('manager_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('phone', sa.String(length=20), nullable=True),
        sa.Column('phone_raw', sa.String(length=64), nullable=True),
        sa.Column('phone_invalid', sa.Boolean(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('page_url', sa.String(length=2048), nullable=True),
        sa.Column('utm_source', sa.String(length=255), nullable=True),
        sa.Column('utm_medium', sa.String(length=255), nullable=True),
        sa.Column('utm_campaign', sa.String(length=255), nullable=True),
        sa.Column('utm_content', sa.String(length=255), nullable=True),
        sa.Column('utm_term', sa.String(length=255), nullable=True),
        sa.Column('keyword', sa.String(length=255), nullable=True),
        sa.Column('gclid', sa.String(length=255), nullable=True),
        sa.Column('yclid', sa.String(length=255), nullable=True),
        sa.Column('fbclid', sa.String(length=255), nullable=True),
        sa.Column('ga_client_id', sa.String(length=64), nullable=True),
        sa.Column('ym_client_id', sa.String(length=64), nullable=True),
        sa.Column('ip', sa.String(length=45), nullable=True),
        sa.Column('user_agent', sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_enquiries_call_id_calls'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_enquiries_lead_id_leads'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_enquiries_manager_id_managers'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'],
                                name=op.f('fk_enquiries_session_id_visitor_sessions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_enquiries_site_id_sites'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_enquiries_source_id_sources'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_enquiries')),
    )
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.create_index('ix_enquiries_lead_at', ['lead_id', 'at'], unique=False)
        batch_op.create_index('ix_enquiries_site_at', ['site_id', 'at'], unique=False)
        batch_op.create_index('uq_enquiries_call_id', ['call_id'], unique=True)

    op.create_table(
        'callback_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('lead_id', sa.Integer(), nullable=True),
        sa.Column('enquiry_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('phone', sa.String(length=20), nullable=False),
        sa.Column('missed_call_id', sa.Integer(), nullable=True),
        sa.Column('session_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('max_attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTC(), nullable=True),
        sa.Column('manager_id', sa.Integer(), nullable=True),
        sa.Column('call_id', sa.Integer(), nullable=True),
        sa.Column('last_result', sa.String(length=40), nullable=True),
        sa.Column('node', sa.String(length=64), nullable=True),
        sa.Column('claimed_until', UTC(), nullable=True),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', UTC(), nullable=False),
        sa.Column('updated_at', UTC(), nullable=True),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_callback_requests_call_id_calls'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['enquiry_id'], ['enquiries.id'], name=op.f('fk_callback_requests_enquiry_id_enquiries'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_callback_requests_lead_id_leads'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_callback_requests_manager_id_managers'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['missed_call_id'], ['calls.id'], name=op.f('fk_callback_requests_missed_call_id_calls'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_callback_requests_requested_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['session_id'], ['visitor_sessions.id'],
                                name=op.f('fk_callback_requests_session_id_visitor_sessions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_callback_requests_site_id_sites'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_requests')),
    )
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.create_index('ix_callback_requests_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_callback_requests_lead_id', ['lead_id'], unique=False)

    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('prefix', sa.String(length=12), nullable=False),
        sa.Column('scope', sa.String(length=10), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('created_at', UTC(), nullable=False),
        sa.Column('last_used_at', UTC(), nullable=True),
        sa.Column('revoked_at', UTC(), nullable=True),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_api_tokens_site_id_sites'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )

    # The leads so far were one per call (or typed in): each gets its one enquiry.
    op.execute("UPDATE leads SET status = 'lost' WHERE status = 'rejected'")
    op.execute("UPDATE leads SET first_channel = CASE WHEN call_id IS NULL THEN 'form' ELSE 'call' END, "
               "enquiries_count = 1, last_enquiry_at = created_at")
    op.execute("INSERT INTO enquiries (lead_id, site_id, channel, at, repeat, call_id, session_id, source_id, "
               "manager_id, name, phone, phone_invalid) "
               "SELECT id, site_id, first_channel, created_at, false, call_id, session_id, source_id, manager_id, "
               "name, phone, false FROM leads")


def downgrade() -> None:
    op.execute("UPDATE leads SET status = 'rejected' WHERE status = 'lost'")
    op.execute("UPDATE leads SET status = 'new' WHERE status NOT IN ('new', 'qualified', 'rejected')")
    op.drop_table('api_tokens')
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_requests_lead_id')
        batch_op.drop_index('ix_callback_requests_due')
    op.drop_table('callback_requests')
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.drop_index('uq_enquiries_call_id')
        batch_op.drop_index('ix_enquiries_site_at')
        batch_op.drop_index('ix_enquiries_lead_at')
    op.drop_table('enquiries')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index('ix_leads_site_email')
        batch_op.drop_index('ix_leads_site_phone')
        batch_op.drop_index('ix_leads_merged_into_id')
        batch_op.drop_constraint(batch_op.f('fk_leads_merged_into_id_leads'), type_='foreignkey')
        for column in ('merged_at', 'merged_into_id', 'updated_at', 'last_enquiry_at', 'enquiries_count',
                       'currency', 'amount', 'first_channel', 'email'):
            batch_op.drop_column(column)
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('lead_channel')
    bind = op.get_bind()
    config_revision.uninstall(bind, ['sites'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('missed_call_callback')
        batch_op.drop_column('lead_window_days')
    config_revision.install(bind, {'sites': SITES_BEFORE})
