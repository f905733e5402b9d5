"""Adaptive hold: per site, holds whose visitor stopped sending heartbeats end early when the
pool runs short (astertrack/dni/allocation.py); off by default, so every site keeps today's holds

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('adaptive_hold', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('adaptive_free_percent', sa.Integer(), nullable=False, server_default='20'))


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('adaptive_free_percent')
        batch_op.drop_column('adaptive_hold')
