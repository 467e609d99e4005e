"""staff onboarding: one-time passwords changed at first login, single-use MFA enrolment codes (issue 12 items 6, 7)

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

`password_must_change`: the password was set by someone else (creation, an
admin's reset, the demo); the user must replace it before anything else.
Existing accounts are not forced (their passwords were theirs to choose).
`enrolment_code_hash` / `enrolment_code_expires_at`: SHA-256 of the single-use
code an admin hands over so that only its holder, not just whoever has the
password, can enrol a TOTP. An account waiting for enrolment after the upgrade
needs a code from an admin (`users enrolment-code WHO` or the staff page).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_must_change", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("enrolment_code_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("enrolment_code_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("enrolment_code_expires_at")
        batch_op.drop_column("enrolment_code_hash")
        batch_op.drop_column("password_must_change")
