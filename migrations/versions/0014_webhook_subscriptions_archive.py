"""Webhooks a user manages: a subscription is archived (kept for its delivery log), a delivery
keeps the receiver's answer (code and a short body excerpt) and a dead-letter time after the last attempt

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 15:50:00
"""
import sqlalchemy as sa
from alembic import op

import astertrack.db.types

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

UTC = astertrack.db.types.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', UTC(), nullable=True))
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response_code', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('response_excerpt', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('dead_at', UTC(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_column('dead_at')
        batch_op.drop_column('response_excerpt')
        batch_op.drop_column('response_code')
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('archived_at')
