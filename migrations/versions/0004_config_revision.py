"""Configuration revision: a counter that triggers bump on every routing-configuration change

Lets the AGI re-read its routing snapshot only when an admin changed something, instead of in
full every few seconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:30:00
"""
from alembic import op
import sqlalchemy as sa

from astertrack.db import config_revision
from astertrack.db.models import Base


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'config_revision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_config_revision')),
    )
    config_revision.install(op.get_bind(), Base.metadata)


def downgrade() -> None:
    config_revision.uninstall(op.get_bind())
    op.drop_table('config_revision')
