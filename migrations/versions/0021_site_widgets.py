"""(reserved slot: filled by the change that needs it, or removed)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 17:50:00
"""

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
