"""Live call state (ringing endpoints, transfers), routing memory for `next`, report indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:12:28.780578
"""
from alembic import op
import sqlalchemy as sa
import astertrack.db.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ringing_endpoint', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('transferred_to', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('routing_rule_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('routing_tried', sa.JSON(), nullable=True))
        batch_op.create_index('ix_calls_node_state', ['node', 'state'], unique=False)
        batch_op.create_index('ix_calls_report', ['started_at', 'site_id', 'source_id', 'outcome', 'talk_seconds', 'is_first_call', 'wait_seconds', 'caller_number'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_calls_routing_rule_id_routing_rules'), 'routing_rules', ['routing_rule_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('overflow_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_overflow_events_session_id'), ['session_id'], unique=False)

    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_visitor_sessions_funnel', ['first_seen', 'source_id', 'site_id', 'is_bot'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_visitor_sessions_funnel')

    with op.batch_alter_table('overflow_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_overflow_events_session_id'))

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_calls_routing_rule_id_routing_rules'), type_='foreignkey')
        batch_op.drop_index('ix_calls_report')
        batch_op.drop_index('ix_calls_node_state')
        batch_op.drop_column('routing_tried')
        batch_op.drop_column('routing_rule_id')
        batch_op.drop_column('transferred_to')
        batch_op.drop_column('ringing_endpoint')

