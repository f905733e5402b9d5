"""The AMI listener's status per node (state, since, heartbeat, last error): the admin says when
Asterisk is not followed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 14:00:00
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ami_listener_status',
        sa.Column('node', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('since', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.Column('heartbeat_at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('node', name=op.f('pk_ami_listener_status')),
    )


def downgrade() -> None:
    op.drop_table('ami_listener_status')
