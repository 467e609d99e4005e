"""Issue 11 item 7: finding the controllers holding a subject's tickets costs two statements whatever the number of
controllers, and a controller's index key kept by this process is never used once its keys are shredded.

On Postgres the active controllers' index keys are kept per process with the fingerprint of their rows: a lookup
reads one row (the fingerprint) instead of a row per controller, and any change to those rows (a shred, a new
controller's key) is seen by the next lookup, in this process or any other."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.crypto import fields
from app.crypto.keys import data_keys, owner_of
from app.dsr.routing import controllers_of_subject
from app.keys.service import shred_controller_keys
from app.tickets import service as tickets
from tests.databases import ON_POSTGRES
from tests.factories import TEST_PRINCIPAL, make_controller

T0 = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)


def _statements(session: Session, email: str) -> tuple[set[int], int]:
    found, rows = _rows_read(session, email)
    return found, len(rows)


def _rows_read(session: Session, email: str) -> tuple[set[int], list[int]]:
    """The controllers found, and how many rows each statement of the lookup returned."""
    rows: list[int] = []

    def count(_conn: object, cursor: Any, *_args: object) -> None:
        rows.append(cursor.rowcount)

    engine = session.get_bind().engine
    event.listen(engine, "after_cursor_execute", count)
    try:
        found = controllers_of_subject(session, email)
    finally:
        event.remove(engine, "after_cursor_execute", count)
    return found, rows


def test_two_statements_at_any_count_and_shredded_keys_are_not_used(session: Session) -> None:
    controllers = [make_controller(session) for _ in range(12)]
    holders = controllers[:3]
    for controller, email in [*((c, "pat@mail.example") for c in holders), (controllers[5], "kim@mail.example")]:
        tickets.create_ticket(session, controller_id=controller.id, requester_name="P", requester_email=email, subject="Hi", by=TEST_PRINCIPAL, now=T0)
    session.flush()

    # A first lookup may also (re)load keys this process kept from before (another test's controllers).
    assert controllers_of_subject(session, "pat@mail.example") == {c.id for c in holders}
    found, statements = _statements(session, "PAT@mail.example")
    assert found == {c.id for c in holders}
    assert statements == 2
    assert _statements(session, "nobody@mail.example") == (set(), 2)
    if ON_POSTGRES:
        # The keys were read once: now one row, the fingerprint, whatever the number of controllers.
        assert _rows_read(session, "pat@mail.example")[1][0] == 1
        # A new controller's key (as another process would add it) is seen by the next lookup.
        newcomer = make_controller(session)
        pat = {"requester_name": "P", "requester_email": "pat@mail.example", "subject": "Hi"}
        tickets.create_ticket(session, controller_id=newcomer.id, **pat, by=TEST_PRINCIPAL, now=T0)
        session.flush()
        assert controllers_of_subject(session, "pat@mail.example") == {*(c.id for c in holders), newcomer.id}
        holders.append(newcomer)

    # Shredded here: the keys this process keeps across transactions are dropped at once.
    shred_controller_keys(session, holders[0].id, by=TEST_PRINCIPAL, now=T0)
    assert controllers_of_subject(session, "pat@mail.example") == {c.id for c in holders[1:]}

    # Shredded by another process (no call here to forget anything): the key row's state decides, not the cache.
    session.execute(
        update(data_keys)
        .where(data_keys.c.owner == owner_of(holders[1].id))
        .values(state="shredded", wrapped_key=None, wrapped_index_key=None, master_version=None)
    )
    assert controllers_of_subject(session, "pat@mail.example") == {c.id for c in holders[2:]}


def test_only_controllers_holding_tickets_are_keyed_and_a_ticket_moved_to_one_is_found(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    keyed: list[set[int]] = []  # the controllers whose index keys each lookup used (a digest of the subject under each)
    real = fields.index_keys_of_controllers

    def spy(*args: Any, **kwargs: Any) -> dict[int, bytes]:
        found = real(*args, **kwargs)
        keyed.append(set(found))
        return found

    monkeypatch.setattr(fields, "index_keys_of_controllers", spy)
    # Given 30 controllers of which one holds a ticket of Pat (and one of Kim), and a ticket of Pat's in triage
    controllers = [make_controller(session) for _ in range(30)]
    pat = {"requester_name": "P", "requester_email": "pat@mail.example", "subject": "Hi"}
    tickets.create_ticket(session, controller_id=controllers[7].id, **pat, by=TEST_PRINCIPAL, now=T0)
    tickets.create_ticket(session, controller_id=controllers[21].id, **{**pat, "requester_email": "kim@mail.example"}, by=TEST_PRINCIPAL, now=T0)
    in_triage = tickets.create_ticket(session, controller_id=None, **pat, by=TEST_PRINCIPAL, now=T0)
    session.flush()
    assert controllers_of_subject(session, "pat@mail.example") == {controllers[7].id}
    # Only the two holders' index keys were used: a digest under each of the 30 controllers' keys was computed before
    assert keyed == [{controllers[7].id, controllers[21].id}]
    # And when the triage ticket is moved to a controller that held nothing: that controller now holds Pat's ticket
    tickets.move_to_controller(session, in_triage.id, controllers[12].id, by=TEST_PRINCIPAL, now=T0)
    session.flush()
    assert controllers_of_subject(session, "PAT@mail.example") == {controllers[7].id, controllers[12].id}
    assert keyed[-1] == {controllers[7].id, controllers[12].id, controllers[21].id}
    # And a controller that is no longer active is not a candidate, tickets or not
    controllers[7].status = "terminated"
    session.flush()
    assert controllers_of_subject(session, "pat@mail.example") == {controllers[12].id}
