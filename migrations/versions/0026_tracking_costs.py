"""Tracking costs (#27): a number's or a pool's monthly rent and per-minute price, with the dates a
number was rented (pro rata months), in a table of their own so the watched ``tracking_numbers``
keep their triggers untouched (prices are no routing configuration).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
from alembic import op

from astertrack.db.types import UTCDateTime

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'tracking_prices',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('pool_id', sa.Integer(), sa.ForeignKey('number_pools.id', ondelete='CASCADE'), nullable=True),
        sa.Column('number_id', sa.Integer(), sa.ForeignKey('tracking_numbers.id', ondelete='CASCADE'),
                  nullable=True),
        sa.Column('monthly_rent', sa.Numeric(14, 2), nullable=True),
        sa.Column('minute_price', sa.Numeric(14, 4), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('rented_from', sa.Date(), nullable=True),
        sa.Column('rented_until', sa.Date(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('pool_id', name='uq_tracking_prices_pool_id'),
        sa.UniqueConstraint('number_id', name='uq_tracking_prices_number_id'),
    )


def downgrade() -> None:
    op.drop_table('tracking_prices')
