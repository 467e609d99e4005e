"""retention: policy versions, legal holds, the ledger of runs (issue 14)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30

New tables only. Policies start empty: the shipped defaults (app/retention/periods.py) apply until a run
writes them as version 1 or an administrator changes one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('delete', 'anonymise')", name=op.f("ck_retention_policies_action")),
        sa.CheckConstraint("period_days > 0", name=op.f("ck_retention_policies_period_days")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_retention_policies_controller_id_controllers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_policies")),
        sa.UniqueConstraint("category", "controller_id", "version", name="uq_retention_policies_version"),
    )
    op.create_index("ix_retention_policies_category", "retention_policies", ["category", "controller_id", "version"], unique=False)
    op.create_table(
        "retention_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("subject_email_ct", sa.LargeBinary(), nullable=True),
        sa.Column("subject_email_bidx", sa.LargeBinary(length=16), nullable=True),
        sa.Column("basis", sa.String(length=20), nullable=False),
        sa.Column("basis_text", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(length=100), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=100), nullable=True),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "basis IN ('accounting', 'aml_kyc', 'clickwrap_log', 'litigation', 'regulator_request', 'other')", name=op.f("ck_retention_holds_basis")
        ),
        sa.CheckConstraint("kind IN ('controller', 'ticket', 'subject')", name=op.f("ck_retention_holds_kind")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_retention_holds_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_retention_holds_ticket_id_tickets"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_holds")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_retention_holds_row_uid")),
    )
    with op.batch_alter_table("retention_holds", schema=None) as batch_op:
        batch_op.create_index("ix_retention_holds_active", ["lifted_at", "controller_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_retention_holds_subject_email_bidx"), ["subject_email_bidx"], unique=False)
        batch_op.create_index(batch_op.f("ix_retention_holds_ticket_id"), ["ticket_id"], unique=False)
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("only_controller_id", sa.Integer(), nullable=True),
        sa.Column("only_category", sa.String(length=40), nullable=True),
        sa.Column("policy_versions", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('running', 'done', 'stopped', 'failed')", name=op.f("ck_retention_runs_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_runs")),
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    with op.batch_alter_table("retention_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_holds_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_retention_holds_subject_email_bidx"))
        batch_op.drop_index("ix_retention_holds_active")
    op.drop_table("retention_holds")
    op.drop_index("ix_retention_policies_category", table_name="retention_policies")
    op.drop_table("retention_policies")
