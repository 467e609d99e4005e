"""Indexes on four foreign keys that deletions check (found by the retention benchmark, issue 14 item 6)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01

Deleting a message makes the database look for requests and instructions that name it (`ON DELETE SET NULL` on
`dsrs.message_pk` and `dsr_instructions.message_pk`), and deleting a blob looks in `mail_quarantine.raw_blob_id`
and `subject_data_exports.blob_id`. Without an index on the referencing column each of those looks is a scan of
the whole table, per deleted row: a retention run or an erasure on a desk with many requests or quarantined
messages would pay it. Postgres and SQLite alike.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_dsrs_message_pk", "dsrs", "message_pk"),
    ("ix_dsr_instructions_message_pk", "dsr_instructions", "message_pk"),
    ("ix_mail_quarantine_raw_blob_id", "mail_quarantine", "raw_blob_id"),
    ("ix_subject_data_exports_blob_id", "subject_data_exports", "blob_id"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for name, table, _column in reversed(INDEXES):
        op.drop_index(name, table_name=table)
