"""Webhooks for every event: the outbox is keyed per occurrence (``subject``: "call:12",
"lead:5", "lead:5@<updated_at>", "deal:5@<deal_updated_at>") instead of per call, may point at a
lead, keeps the version it announced (``occurred_at``); a lead records when its deal last changed

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 17:10:00
"""
import sqlalchemy as sa
from alembic import op

import astertrack.db.types

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

UTC = astertrack.db.types.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deal_updated_at', UTC(), nullable=True))
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lead_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('subject', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('occurred_at', UTC(), nullable=True))
    # every row so far announced one call; a row whose call is gone keeps a key of its own
    op.execute("UPDATE webhook_outbox SET subject = COALESCE('call:' || call_id, 'outbox:' || id)")
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.alter_column('subject', existing_type=sa.String(length=100), nullable=False)
        batch_op.drop_constraint('uq_webhook_outbox_subscription_event_call', type_='unique')
        batch_op.create_unique_constraint('uq_webhook_outbox_subscription_event_subject',
                                          ['subscription_id', 'event', 'subject'])
        batch_op.create_index(batch_op.f('ix_webhook_outbox_lead_id'), ['lead_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_webhook_outbox_lead_id_leads'), 'leads', ['lead_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    # the old key (subscription, event, call) holds: lead events have no call (NULLs never clash)
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_webhook_outbox_lead_id_leads'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_webhook_outbox_lead_id'))
        batch_op.drop_constraint('uq_webhook_outbox_subscription_event_subject', type_='unique')
        batch_op.create_unique_constraint('uq_webhook_outbox_subscription_event_call',
                                          ['subscription_id', 'event', 'call_id'])
        batch_op.drop_column('occurred_at')
        batch_op.drop_column('subject')
        batch_op.drop_column('lead_id')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('deal_updated_at')
