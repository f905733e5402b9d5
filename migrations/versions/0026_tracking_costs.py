"""Nothing yet: the slot of tracking costs (#27), kept so work on #26 and #27 can proceed side by side.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 22:00:00
"""

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
