"""Calls touched by a gap in the AMI stream are reconciled from Asterisk's CDR: the lines read, how far
the file was read, and each call's reconciliation state

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 11:20:00
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'cdr_records',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node', sa.String(length=64), nullable=False),
        sa.Column('linkedid', sa.String(length=150), nullable=False),
        sa.Column('uniqueid', sa.String(length=150), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=True),
        sa.Column('channel', sa.String(length=200), nullable=False),
        sa.Column('dstchannel', sa.String(length=200), nullable=True),
        sa.Column('lastapp', sa.String(length=80), nullable=True),
        sa.Column('lastdata', sa.String(length=255), nullable=True),
        sa.Column('disposition', sa.String(length=20), nullable=False),
        sa.Column('start', sa.Float(), nullable=False),
        sa.Column('answer', sa.Float(), nullable=True),
        sa.Column('end', sa.Float(), nullable=False),
        sa.Column('read_at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cdr_records')),
    )
    with op.batch_alter_table('cdr_records', schema=None) as batch_op:
        batch_op.create_index('ix_cdr_records_node_linkedid', ['node', 'linkedid'], unique=False)
        batch_op.create_index('ix_cdr_records_read', ['read_at'], unique=False)
    op.create_table(
        'cdr_cursors',
        sa.Column('node', sa.String(length=64), nullable=False),
        sa.Column('path', sa.String(length=1024), nullable=False),
        sa.Column('inode', sa.BigInteger(), nullable=False),
        sa.Column('offset', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('node', name=op.f('pk_cdr_cursors')),
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reconcile_state', sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('reconcile_state')
    op.drop_table('cdr_cursors')
    with op.batch_alter_table('cdr_records', schema=None) as batch_op:
        batch_op.drop_index('ix_cdr_records_read')
        batch_op.drop_index('ix_cdr_records_node_linkedid')
    op.drop_table('cdr_records')
