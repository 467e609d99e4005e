"""retention of records beside tickets (issue 14 item 1): deletion runs over some records of a category, outbox payloads

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01

`deletion_runs.scope_kind` gains `records`: a run of the engine over some items of one retention category
(quarantined mail, delivered outbox payloads, DSR records, export files, staff sessions, login addresses;
app.deletion.categories). `outbox_emails.payload_deleted_at`: when retention deleted a delivered email's bodies
(the row stays as the record of sending); NULL while they are kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deletion_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_deletion_runs_scope_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_deletion_runs_scope_kind"), "scope_kind IN ('subject', 'tickets', 'controller', 'records')")
    op.add_column("outbox_emails", sa.Column("payload_deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_emails", "payload_deleted_at")
    # A records run cannot be described by the old schema: its row goes (its report is in the retention ledger).
    op.execute("DELETE FROM deletion_runs WHERE scope_kind = 'records'")
    with op.batch_alter_table("deletion_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_deletion_runs_scope_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_deletion_runs_scope_kind"), "scope_kind IN ('subject', 'tickets', 'controller')")
