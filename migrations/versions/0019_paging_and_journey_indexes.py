"""Indexes for the REST API's keyset pages (a subscription's delivery log, a site's leads newest
first) and for the journey's phone lookup (the enquiries of a visit)

Calls and visitor sessions get no such index: both are written on the hot paths (the AGI's and
the tracker's), and their site filter already has indexes the planner can use.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 17:40:00
"""
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_webhook_outbox_subscription_id', 'webhook_outbox', ['subscription_id', 'id'])
    op.create_index('ix_leads_site_paging', 'leads', ['site_id', 'id'])
    op.create_index('ix_enquiries_session_id', 'enquiries', ['session_id'])


def downgrade() -> None:
    op.drop_index('ix_enquiries_session_id', table_name='enquiries')
    op.drop_index('ix_leads_site_paging', table_name='leads')
    op.drop_index('ix_webhook_outbox_subscription_id', table_name='webhook_outbox')
