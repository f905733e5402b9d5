"""The website chat (#25): chats and their messages, the managers' chat status, the widget's chat
settings (astertrack/chat/)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 21:00:00
"""
import sqlalchemy as sa
from alembic import op

from astertrack.db.types import UTCDateTime

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # managers.chat_away is live state: the configuration triggers do not name it (config_revision.WATCHED)
    with op.batch_alter_table('managers', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('chat_away', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('site_widgets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chat_enabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('chat_wait_seconds', sa.Integer(), server_default='90', nullable=False))
        batch_op.add_column(sa.Column('chat_retention_days', sa.Integer(), server_default='365', nullable=False))
    op.create_table(
        'chats',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id', ondelete='CASCADE'), nullable=False),
        sa.Column('session_id', sa.Integer(), sa.ForeignKey('visitor_sessions.id', ondelete='SET NULL'),
                  nullable=True),
        sa.Column('token_hash', sa.String(length=64), nullable=False, unique=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('manager_id', sa.Integer(), sa.ForeignKey('managers.id', ondelete='SET NULL'), nullable=True),
        sa.Column('offered_to', sa.JSON(), nullable=False),
        sa.Column('enquiry_id', sa.Integer(), sa.ForeignKey('enquiries.id', ondelete='SET NULL'), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('phone', sa.String(length=20), nullable=True),
        sa.Column('language', sa.String(length=2), nullable=False),
        sa.Column('page_url', sa.String(length=2048), nullable=True),
        sa.Column('ip', sa.String(length=45), nullable=True),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('rev', sa.Integer(), nullable=False),
        sa.Column('visitor_read_seq', sa.Integer(), nullable=False),
        sa.Column('manager_read_seq', sa.Integer(), nullable=False),
        sa.Column('visitor_typing_until', UTCDateTime(), nullable=True),
        sa.Column('manager_typing_until', UTCDateTime(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('first_reply_at', UTCDateTime(), nullable=True),
        sa.Column('last_visitor_at', UTCDateTime(), nullable=True),
        sa.Column('closed_at', UTCDateTime(), nullable=True),
        sa.Column('closed_by', sa.String(length=10), nullable=True),
    )
    op.create_index('ix_chats_updated_at', 'chats', ['updated_at'])
    op.create_index('ix_chats_site_status', 'chats', ['site_id', 'status'])
    op.create_index('ix_chats_session_id', 'chats', ['session_id'])
    op.create_index('ix_chats_manager_id', 'chats', ['manager_id'])
    op.create_index('ix_chats_enquiry_id', 'chats', ['enquiry_id'])
    op.create_index('ix_chats_created_at', 'chats', ['created_at'])
    op.create_table(
        'chat_messages',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('chat_id', sa.Integer(), sa.ForeignKey('chats.id', ondelete='CASCADE'), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('author', sa.String(length=10), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('manager_id', sa.Integer(), sa.ForeignKey('managers.id', ondelete='SET NULL'), nullable=True),
        sa.Column('client_id', sa.String(length=40), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('meta', sa.JSON(), nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
    )
    op.create_index('uq_chat_messages_seq', 'chat_messages', ['chat_id', 'seq'], unique=True)
    op.create_index('uq_chat_messages_client', 'chat_messages', ['chat_id', 'author', 'client_id'], unique=True)


def downgrade() -> None:
    op.drop_table('chat_messages')
    for name in ('ix_chats_created_at', 'ix_chats_enquiry_id', 'ix_chats_manager_id', 'ix_chats_session_id',
                 'ix_chats_site_status', 'ix_chats_updated_at'):
        op.drop_index(name, table_name='chats')
    op.drop_table('chats')
    with op.batch_alter_table('site_widgets', schema=None) as batch_op:
        batch_op.drop_column('chat_retention_days')
        batch_op.drop_column('chat_wait_seconds')
        batch_op.drop_column('chat_enabled')
    with op.batch_alter_table('managers', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('chat_away')
