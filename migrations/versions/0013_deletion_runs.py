"""deletion engine: one table of runs (authority, scope, action, state, report); DSR erasures and rectifications link to it

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

Every deletion is a run of the one deletion engine (issue 10 item 3):
`deletion_runs` holds its authority (a confirmed instruction, a retention
policy, a termination, a hold release, an operator command), its scope (a
subject within a controller, a set of tickets, a controller), its action
(delete, anonymise, redact, rectify), its encrypted parameters while it works
and its report (counts per store, failed, kept, review).

`subject_data_runs` stays the request's record of each action taken under an
instruction (export, erase, rectify); an erasure or rectification now points
at the engine's run (`deletion_run_id`). Existing finished erase/rectify
rows get an engine run each (state, dates and report carried over, the flat
counts grouped by the store they were counted in; their parameters were
already cleared). An unfinished erase/rectify run cannot be carried over (its
parameters are encrypted bound to the old table): the upgrade stops and
names it; finish it first with `flask subject-data resume ID` on the
previous release. The downgrade likewise stops while an engine run is
unfinished; it drops the engine's table (the DSR rows keep their own report;
runs of other authorities are then only in the audit log).
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Where each count of the old flat report was counted (the engine reports per store).
_STORE_OF = {
    "messages": "ticket_messages",
    "raw_destroyed": "blobs",
    "attachments_removed": "ticket_attachments",
    "attachments_not_rectifiable": "ticket_attachments",
    "tickets": "tickets",
    "outbox": "outbox_emails",
    "outbox_cancelled": "outbox_emails",
    "quarantine_deleted": "mail_quarantine",
    "instructions": "dsr_instructions",
    "dsrs": "dsrs",
    "dsrs_kept_for_other_controllers": "dsrs",
    "restrictions": "subject_restrictions",
}

_runs = sa.table(
    "subject_data_runs",
    sa.column("id", sa.Integer),
    sa.column("controller_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("state", sa.String),
    sa.column("instruction_id", sa.Integer),
    sa.column("requested_by", sa.Integer),
    sa.column("key_owner", sa.Integer),
    sa.column("report", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("deletion_run_id", sa.Integer),
)
_deletion_runs = sa.table(
    "deletion_runs",
    sa.column("id", sa.Integer),
    sa.column("authority_kind", sa.String),
    sa.column("authority_id", sa.Integer),
    sa.column("scope_kind", sa.String),
    sa.column("controller_id", sa.Integer),
    sa.column("action", sa.String),
    sa.column("state", sa.String),
    sa.column("requested_by", sa.String),
    sa.column("key_owner", sa.Integer),
    sa.column("params_ct", sa.LargeBinary),
    sa.column("report", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("row_uid", sa.String),
)


def _engine_report(old: dict[str, Any]) -> dict[str, Any]:
    stores: dict[str, dict[str, int]] = {}
    for what, n in (old.get("changed") or {}).items():
        stores.setdefault(_STORE_OF.get(what, "other"), {})[what] = int(n)
    return {"planned": dict(old.get("planned") or {}), "stores": stores, "failed": list(old.get("failed") or []), "kept": [], "review": []}


def upgrade() -> None:
    conn = op.get_bind()
    unfinished = [r.id for r in conn.execute(sa.select(_runs.c.id).where(_runs.c.kind.in_(("erase", "rectify")), _runs.c.state.in_(("queued", "running"))))]
    if unfinished:
        raise RuntimeError(
            "unfinished erasure/rectification run(s) "
            + ", ".join(map(str, unfinished))
            + ": finish them with `flask subject-data resume ID` on the previous release, then upgrade"
        )
    op.create_table(
        "deletion_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_kind", sa.String(length=20), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=True),
        sa.Column("scope_kind", sa.String(length=12), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("params_ct", sa.LargeBinary(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_uid", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "authority_kind IN ('instruction', 'retention_policy', 'termination', 'hold_release', 'operator')", name=op.f("ck_deletion_runs_authority_kind")
        ),
        sa.CheckConstraint("scope_kind IN ('subject', 'tickets', 'controller')", name=op.f("ck_deletion_runs_scope_kind")),
        sa.CheckConstraint("action IN ('delete', 'anonymise', 'redact', 'rectify')", name=op.f("ck_deletion_runs_action")),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_deletion_runs_state")),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_deletion_runs_controller_id_controllers"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_runs")),
        sa.UniqueConstraint("row_uid", name=op.f("uq_deletion_runs_row_uid")),
    )
    with op.batch_alter_table("deletion_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deletion_runs_controller_id"), ["controller_id"], unique=False)
        batch_op.create_index("ix_deletion_runs_state_updated_at", ["state", "updated_at"], unique=False)
        batch_op.create_index("ix_deletion_runs_authority", ["authority_kind", "authority_id"], unique=False)
    with op.batch_alter_table("subject_data_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deletion_run_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_subject_data_runs_deletion_run_id"), ["deletion_run_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_subject_data_runs_deletion_run_id_deletion_runs"), "deletion_runs", ["deletion_run_id"], ["id"], ondelete="SET NULL"
        )
    rows = conn.execute(sa.select(_runs).where(_runs.c.kind.in_(("erase", "rectify"))).order_by(_runs.c.id)).all()
    for row in rows:
        new_id = conn.execute(
            _deletion_runs.insert()
            .values(
                authority_kind="instruction",
                authority_id=row.instruction_id,
                scope_kind="subject",
                controller_id=row.controller_id,
                action="redact" if row.kind == "erase" else "rectify",
                state=row.state,
                requested_by=f"staff:{row.requested_by}" if row.requested_by is not None else "system:subject data",
                key_owner=row.key_owner,
                params_ct=None,
                report=_engine_report(row.report or {}),
                created_at=row.created_at,
                updated_at=row.updated_at,
                finished_at=row.finished_at,
                row_uid=uuid.uuid4().hex,
            )
            .returning(_deletion_runs.c.id)
        ).scalar_one()
        conn.execute(_runs.update().where(_runs.c.id == row.id).values(deletion_run_id=new_id))


def downgrade() -> None:
    conn = op.get_bind()
    unfinished = [r.id for r in conn.execute(sa.select(_deletion_runs.c.id).where(_deletion_runs.c.state.in_(("queued", "running"))))]
    if unfinished:
        raise RuntimeError("unfinished deletion run(s) " + ", ".join(map(str, unfinished)) + ": let them finish, then downgrade")
    with op.batch_alter_table("subject_data_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_subject_data_runs_deletion_run_id_deletion_runs"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_subject_data_runs_deletion_run_id"))
        batch_op.drop_column("deletion_run_id")
    with op.batch_alter_table("deletion_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_deletion_runs_authority")
        batch_op.drop_index("ix_deletion_runs_state_updated_at")
        batch_op.drop_index(batch_op.f("ix_deletion_runs_controller_id"))
    op.drop_table("deletion_runs")
