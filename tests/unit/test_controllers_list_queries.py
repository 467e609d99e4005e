"""The controllers list costs the same few queries however many rows a page shows (no N+1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.controllers.service import list_controllers
from app.crypto.keys import forget_keys
from tests.factories import make_controller


@contextmanager
def statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements run on the session's connection inside the block."""
    seen: list[str] = []
    conn = session.connection()

    def record(_conn: object, _cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", record)


def _read_page(session: Session, size: int) -> list[tuple[str, list[str], list[str]]]:
    # What the list page shows: each row's name, decrypted DSR contacts and domains.
    rows = list_controllers(session, limit=size)
    return [(c.name, c.contact_emails("dsr"), [d.domain for d in c.domains]) for c in rows]


def test_a_page_of_controllers_with_encrypted_contacts_takes_a_fixed_number_of_queries(session: Session) -> None:
    for n in range(30):
        make_controller(session, name=f"Paged {n:02d} AG", dsr_contacts=[f"dpo{n}@paged{n}.example"], breach_contacts=[f"sec{n}@paged{n}.example"])
    counts = {}
    for size in (3, 30):
        # A fresh request: nothing loaded, no unwrapped key cached.
        session.expunge_all()
        forget_keys(session)
        with statements(session) as seen:
            page = _read_page(session, size)
        assert len(page) == size
        assert all(contacts and "@" in contacts[0] for _name, contacts, _domains in page)
        counts[size] = len(seen)
    # controllers + contacts + domains + identifiers + the page's data keys
    assert counts[30] == counts[3] <= 5
