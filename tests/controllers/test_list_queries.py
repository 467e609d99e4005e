"""The controllers list costs the same few queries however many rows a page shows (no N+1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.controllers.service import UNREADABLE, count_controllers, list_controllers, list_page
from app.crypto.keys import forget_keys
from app.db import utcnow
from app.keys.service import shred_controller_keys
from tests.factories import TEST_PRINCIPAL, make_controller


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


def test_the_list_page_takes_three_statements_and_shows_what_an_admin_reads(session: Session) -> None:
    # Given 30 controllers with two DSR contacts, a breach contact and two domains each
    for n in range(30):
        make_controller(
            session,
            name=f"Listed {n:02d} AG",
            dsr_contacts=[f"dpo{n}@listed{n}.example", f"privacy{n}@listed{n}.example"],
            breach_contacts=[f"sec{n}@listed{n}.example"],
            domains=[f"shop.listed{n}.example", f"listed{n}.example"],
        )
    counts = {}
    for size in (3, 30):
        # A fresh request: nothing loaded, no unwrapped key cached
        session.expunge_all()
        forget_keys(session)
        with statements(session) as seen:
            page = list_page(session, offset=0, limit=size)
        counts[size] = len(seen)
        assert len(page.rows) == size
    # Then the rows, the total, the DSR contacts (decrypted, no breach contact) and the domains (sorted) are there
    listed = [row for row in page.rows if row.name.startswith("Listed ")]
    first = next(row for row in listed if row.name == "Listed 07 AG")
    assert first.dsr_contacts == ["dpo7@listed7.example", "privacy7@listed7.example"]
    assert first.domains == ["listed7.example", "shop.listed7.example"] and first.status == "active"
    assert page.total == count_controllers(session) >= 30
    # And the statements do not grow with the page: rows with the total and domains, contacts, their keys
    assert counts[30] == counts[3] == 3


def test_the_list_page_past_the_end_still_knows_the_total(session: Session) -> None:
    make_controller(session, name="Only One AG")
    page = list_page(session, offset=10_000, limit=50)
    assert page.rows == [] and page.total == count_controllers(session) >= 1


def test_a_controller_whose_key_was_shredded_still_lists_with_its_contacts_marked_unreadable(session: Session) -> None:
    # Given a controller whose data key was shredded (crypto-shredding after termination)
    gone = make_controller(session, name="Shredded Example AG", dsr_contacts=["dpo@shredded.example"])
    shred_controller_keys(session, gone.id, by=TEST_PRINCIPAL, now=utcnow())
    # When the list is shown
    page = list_page(session, offset=0, limit=50, only_ids=[gone.id])
    # Then the row is there and its address reads as unreadable, not as an error page
    assert [(row.name, row.dsr_contacts) for row in page.rows] == [("Shredded Example AG", [UNREADABLE])]
