"""ticket queue: index for an assignee's (or the unassigned) tickets in any status

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22

The queue filters by assignee with or without a status; (controller_id,
assignee_id, status, created_at, id) serves the second, this one the first,
so both stay keyset index range scans at 1,000,000 tickets.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_queue_assignee_any", ["controller_id", "assignee_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_queue_assignee_any")
