"""Managers' own outbound calls (dialled from their phones, seen by the AMI listener), so the
missed-calls report counts a manager calling the customer back

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 15:00:00
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

UTC = astertrack.db.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'outbound_calls',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node', sa.String(length=64), nullable=False),
        sa.Column('linkedid', sa.String(length=150), nullable=False),
        sa.Column('manager_id', sa.Integer(), nullable=True),
        sa.Column('endpoint', sa.String(length=100), nullable=False),
        sa.Column('number', sa.String(length=20), nullable=True),
        sa.Column('number_raw', sa.String(length=80), nullable=True),
        sa.Column('started_at', UTC(), nullable=False),
        sa.Column('answered_at', UTC(), nullable=True),
        sa.Column('ended_at', UTC(), nullable=True),
        sa.Column('disposition', sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], name=op.f('fk_outbound_calls_manager_id_managers'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_calls')),
        sa.UniqueConstraint('node', 'linkedid', name='uq_outbound_calls_node_linkedid'),
    )
    with op.batch_alter_table('outbound_calls', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_calls_number_started', ['number', 'started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbound_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_calls_number_started')
    op.drop_table('outbound_calls')
