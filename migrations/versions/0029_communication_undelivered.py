"""A communication that did not reach its controller is marked on its ticket until staff pass it on (issue 11 item 4)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02

`tickets.communication_undelivered_at`: when the forward of a complaint, an
authority's letter or a lawyer's notice to the controller (Pexgle §11.2) was
first given up (bounced, failed or refused); NULL again once a privacy officer
records how it was passed on another way, or a later forward is delivered. The
escalation banner counts the tickets that have it, on every staff page, so the
index holds only those (a partial index: a handful of rows at any queue size).
Tickets of earlier undelivered communications are not marked (their notes say so).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "communication_undelivered_at IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("communication_undelivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_tickets_communication_undelivered",
            ["communication_undelivered_at"],
            unique=False,
            sqlite_where=sa.text(WHERE),
            postgresql_where=sa.text(WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_communication_undelivered", sqlite_where=sa.text(WHERE), postgresql_where=sa.text(WHERE))
        batch_op.drop_column("communication_undelivered_at")
