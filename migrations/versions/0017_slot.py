"""(reserved slot: filled by the change that needs it, or removed)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 17:30:00
"""

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
