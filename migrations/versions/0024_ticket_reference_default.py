"""A new ticket's reference is set by the database on Postgres, in the INSERT (issue 11 item 7)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01

`T-<year>-<id, at least 6 digits>` needs the row id, so the desk inserted the
ticket and then updated its reference: two statements for every new ticket.
On Postgres a BEFORE INSERT trigger fills a missing reference from the id the
INSERT just drew and the year of `created_at` (UTC), the same text as
`app.tickets.lookup.format_reference`, and the INSERT returns it. A reference
given explicitly is kept. SQLite keeps the update (its RETURNING would not see
what an AFTER trigger wrote), so nothing changes there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION tickets_reference() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.reference IS NULL THEN
                NEW.reference := 'T-' || lpad(extract(year FROM NEW.created_at AT TIME ZONE 'UTC')::int::text, 4, '0') || '-'
                    || CASE WHEN NEW.id >= 100000 THEN NEW.id::text ELSE lpad(NEW.id::text, 6, '0') END;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute("CREATE TRIGGER tickets_reference BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION tickets_reference()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS tickets_reference ON tickets")
    op.execute("DROP FUNCTION IF EXISTS tickets_reference()")
