"""A legal hold blocks a DSR erasure as it blocks retention (one hold check in the engine); lifting it releases at the next run."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.retention import holds
from app.subject_data import service
from app.subject_data.models import SubjectRun
from app.tickets.models import Message, Ticket
from tests.retention.support import SYSTEM, run_now
from tests.subject_data.support import CANARY_EMAIL, CANARY_NAME, T0, instruct, scene
from tests.subject_data.support import drain as drain_request


def _canary_messages(session: Session, ticket_ids: list[int]) -> int:
    return sum(CANARY_NAME in (m.body_text or "") for m in session.scalars(select(Message).where(Message.ticket_id.in_(ticket_ids))))


@pytest.mark.parametrize("kind", ["controller", "ticket", "subject"])
def test_a_hold_keeps_what_it_covers_from_an_erasure_and_lifting_releases_it(session: Session, kind: str) -> None:
    # Given a subject's confirmed erasure and a hold on their controller, their first ticket, or them
    sc = scene(session)
    first = sc.tickets[0].id
    target = {
        "controller": {"controller_id": sc.controller.id},
        "ticket": {"ticket_id": first},
        "subject": {"controller_id": sc.controller.id, "subject_email": CANARY_EMAIL.upper()},
    }[kind]
    hold = holds.place(session, kind=kind, basis="regulator_request", basis_text="letter 7", until=None, by=SYSTEM, now=T0, **target)  # type: ignore[arg-type]
    instruct(session, sc, "erase")
    # When the erasure runs
    record = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=SYSTEM, now=T0)
    drain_request(session, record.id)
    session.expire_all()
    # Then the held ticket still carries the subject's messages, and the request's report says what was kept and why
    assert _canary_messages(session, [first]) > 0
    done = session.get(SubjectRun, record.id)
    assert done is not None
    assert done.report["kept"] and {k["reason"] for k in done.report["kept"]} == {f"hold {hold.id}: regulator_request"}
    if kind == "ticket":
        assert _canary_messages(session, [t.id for t in sc.tickets[1:]]) == 0  # the rest was erased
    # When the hold is lifted and retention runs (it releases what the hold kept from the erasure: app.retention.release)
    holds.lift(session, hold.id, by=SYSTEM, now=T0)
    run_now(session, T0)
    session.expire_all()
    # Then nothing of the subject is left in their tickets
    assert _canary_messages(session, [t.id for t in sc.tickets]) == 0
    assert all(t.requester_email is None for t in session.scalars(select(Ticket).where(Ticket.id.in_([t.id for t in sc.tickets]))))
