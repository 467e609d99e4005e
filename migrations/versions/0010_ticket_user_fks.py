"""tickets: assignee and message author reference staff users

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

0006 was written before the users table existed (0004 was a placeholder then);
the columns were plain integers. A deleted user leaves the ticket unassigned
and the message without an author, never a dangling id.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f("fk_tickets_assignee_id_users"), "users", ["assignee_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f("fk_ticket_messages_author_id_users"), "users", ["author_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_ticket_messages_author_id_users"), type_="foreignkey")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_assignee_id_users"), type_="foreignkey")
