"""subject data: execution runs, stored exports, single-use download tokens, restrictions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21

A run's parameters are ciphertext (app.crypto.fields, bound to row_uid),
cleared when the run finishes; exports are encrypted blobs; a download
token's jti is the primary key, consumed by one conditional UPDATE.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "download_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_download_tokens")),
    )
    with op.batch_alter_table("download_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_download_tokens_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "subject_data_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("instruction_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("params_ct", sa.LargeBinary(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint("kind IN ('export', 'erase', 'rectify')", name=op.f("ck_subject_data_runs_kind")),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_subject_data_runs_state")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_subject_data_runs_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_subject_data_runs_dsr_id_dsrs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_data_runs")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_subject_data_runs_row_uid")),
    )
    with op.batch_alter_table("subject_data_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subject_data_runs_controller_id"), ["controller_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subject_data_runs_dsr_id"), ["dsr_id"], unique=False)
        batch_op.create_index("ix_subject_data_runs_state_updated_at", ["state", "updated_at"], unique=False)

    op.create_table(
        "subject_restrictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=True),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("email_bidx", sa.LargeBinary(length=16), nullable=True),
        sa.Column("instruction_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('restriction', 'objection')", name=op.f("ck_subject_restrictions_kind")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_subject_restrictions_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_subject_restrictions_dsr_id_dsrs"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_restrictions")),
    )
    with op.batch_alter_table("subject_restrictions", schema=None) as batch_op:
        batch_op.create_index("ix_subject_restrictions_controller_id_email_bidx", ["controller_id", "email_bidx"], unique=False)
        batch_op.create_index(batch_op.f("ix_subject_restrictions_dsr_id"), ["dsr_id"], unique=False)

    op.create_table(
        "subject_data_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=4), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("format IN ('json', 'pdf')", name=op.f("ck_subject_data_exports_format")),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_subject_data_exports_blob_id_blobs"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_subject_data_exports_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_subject_data_exports_dsr_id_dsrs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["subject_data_runs.id"], name=op.f("fk_subject_data_exports_run_id_subject_data_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_data_exports")),
    )
    with op.batch_alter_table("subject_data_exports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subject_data_exports_dsr_id"), ["dsr_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subject_data_exports_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_subject_data_exports_run_id"), ["run_id"], unique=False)

    op.create_table(
        "subject_restricted_tickets",
        sa.Column("restriction_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["restriction_id"], ["subject_restrictions.id"], name=op.f("fk_subject_restricted_tickets_restriction_id_subject_restrictions"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_subject_restricted_tickets_ticket_id_tickets"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("restriction_id", "ticket_id", name=op.f("pk_subject_restricted_tickets")),
    )
    with op.batch_alter_table("subject_restricted_tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subject_restricted_tickets_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subject_restricted_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_restricted_tickets_ticket_id"))

    op.drop_table("subject_restricted_tickets")
    with op.batch_alter_table("subject_data_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_data_exports_run_id"))
        batch_op.drop_index(batch_op.f("ix_subject_data_exports_expires_at"))
        batch_op.drop_index(batch_op.f("ix_subject_data_exports_dsr_id"))

    op.drop_table("subject_data_exports")
    with op.batch_alter_table("subject_restrictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_restrictions_dsr_id"))
        batch_op.drop_index("ix_subject_restrictions_controller_id_email_bidx")

    op.drop_table("subject_restrictions")
    with op.batch_alter_table("subject_data_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_subject_data_runs_state_updated_at")
        batch_op.drop_index(batch_op.f("ix_subject_data_runs_dsr_id"))
        batch_op.drop_index(batch_op.f("ix_subject_data_runs_controller_id"))

    op.drop_table("subject_data_runs")
    with op.batch_alter_table("download_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_tokens_expires_at"))

    op.drop_table("download_tokens")
