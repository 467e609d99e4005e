"""dsrs: a DSR that passes its 24-hour deadline unforwarded has *missed* it (was "breached")

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

"Breach" now means only a personal-data breach (the breach register, issue 10
item 6). Columns renamed, data kept:

    sla_breached_at        -> missed_at
    breach_reason_ct       -> missed_reason_ct   (values keep "breach_reason_ct" in
                                                  their associated data: a migration
                                                  has no keys to re-encrypt them; the
                                                  model's field says bound_as=)
    breach_reason_missing  -> missed_reason_missing

and their two indexes. The request history (dsr_events) shows the new words
for old lines too: codes 'sla_breached' -> 'missed', 'breach_reason' ->
'missed_reason'. The audit log is append-only and keeps the old action codes
on old rows (dsr.sla_breached, dsr.breach_reason); new rows use dsr.missed and
dsr.missed_reason.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (old name, new name)
COLUMNS = (
    ("sla_breached_at", "missed_at"),
    ("breach_reason_ct", "missed_reason_ct"),
    ("breach_reason_missing", "missed_reason_missing"),
)
EVENT_CODES = (("sla_breached", "missed"), ("breach_reason", "missed_reason"))


def _rename(*, old_at: str, new_at: str, old_missing: str, new_missing: str, columns: Sequence[tuple[str, str]]) -> None:
    with op.batch_alter_table("dsrs", schema=None) as batch_op:
        batch_op.drop_index(f"ix_dsrs_state_{old_at}_due_at")
        batch_op.drop_index(batch_op.f(f"ix_dsrs_{old_missing}"))
    # In place (ALTER TABLE ... RENAME COLUMN, SQLite >= 3.25 and Postgres), never by copying the table: on SQLite
    # the copy drops the old table with foreign keys on, and that deletes every row of dsr_forwards, dsr_events and
    # dsr_instructions by their ON DELETE CASCADE.
    with op.batch_alter_table("dsrs", schema=None, recreate="never") as batch_op:
        for old, new in columns:
            batch_op.alter_column(old, new_column_name=new)
    with op.batch_alter_table("dsrs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_dsrs_{new_missing}"), [new_missing], unique=False)
        batch_op.create_index(f"ix_dsrs_state_{new_at}_due_at", ["state", new_at, "due_at"], unique=False)


def upgrade() -> None:
    _rename(old_at="sla_breached_at", new_at="missed_at", old_missing="breach_reason_missing", new_missing="missed_reason_missing", columns=COLUMNS)
    for old, new in EVENT_CODES:
        op.execute(f"UPDATE dsr_events SET code = '{new}' WHERE code = '{old}'")


def downgrade() -> None:
    for old, new in EVENT_CODES:
        op.execute(f"UPDATE dsr_events SET code = '{old}' WHERE code = '{new}'")
    _rename(
        old_at="missed_at",
        new_at="sla_breached_at",
        old_missing="missed_reason_missing",
        new_missing="breach_reason_missing",
        columns=[(new, old) for old, new in COLUMNS],
    )
