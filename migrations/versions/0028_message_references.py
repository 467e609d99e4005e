"""The reverse index of the Message-IDs each stored message names (issue 11 item 3)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01

A subject's follow-up can reach the desk before the original it answers (MTAs
reorder mail): the follow-up opens the ticket (and, to the privacy address, the
request). `message_references` holds, for each inbound message stored from now
on, the keyed hash (app.crypto.message_ids) of each Message-ID in its
In-Reply-To and References, so the original, arriving later, finds the ticket
that names it and joins it instead of opening a second ticket and request.
Messages stored before this revision are not indexed (their References are
kept only inside the encrypted raw original).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_references",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["ticket_messages.id"], name=op.f("fk_message_references_message_id_ticket_messages"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_references")),
    )
    op.create_index(op.f("ix_message_references_digest"), "message_references", ["digest"], unique=False)
    op.create_index(op.f("ix_message_references_message_id"), "message_references", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_message_references_message_id"), table_name="message_references")
    op.drop_index(op.f("ix_message_references_digest"), table_name="message_references")
    op.drop_table("message_references")
