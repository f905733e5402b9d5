"""What supervisors record on calls: comments, checklist items per site, scores, handled missed calls

New tables only (no watched table changes, so no config_revision triggers to redo).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:00:00
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

CURRENT = sa.text('undone_at IS NULL')


def upgrade() -> None:
    op.create_table(
        'call_comments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_comments_call_id_calls'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_call_comments_user_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_comments')),
    )
    with op.batch_alter_table('call_comments', schema=None) as batch_op:
        batch_op.create_index('ix_call_comments_call_at', ['call_id', 'at'], unique=False)
    op.create_table(
        'checklist_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('text', sa.String(length=300), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('created_at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.Column('archived_at', astertrack.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_checklist_items_site_id_sites'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_checklist_items')),
    )
    with op.batch_alter_table('checklist_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checklist_items_site_id'), ['site_id'], unique=False)
    op.create_table(
        'call_scores',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.Column('ticks', sa.JSON(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('max_points', sa.Integer(), nullable=False),
        sa.Column('total', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_scores_call_id_calls'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_call_scores_user_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_scores')),
    )
    with op.batch_alter_table('call_scores', schema=None) as batch_op:
        batch_op.create_index('ix_call_scores_call_at', ['call_id', 'at'], unique=False)
    op.create_table(
        'call_handled',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('handled_by_id', sa.Integer(), nullable=True),
        sa.Column('handled_at', astertrack.db.types.UTCDateTime(), nullable=False),
        sa.Column('undone_by_id', sa.Integer(), nullable=True),
        sa.Column('undone_at', astertrack.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_handled_call_id_calls'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['handled_by_id'], ['users.id'], name=op.f('fk_call_handled_handled_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['undone_by_id'], ['users.id'], name=op.f('fk_call_handled_undone_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_handled')),
    )
    with op.batch_alter_table('call_handled', schema=None) as batch_op:
        batch_op.create_index('uq_call_handled_current', ['call_id'], unique=True,
                              sqlite_where=CURRENT, postgresql_where=CURRENT)
        batch_op.create_index('ix_call_handled_call_id', ['call_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('call_handled', schema=None) as batch_op:
        batch_op.drop_index('ix_call_handled_call_id')
        batch_op.drop_index('uq_call_handled_current', sqlite_where=CURRENT, postgresql_where=CURRENT)
    op.drop_table('call_handled')
    with op.batch_alter_table('call_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_call_scores_call_at')
    op.drop_table('call_scores')
    with op.batch_alter_table('checklist_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checklist_items_site_id'))
    op.drop_table('checklist_items')
    with op.batch_alter_table('call_comments', schema=None) as batch_op:
        batch_op.drop_index('ix_call_comments_call_at')
    op.drop_table('call_comments')
