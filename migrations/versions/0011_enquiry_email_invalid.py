"""An enquiry's e-mail that is not an address is kept as given and flagged, as a phone is (a form is
never refused for a typo in its e-mail field)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_invalid', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.drop_column('email_invalid')
