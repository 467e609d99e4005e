"""outbox: a row a delivery status notification reports on ends `bounced` (status, diagnostic, when); recipient blind index

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

A bounce comes back to the row it reports on (issue 11 item 4): the outbox
row is matched by the original Message-ID in the returned headers or by its
VERP return address and marked `bounced` with the DSN's status code and
diagnostic. `to_addr_bidx` (the recipient's blind index under the row's key
owner) lets the outbound rate limit count automatic mail per recipient
(issue 11 item 3(d)); rows written before it have none (they are older than
any rate-limit window that matters after the upgrade).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bounce_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("bounce_diagnostic", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("to_addr_bidx", sa.LargeBinary(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_emails_to_addr_bidx"), ["to_addr_bidx"], unique=False)
        batch_op.drop_constraint(batch_op.f("ck_outbox_emails_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_emails_state"), "state IN ('queued', 'sending', 'sent', 'failed', 'refused', 'bounced')")


def downgrade() -> None:
    # A bounced row had been sent: it goes back as sent (the old schema's nearest state).
    op.execute("UPDATE outbox_emails SET state = 'sent' WHERE state = 'bounced'")
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_emails_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_emails_state"), "state IN ('queued', 'sending', 'sent', 'failed', 'refused')")
        batch_op.drop_index(batch_op.f("ix_outbox_emails_to_addr_bidx"))
        batch_op.drop_column("to_addr_bidx")
        batch_op.drop_column("bounced_at")
        batch_op.drop_column("bounce_diagnostic")
        batch_op.drop_column("bounce_status")
