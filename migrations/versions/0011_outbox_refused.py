"""outbox: a row the outbound policies refuse at claim time ends `refused`

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

A message allowed when it was queued may no longer be allowed when a worker
claims it (a retry, a requeue, a resend after a stale claim): it is then
marked refused, never sent (issue 10 item 2, WECO §12.2, Pexgle §11.5).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_emails_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_emails_state"), "state IN ('queued', 'sending', 'sent', 'failed', 'refused')")


def downgrade() -> None:
    # A refused row was never sent: it goes back as failed (the old schema's nearest end state).
    op.execute("UPDATE outbox_emails SET state = 'failed' WHERE state = 'refused'")
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_emails_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_emails_state"), "state IN ('queued', 'sending', 'sent', 'failed')")
