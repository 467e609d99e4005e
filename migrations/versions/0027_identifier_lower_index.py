"""Controller identifiers are found case-insensitively through an index on Postgres (issue 11 item 7)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01

Routing a new message compares `lower(identifier)` with the identifiers its
text could contain (app.mail.threading.route_new). Without an index on that
expression every message scanned every controller's identifiers: 0.3 ms a
message at 5 controllers, 1 ms at 1,000 (bench/ingest.py, per statement).
Postgres only: SQLite cannot reflect an expression index, and the embedded
desk has few controllers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_controller_identifiers_identifier_lower", "controller_identifiers", [sa.text("lower(identifier)")])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_controller_identifiers_identifier_lower", table_name="controller_identifiers")
