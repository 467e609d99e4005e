"""A new ticket's reference, T-<year>-<id>: on Postgres set in the INSERT by the database (migration 0024), elsewhere after it."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.lookup import format_reference
from app.tickets.models import Ticket

BY = Principal.system("tests")
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)


def test_a_new_ticket_has_its_reference_from_its_year_and_id(session: Session) -> None:
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(" ".join(a[2].split()[:3])))
    ticket = tickets.create_ticket(session, controller_id=None, requester_name="R", requester_email="r@example.org", subject="S", by=BY, now=NOW)
    event.remove(session.connection(), "before_cursor_execute", listen)
    assert ticket.reference == format_reference(NOW, ticket.id) == f"T-2026-{ticket.id:06d}"
    session.expire(ticket)
    assert session.scalar(select(Ticket.reference).where(Ticket.id == ticket.id)) == format_reference(NOW, ticket.id)
    updates = [s for s in seen if s.startswith("UPDATE tickets")]
    # Postgres: the INSERT returned it (one statement); SQLite updates the row once it knows the id.
    assert updates == ([] if session.get_bind().dialect.name == "postgresql" else ["UPDATE tickets SET"])


def test_the_database_writes_the_same_reference_as_the_desk_for_any_id(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite has no trigger: create_ticket writes it (the test above)
    for ticket_id in (7, 99_999, 123_456, 1_234_567):
        at = NOW.replace(year=2031, month=12, day=31, hour=23, minute=59) if ticket_id == 7 else NOW
        values = {
            "id": ticket_id,
            "key_owner": 0,
            "status": "new",
            "reply_token": secrets.token_hex(10),
            "created_at": at,
            "updated_at": at,
            "row_uid": secrets.token_hex(16),
        }
        made = session.execute(insert(Ticket).values(**values).returning(Ticket.reference)).scalar_one()
        assert made == format_reference(at, ticket_id)
    explicit = {**values, "id": 42, "reference": "T-1999-000042", "reply_token": "x" * 20, "row_uid": "y" * 32}
    kept = session.execute(insert(Ticket).values(**explicit).returning(Ticket.reference))
    assert kept.scalar_one() == "T-1999-000042"  # a reference given explicitly is kept
