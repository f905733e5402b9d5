"""Messengers (#25): a visit's code for messenger links, each site's Telegram bot and WhatsApp
webhook secret, the conversations and their messages (astertrack/leads/messengers.py)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08 10:00:00
"""
import sqlalchemy as sa
from alembic import op

from astertrack.db.types import UTCDateTime

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('messenger_code', sa.String(length=8), nullable=True))
        batch_op.create_index('ix_visitor_sessions_site_code', ['site_id', 'messenger_code'], unique=False)
    op.create_table(
        'site_messengers',
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('telegram_enabled', sa.Boolean(), nullable=False),
        sa.Column('telegram_bot_token', sa.String(length=200), nullable=True),
        sa.Column('telegram_bot_username', sa.String(length=64), nullable=True),
        sa.Column('telegram_secret', sa.String(length=256), nullable=True),
        sa.Column('telegram_webhook_at', UTCDateTime(), nullable=True),
        sa.Column('whatsapp_enabled', sa.Boolean(), nullable=False),
        sa.Column('whatsapp_secret', sa.String(length=256), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=True),
    )
    op.create_table(
        'messenger_chats',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id', ondelete='CASCADE'), nullable=False),
        sa.Column('messenger', sa.String(length=16), nullable=False),
        sa.Column('chat_key', sa.String(length=64), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=True),
        sa.Column('session_id', sa.Integer(), sa.ForeignKey('visitor_sessions.id', ondelete='SET NULL'),
                  nullable=True),
        sa.Column('enquiry_id', sa.Integer(), sa.ForeignKey('enquiries.id', ondelete='SET NULL'), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('last_message_at', UTCDateTime(), nullable=True),
    )
    op.create_index('uq_messenger_chats_site_chat', 'messenger_chats', ['site_id', 'messenger', 'chat_key'],
                    unique=True)
    op.create_table(
        'messenger_messages',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id', ondelete='CASCADE'), nullable=False),
        sa.Column('messenger', sa.String(length=16), nullable=False),
        sa.Column('message_key', sa.String(length=100), nullable=False),
        sa.Column('chat_id', sa.Integer(), sa.ForeignKey('messenger_chats.id', ondelete='CASCADE'), nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
    )
    op.create_index('uq_messenger_messages_key', 'messenger_messages', ['site_id', 'messenger', 'message_key'],
                    unique=True)
    op.create_index('ix_messenger_messages_chat_at', 'messenger_messages', ['chat_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messenger_messages_chat_at', table_name='messenger_messages')
    op.drop_index('uq_messenger_messages_key', table_name='messenger_messages')
    op.drop_table('messenger_messages')
    op.drop_index('uq_messenger_chats_site_chat', table_name='messenger_chats')
    op.drop_table('messenger_chats')
    op.drop_table('site_messengers')
    with op.batch_alter_table('visitor_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_visitor_sessions_site_code')
        batch_op.drop_column('messenger_code')
