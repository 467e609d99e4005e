"""A new request's reference is set by the database on Postgres, in the INSERT (issue 11 item 7)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01

`DSR-<year>-<id, at least 6 digits>` needs the row id, so the desk inserted
the request and then updated its reference: two statements for every new
request. On Postgres a BEFORE INSERT trigger fills a missing reference from
the id the INSERT just drew and the year of `received_at` (UTC), the same text
as `app.dsr.requests.format_reference` for a UTC time, and the INSERT returns
it; the desk still compares it with its own and writes its own when they
differ. A reference given explicitly is kept. SQLite keeps the update, as for
tickets (migration 0024).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION dsrs_reference() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.reference IS NULL THEN
                NEW.reference := 'DSR-' || lpad(extract(year FROM NEW.received_at AT TIME ZONE 'UTC')::int::text, 4, '0') || '-'
                    || CASE WHEN NEW.id >= 100000 THEN NEW.id::text ELSE lpad(NEW.id::text, 6, '0') END;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute("CREATE TRIGGER dsrs_reference BEFORE INSERT ON dsrs FOR EACH ROW EXECUTE FUNCTION dsrs_reference()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS dsrs_reference ON dsrs")
    op.execute("DROP FUNCTION IF EXISTS dsrs_reference()")
