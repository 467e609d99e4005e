"""audit events' personal parts under per-month keys (issue 14 item 1, audit_personal_parts)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01

`audit_events.personal_ct`: an event's personal part, AES-256-GCM under the key of its UTC month,
which retention shreds (app.audit.personal). `period_keys`: those keys, wrapped under the master
key like every data key (app.crypto.periods).

The column is added in place (ALTER TABLE ... ADD COLUMN on both databases, never a batch table
rebuild, which on SQLite would drop the append-only triggers of 0003); adding a column fires no
row trigger, and the triggers keep refusing UPDATE and DELETE. Existing events need no change:
`record()` refused personal data in details, so none carries any, and they keep hashing as
format version 1. Downgrade refuses while an event has a personal part (dropping it would break
that event's hash).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "period_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("master_version", sa.Integer(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('active', 'shredded')", name=op.f("ck_period_keys_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_keys")),
        sa.UniqueConstraint("purpose", "period", name="uq_period_keys_purpose_period"),
    )
    # Not batch mode: a SQLite table rebuild would lose the append-only triggers.
    op.execute("ALTER TABLE audit_events ADD COLUMN personal_ct " + ("BYTEA" if op.get_bind().dialect.name == "postgresql" else "BLOB"))


def downgrade() -> None:
    bind = op.get_bind()
    carrying = bind.execute(sa.text("SELECT count(*) FROM audit_events WHERE personal_ct IS NOT NULL")).scalar()
    if carrying:
        raise RuntimeError(f"{carrying} audit events have a personal part: dropping the column would break their hashes (audit verify)")
    op.execute("ALTER TABLE audit_events DROP COLUMN personal_ct")
    op.drop_table("period_keys")
