"""No change: a revision kept for the chat's webhooks (#25) while #26 was built after it; the webhooks
needed none (the outbox's unique key says what was queued), and the chain keeps it.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 21:30:00
"""

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
