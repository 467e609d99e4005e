"""Many blind-index values as one parameter (`digests_in`): the same rows as a plain IN, on both databases."""

from __future__ import annotations

import os

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto.cipher import blind_index, blind_indexes
from app.crypto.fields import digests_in
from app.db import utcnow
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Ticket
from tests.factories import make_controller

BY = Principal.system("tests")


def test_thousands_of_digests_find_exactly_the_tickets_holding_one(session: Session) -> None:
    controller = make_controller(session)
    made = [
        tickets.create_ticket(session, controller_id=controller.id, requester_name=None, requester_email=f"p{n}@example.org", subject="S", by=BY, now=utcnow())
        for n in range(3)
    ]
    session.flush()
    held = [t.requester_email_bidx for t in made[:2]]
    assert all(held)
    wanted = [*held, *(os.urandom(len(held[0] or b"")) for _ in range(2000)), b"\x00\\\"{},'"]  # quoting characters too
    found = session.scalars(select(Ticket.id).where(digests_in(session, Ticket.requester_email_bidx, wanted))).all()
    assert sorted(found) == sorted(t.id for t in made[:2])
    assert session.scalars(select(Ticket.id).where(digests_in(session, Ticket.requester_email_bidx, []))).all() == []


def test_one_value_under_many_keys_is_what_each_key_gives_alone() -> None:
    keys = {n: os.urandom(32) for n in range(50)}
    for kind, value in (("email", " Jane.Roe+News@Example.ORG "), ("text", "BR-1001"), ("phone", "+44 20 7946 0958")):
        assert blind_indexes(keys, kind, value) == {n: blind_index(key, kind, value) for n, key in keys.items()}
