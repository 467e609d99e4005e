"""Issue 11 item 7: finding the controllers holding a subject's tickets costs two statements whatever the number of
controllers, and a controller's index key kept by this process is never used once its keys are shredded."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.crypto.keys import data_keys, owner_of
from app.dsr.routing import controllers_of_subject
from app.keys.service import shred_controller_keys
from app.tickets import service as tickets
from tests.factories import TEST_PRINCIPAL, make_controller

T0 = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)


def _statements(session: Session, email: str) -> tuple[set[int], int]:
    seen: list[str] = []

    def count(*_args: object) -> None:
        seen.append("x")

    engine = session.get_bind().engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        found = controllers_of_subject(session, email)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return found, len(seen)


def test_two_statements_at_any_count_and_shredded_keys_are_not_used(session: Session) -> None:
    controllers = [make_controller(session) for _ in range(12)]
    holders = controllers[:3]
    for controller, email in [*((c, "pat@mail.example") for c in holders), (controllers[5], "kim@mail.example")]:
        tickets.create_ticket(session, controller_id=controller.id, requester_name="P", requester_email=email, subject="Hi", by=TEST_PRINCIPAL, now=T0)
    session.flush()

    found, statements = _statements(session, "PAT@mail.example")
    assert found == {c.id for c in holders}
    assert statements == 2
    assert _statements(session, "nobody@mail.example") == (set(), 2)

    # Shredded here: the keys this process keeps across transactions are dropped at once.
    shred_controller_keys(session, holders[0].id, by=TEST_PRINCIPAL, now=T0)
    assert controllers_of_subject(session, "pat@mail.example") == {holders[1].id, holders[2].id}

    # Shredded by another process (no call here to forget anything): the key row's state decides, not the cache.
    session.execute(
        update(data_keys)
        .where(data_keys.c.owner == owner_of(holders[1].id))
        .values(state="shredded", wrapped_key=None, wrapped_index_key=None, master_version=None)
    )
    assert controllers_of_subject(session, "pat@mail.example") == {holders[2].id}
