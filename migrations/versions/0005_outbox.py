"""outbound mail: the transactional outbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

One row per outbound email with its delivery state, attempts, claim and
Message-ID (unique: a re-send carries the same one). The recipient and the
bodies are encrypted fields (app.crypto.fields) under the key of `key_owner`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=250), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("related_type", sa.String(length=40), nullable=True),
        sa.Column("related_id", sa.Integer(), nullable=True),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("to_addr_ct", sa.LargeBinary(), nullable=False),
        sa.Column("body_text_ct", sa.LargeBinary(), nullable=False),
        sa.Column("body_html_ct", sa.LargeBinary(), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("in_reply_to", sa.String(length=998), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("smtp_response", sa.String(length=500), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivery_note", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint("state IN ('queued', 'sending', 'sent', 'failed')", name=op.f("ck_outbox_emails_state")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_outbox_emails_controller_id_controllers"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_emails")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_emails_message_id")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_outbox_emails_row_uid")),
    )
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_emails_controller_id"), ["controller_id"], unique=False)
        batch_op.create_index("ix_outbox_emails_related", ["related_type", "related_id"], unique=False)
        batch_op.create_index("ix_outbox_emails_state_due_at", ["state", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_emails_state_due_at")
        batch_op.drop_index("ix_outbox_emails_related")
        batch_op.drop_index(batch_op.f("ix_outbox_emails_controller_id"))
    op.drop_table("outbox_emails")
