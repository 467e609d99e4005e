"""erasure of everything of a subject (issue 13): the identifier index of messages, erased subjects, export links

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30

- `message_identifiers`: the blind index of the identifiers each message
  carries (addresses in From/To/Cc and in its texts, phone numbers in E.164,
  IBANs, the sender's normalised name), so an erasure finds every message that
  mentions the subject by an indexed query (app.tickets.identifiers). Messages
  stored before this revision have no rows: they are indexed when written
  again; until then an erasure finds them by sender and requester as before.
- `subject_erasures`: a subject erased at a controller (blind index of each
  address): new mail from them is flagged to the officer.
- `subject_data_export_links`: the download links sent to a controller's DSR
  contacts (SHA-256 of the secret only), valid 7 days, used once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_identifiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("key_owner", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["ticket_messages.id"], name=op.f("fk_message_identifiers_message_id_ticket_messages"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_identifiers")),
    )
    op.create_index("ix_message_identifiers_lookup", "message_identifiers", ["key_owner", "digest"], unique=False)
    op.create_index(op.f("ix_message_identifiers_message_id"), "message_identifiers", ["message_id"], unique=False)
    op.create_table(
        "subject_erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=True),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("email_bidx", sa.LargeBinary(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["controller_id"], ["controllers.id"], name=op.f("fk_subject_erasures_controller_id_controllers"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_subject_erasures_dsr_id_dsrs"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_erasures")),
    )
    op.create_index("ix_subject_erasures_controller_id_email_bidx", "subject_erasures", ["controller_id", "email_bidx"], unique=False)
    op.create_index(op.f("ix_subject_erasures_dsr_id"), "subject_erasures", ["dsr_id"], unique=False)
    op.create_table(
        "subject_data_export_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.Integer(), nullable=False),
        sa.Column("dsr_id", sa.Integer(), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["controller_id"], ["controllers.id"], name=op.f("fk_subject_data_export_links_controller_id_controllers"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["dsr_id"], ["dsrs.id"], name=op.f("fk_subject_data_export_links_dsr_id_dsrs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["export_id"], ["subject_data_exports.id"], name=op.f("fk_subject_data_export_links_export_id_subject_data_exports"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_data_export_links")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_subject_data_export_links_secret_sha256")),
    )
    op.create_index(op.f("ix_subject_data_export_links_dsr_id"), "subject_data_export_links", ["dsr_id"], unique=False)
    op.create_index(op.f("ix_subject_data_export_links_export_id"), "subject_data_export_links", ["export_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_subject_data_export_links_export_id"), table_name="subject_data_export_links")
    op.drop_index(op.f("ix_subject_data_export_links_dsr_id"), table_name="subject_data_export_links")
    op.drop_table("subject_data_export_links")
    op.drop_index(op.f("ix_subject_erasures_dsr_id"), table_name="subject_erasures")
    op.drop_index("ix_subject_erasures_controller_id_email_bidx", table_name="subject_erasures")
    op.drop_table("subject_erasures")
    op.drop_index(op.f("ix_message_identifiers_message_id"), table_name="message_identifiers")
    op.drop_index("ix_message_identifiers_lookup", table_name="message_identifiers")
    op.drop_table("message_identifiers")
