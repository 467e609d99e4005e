"""helpdesk: tickets, messages, attachments, encrypted blobs, mail quarantine

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21

Personal fields are ciphertext from app.crypto.fields (bytes, bound to
row_uid and encrypted under the key of key_owner); blind indexes 16 bytes. The ticket queue indexes lead with the
controller and end with (created_at, id) for keyset pagination.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blobs")),
    )
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blobs_key_owner"), ["key_owner"], unique=False)

    op.create_table(
        "blob_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("data_ct", sa.LargeBinary(), nullable=False),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_blob_chunks_blob_id_blobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_chunks")),
        sa.UniqueConstraint("blob_id", "seq", name="uq_blob_chunks_blob_id_seq"),
        sa.UniqueConstraint("row_uid", name=op.f("uq_blob_chunks_row_uid")),
    )
    op.create_table(
        "mail_quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("raw_blob_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("state IN ('held', 'released', 'deleted')", name=op.f("ck_mail_quarantine_state")),
        sa.ForeignKeyConstraint(["raw_blob_id"], ["blobs.id"], name=op.f("fk_mail_quarantine_raw_blob_id_blobs"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_quarantine")),
    )
    with op.batch_alter_table("mail_quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_mail_quarantine_sha256", ["sha256"], unique=False)
        batch_op.create_index("ix_mail_quarantine_state_id", ["state", "id"], unique=False)

    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=24), nullable=True),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("requester_name_ct", sa.LargeBinary(), nullable=True),
        sa.Column("requester_email_ct", sa.LargeBinary(), nullable=True),
        sa.Column("requester_email_bidx", sa.LargeBinary(length=16), nullable=True),
        sa.Column("subject_ct", sa.LargeBinary(), nullable=True),
        sa.Column("reply_token", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint("status IN ('new', 'open', 'waiting', 'closed')", name=op.f("ck_tickets_status")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_tickets_controller_id_controllers"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("reference", name=op.f("uq_tickets_reference")),
        sa.UniqueConstraint("reply_token", name=op.f("uq_tickets_reply_token")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_tickets_row_uid")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tickets_assignee_id"), ["assignee_id"], unique=False)
        batch_op.create_index("ix_tickets_queue_all", ["controller_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_tickets_queue_assignee", ["controller_id", "assignee_id", "status", "created_at", "id"], unique=False)
        batch_op.create_index("ix_tickets_queue_status", ["controller_id", "status", "created_at", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_requester_email_bidx"), ["requester_email_bidx"], unique=False)

    op.create_table(
        "ticket_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("sender_name_ct", sa.LargeBinary(), nullable=True),
        sa.Column("sender_email_ct", sa.LargeBinary(), nullable=True),
        sa.Column("sender_email_bidx", sa.LargeBinary(length=16), nullable=True),
        sa.Column("subject_ct", sa.LargeBinary(), nullable=True),
        sa.Column("body_text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("reply_text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("body_html_ct", sa.LargeBinary(), nullable=True),
        sa.Column("raw_blob_id", sa.Integer(), nullable=True),
        sa.Column("raw_sha256", sa.String(length=64), nullable=True),
        sa.Column("is_auto_reply", sa.Boolean(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint("direction IN ('inbound', 'outbound', 'note')", name=op.f("ck_ticket_messages_direction")),
        sa.ForeignKeyConstraint(["raw_blob_id"], ["blobs.id"], name=op.f("fk_ticket_messages_raw_blob_id_blobs"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_messages_ticket_id_tickets"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_ticket_messages_message_id")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_ticket_messages_row_uid")),
    )
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_messages_raw_blob_id"), ["raw_blob_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_messages_sender_email_bidx"), ["sender_email_bidx"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_messages_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "ticket_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("filename_ct", sa.LargeBinary(), nullable=True),
        sa.Column("content_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_ticket_attachments_blob_id_blobs"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["message_id"], ["ticket_messages.id"], name=op.f("fk_ticket_attachments_message_id_ticket_messages"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_attachments")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_ticket_attachments_row_uid")),
    )
    with op.batch_alter_table("ticket_attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_attachments_blob_id"), ["blob_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_attachments_message_id"), ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_attachments_message_id"))
        batch_op.drop_index(batch_op.f("ix_ticket_attachments_blob_id"))

    op.drop_table("ticket_attachments")
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_messages_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_ticket_messages_sender_email_bidx"))
        batch_op.drop_index(batch_op.f("ix_ticket_messages_raw_blob_id"))

    op.drop_table("ticket_messages")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_requester_email_bidx"))
        batch_op.drop_index("ix_tickets_queue_status")
        batch_op.drop_index("ix_tickets_queue_assignee")
        batch_op.drop_index("ix_tickets_queue_all")
        batch_op.drop_index(batch_op.f("ix_tickets_assignee_id"))

    op.drop_table("tickets")
    with op.batch_alter_table("mail_quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_quarantine_state_id")
        batch_op.drop_index("ix_mail_quarantine_sha256")

    op.drop_table("mail_quarantine")
    op.drop_table("blob_chunks")
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blobs_key_owner"))

    op.drop_table("blobs")
