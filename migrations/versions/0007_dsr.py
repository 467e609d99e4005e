"""data-subject requests: requests, controllers concerned (forwards), instructions, standing instructions, history, suggestions

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21

Subject identity and texts are ciphertext from app.crypto.fields (bound to
row_uid); blind indexes 16 bytes. (dsr_id, controller_id) is unique on
dsr_forwards: a request is forwarded once per controller.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dsr_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('open', 'accepted', 'dismissed')", name=op.f("ck_dsr_suggestions_state")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_dsr_suggestions_ticket_id_tickets"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsr_suggestions")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_dsr_suggestions_ticket_id")),
    )
    op.create_table(
        "dsrs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=24), nullable=True),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("message_pk", sa.Integer(), nullable=True),
        sa.Column("subject_name_ct", sa.LargeBinary(), nullable=True),
        sa.Column("subject_email_ct", sa.LargeBinary(), nullable=True),
        sa.Column("subject_email_bidx", sa.LargeBinary(length=16), nullable=True),
        sa.Column("subject_identifiers_ct", sa.LargeBinary(), nullable=True),
        sa.Column("request_text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forward_seconds", sa.Integer(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breach_reason_ct", sa.LargeBinary(), nullable=True),
        sa.Column("breach_reason_missing", sa.Boolean(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint("source IN ('privacy_address', 'staff')", name=op.f("ck_dsrs_source")),
        sa.CheckConstraint("state IN ('triage', 'awaiting_forward', 'forwarded', 'instructed', 'closed')", name=op.f("ck_dsrs_state")),
        sa.ForeignKeyConstraint(["message_pk"], ["ticket_messages.id"], name=op.f("fk_dsrs_message_pk_ticket_messages"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_dsrs_ticket_id_tickets"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsrs")),
        sa.UniqueConstraint("reference", name=op.f("uq_dsrs_reference")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_dsrs_row_uid")),
    )
    with op.batch_alter_table("dsrs", schema=None) as batch_op:
        batch_op.create_index("ix_dsrs_is_open_due_at", ["is_open", "due_at"], unique=False)
        batch_op.create_index("ix_dsrs_received_at_forward_seconds", ["received_at", "forward_seconds"], unique=False)
        batch_op.create_index(batch_op.f("ix_dsrs_breach_reason_missing"), ["breach_reason_missing"], unique=False)
        batch_op.create_index("ix_dsrs_state_escalated_at_due_at", ["state", "escalated_at", "due_at"], unique=False)
        batch_op.create_index("ix_dsrs_state_sla_breached_at_due_at", ["state", "sla_breached_at", "due_at"], unique=False)
        batch_op.create_index("ix_dsrs_state_due_at", ["state", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_dsrs_subject_email_bidx"), ["subject_email_bidx"], unique=False)
        batch_op.create_index(batch_op.f("ix_dsrs_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "dsr_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("by_label", sa.String(length=100), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_dsr_events_dsr_id_dsrs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsr_events")),
    )
    with op.batch_alter_table("dsr_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dsr_events_dsr_id"), ["dsr_id"], unique=False)

    op.create_table(
        "dsr_forwards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=250), nullable=True),
        sa.Column("outbox_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'forwarded')", name=op.f("ck_dsr_forwards_state")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_dsr_forwards_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_dsr_forwards_dsr_id_dsrs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsr_forwards")),
        sa.UniqueConstraint("dsr_id", "controller_id", name="uq_dsr_forwards_dsr_id_controller_id"),
    )
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dsr_forwards_controller_id"), ["controller_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dsr_forwards_message_id"), ["message_id"], unique=False)
        batch_op.create_index("ix_dsr_forwards_state_created_at", ["state", "created_at"], unique=False)

    op.create_table(
        "dsr_instructions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("auth_verdict", sa.String(length=200), nullable=True),
        sa.Column("reply_text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("sender_email_ct", sa.LargeBinary(), nullable=True),
        sa.Column("sender_email_bidx", sa.LargeBinary(length=16), nullable=True),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("response_text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("flag_reason_ct", sa.LargeBinary(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('respond', 'provide_data', 'erase', 'rectify', 'restrict', 'no_action')",
            name=op.f("ck_dsr_instructions_decision"),
        ),
        sa.CheckConstraint("state IN ('pending', 'unverified', 'confirmed', 'flagged')", name=op.f("ck_dsr_instructions_state")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_dsr_instructions_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_dsr_instructions_dsr_id_dsrs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_pk"], ["ticket_messages.id"], name=op.f("fk_dsr_instructions_message_pk_ticket_messages"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsr_instructions")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_dsr_instructions_row_uid")),
    )
    with op.batch_alter_table("dsr_instructions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dsr_instructions_controller_id"), ["controller_id"], unique=False)
        batch_op.create_index("ix_dsr_instructions_dsr_id_state", ["dsr_id", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_dsr_instructions_sender_email_bidx"), ["sender_email_bidx"], unique=False)

    op.create_table(
        "dsr_standing_instructions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("template_ct", sa.LargeBinary(), nullable=False),
        sa.Column("source_instruction_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_dsr_standing_instructions_controller_id_controllers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["source_instruction_id"],
            ["dsr_instructions.id"],
            name=op.f("fk_dsr_standing_instructions_source_instruction_id_dsr_instructions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsr_standing_instructions")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_dsr_standing_instructions_row_uid")),
    )
    with op.batch_alter_table("dsr_standing_instructions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dsr_standing_instructions_controller_id"), ["controller_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dsr_standing_instructions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsr_standing_instructions_controller_id"))

    op.drop_table("dsr_standing_instructions")
    with op.batch_alter_table("dsr_instructions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsr_instructions_sender_email_bidx"))
        batch_op.drop_index("ix_dsr_instructions_dsr_id_state")
        batch_op.drop_index(batch_op.f("ix_dsr_instructions_controller_id"))

    op.drop_table("dsr_instructions")
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.drop_index("ix_dsr_forwards_state_created_at")
        batch_op.drop_index(batch_op.f("ix_dsr_forwards_message_id"))
        batch_op.drop_index(batch_op.f("ix_dsr_forwards_controller_id"))

    op.drop_table("dsr_forwards")
    with op.batch_alter_table("dsr_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsr_events_dsr_id"))

    op.drop_table("dsr_events")
    with op.batch_alter_table("dsrs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsrs_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_dsrs_subject_email_bidx"))
        batch_op.drop_index("ix_dsrs_state_due_at")
        batch_op.drop_index("ix_dsrs_state_sla_breached_at_due_at")
        batch_op.drop_index("ix_dsrs_state_escalated_at_due_at")
        batch_op.drop_index(batch_op.f("ix_dsrs_breach_reason_missing"))
        batch_op.drop_index("ix_dsrs_received_at_forward_seconds")
        batch_op.drop_index("ix_dsrs_is_open_due_at")

    op.drop_table("dsrs")
    op.drop_table("dsr_suggestions")
