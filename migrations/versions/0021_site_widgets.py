"""The website widget (#25): per-site settings of the lead-capture pop-up and the callback button
(channels, texts per language, colour, position, the pop-up's rules), one row per site

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 17:50:00
"""
import sqlalchemy as sa
from alembic import op

import astertrack.db.types

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

UTC = astertrack.db.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'site_widgets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('popup_enabled', sa.Boolean(), nullable=False),
        sa.Column('callback_enabled', sa.Boolean(), nullable=False),
        sa.Column('texts', sa.JSON(), nullable=False),
        sa.Column('colour', sa.String(length=7), nullable=False),
        sa.Column('position', sa.String(length=12), nullable=False),
        sa.Column('popup_delay_seconds', sa.Integer(), nullable=False),
        sa.Column('popup_exit_intent', sa.Boolean(), nullable=False),
        sa.Column('popup_page_views', sa.Integer(), nullable=False),
        sa.Column('popup_url_contains', sa.JSON(), nullable=False),
        sa.Column('popup_utm', sa.JSON(), nullable=False),
        sa.Column('popup_period_days', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('created_at', UTC(), nullable=False),
        sa.Column('updated_at', UTC(), nullable=True),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_widgets_site_id_sites'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_site_widgets')),
        sa.UniqueConstraint('site_id', name=op.f('uq_site_widgets_site_id')),
    )


def downgrade() -> None:
    op.drop_table('site_widgets')
