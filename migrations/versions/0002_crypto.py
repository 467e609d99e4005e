"""security core: data keys, encrypted contact addresses

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Adds `data_keys` (wrapped per-controller and platform keys) and moves
`controller_contacts.email` onto an encrypted column with a blind index
(WECO §3.1(c), §9.1(a)). Encrypting needs the master secret, which a migration
does not have, so the upgrade refuses a table that already holds addresses
(and the downgrade one that holds ciphertext) instead of losing them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_if_rows(direction: str) -> None:
    count = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM controller_contacts")).scalar()
    if count:
        raise RuntimeError(
            f"migration 0002 {direction}: controller_contacts holds {count} rows; export the controllers "
            "(controllers list --json), remove them, migrate, and create them again"
        )


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("controller_id", sa.Integer(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("master_version", sa.Integer(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped_index_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('active', 'retired', 'shredded')", name=op.f("ck_data_keys_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        sa.UniqueConstraint("owner", "generation", name="uq_data_keys_owner_generation"),
    )
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_keys_controller_id"), ["controller_id"], unique=False)
        batch_op.create_index(
            "ix_data_keys_one_active",
            ["owner"],
            unique=True,
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )

    _refuse_if_rows("upgrade")
    with op.batch_alter_table("controller_contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("row_uid", sa.String(length=32), nullable=False))
        batch_op.add_column(sa.Column("email_ct", sa.LargeBinary(), nullable=False))
        batch_op.add_column(sa.Column("email_bidx", sa.LargeBinary(length=16), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_controller_contacts_row_uid"), ["row_uid"])
        batch_op.create_index(batch_op.f("ix_controller_contacts_email_bidx"), ["email_bidx"], unique=False)
        batch_op.drop_column("email")


def downgrade() -> None:
    _refuse_if_rows("downgrade")
    with op.batch_alter_table("controller_contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=False))
        batch_op.drop_index(batch_op.f("ix_controller_contacts_email_bidx"))
        batch_op.drop_constraint(batch_op.f("uq_controller_contacts_row_uid"), type_="unique")
        batch_op.drop_column("email_bidx")
        batch_op.drop_column("email_ct")
        batch_op.drop_column("row_uid")

    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_data_keys_one_active", sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))
        batch_op.drop_index(batch_op.f("ix_data_keys_controller_id"))
    op.drop_table("data_keys")
