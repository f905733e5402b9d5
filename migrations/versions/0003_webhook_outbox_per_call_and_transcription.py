"""Webhook outbox rows per call (one delivery per subscription, event and call) and transcription errors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:15:37.327195
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transcription_error', sa.String(length=200), nullable=True))

    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('call_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_webhook_outbox_call_id'), ['call_id'], unique=False)
        batch_op.create_unique_constraint('uq_webhook_outbox_subscription_event_call', ['subscription_id', 'event', 'call_id'])
        batch_op.create_foreign_key(batch_op.f('fk_webhook_outbox_call_id_calls'), 'calls', ['call_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_webhook_outbox_call_id_calls'), type_='foreignkey')
        batch_op.drop_constraint('uq_webhook_outbox_subscription_event_call', type_='unique')
        batch_op.drop_index(batch_op.f('ix_webhook_outbox_call_id'))
        batch_op.drop_column('call_id')

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('transcription_error')

