"""DSR forwards: 'queued' until the relay accepts, 'refused' when it refuses every contact; outbox stale-claim resends counted

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

"Forwarded" now means the controller's relay accepted the forward for at
least one DSR contact (issue 15 item 1): a forward whose outbox rows are
written but not yet accepted is `queued`, one the relay refused for every
contact is `refused`; the 24-hour clock keeps running for both. Rows already
`forwarded` stay so. `outbox_emails.stale_claims` counts the sends that
followed a stale claim (a possible duplicate; issue 15 item 5).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_dsr_forwards_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_dsr_forwards_state"), "state IN ('pending', 'queued', 'forwarded', 'refused')")
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stale_claims", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_column("stale_claims")
    # The old schema knew only pending and forwarded: a queued or refused forward had its outbox rows written.
    op.execute("UPDATE dsr_forwards SET state = 'forwarded' WHERE state IN ('queued', 'refused')")
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_dsr_forwards_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_dsr_forwards_state"), "state IN ('pending', 'forwarded')")
