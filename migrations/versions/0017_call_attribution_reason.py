"""Calls say why they are attributed as they are: a reason code and the count of candidate
visits (#24, attribution that says how sure it is)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 17:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attribution_reason', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('attribution_candidates', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('attribution_candidates')
        batch_op.drop_column('attribution_reason')
