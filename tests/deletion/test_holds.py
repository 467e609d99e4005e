"""The one hold check: every item a run is about to change passes it; a held item is left untouched and reported as kept."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.deletion import service as deletion
from app.deletion.holds import HOLDS
from app.deletion.models import DeletionRun
from app.deletion.report import Item
from app.mail.models import OutboxEmail
from app.subject_data import closing, service
from app.subject_data.models import SubjectRun
from app.tickets.models import Message
from tests.deletion.support import OPERATOR, T0, drain, make_tickets, remaining
from tests.factories import make_controller
from tests.subject_data.support import CANARY_NAME, SETTINGS, instruct, scene
from tests.subject_data.support import drain as drain_request


class Hold:
    """A hold check registered by the test: holds the (what, id) pairs it is given, and notes every item it was asked about."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, int], str] = {}
        self.asked: list[Item] = []

    def __call__(self, session: Session, run: DeletionRun, items: Sequence[Item]) -> Mapping[Item, str]:
        self.asked.extend(items)
        return {i: self.held[(i.what, i.id)] for i in items if (i.what, i.id) in self.held}


@pytest.fixture
def hold() -> Iterator[Hold]:
    check = Hold()
    HOLDS.add("tests.hold", check)
    try:
        yield check
    finally:
        HOLDS.remove("tests.hold")


def test_a_held_ticket_is_kept_whole_and_the_report_says_why(session: Session, hold: Hold) -> None:
    # Given three tickets, the middle one under a hold
    controller = make_controller(session)
    made = make_tickets(session, controller, 3)
    held_id = made.ticket_ids[1]
    hold.held[("ticket", held_id)] = "hold 9: litigation"
    # When an operator's run deletes all three
    run = deletion.start(session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(made.ticket_ids)), "delete", by=OPERATOR, now=T0)
    drain(session, run.id)
    session.expire_all()
    # Then the held ticket is whole, the others are gone
    assert remaining(session, [held_id]) | {"blobs": 0} == {"tickets": 1, "messages": 2, "attachments": 1, "outbox": 1, "blobs": 0}
    assert remaining(session, [made.ticket_ids[0], made.ticket_ids[2]])["tickets"] == 0
    # And the report lists it as kept, with the hold's reason; the counts leave it out
    done = session.get(DeletionRun, run.id)
    assert done is not None and done.state == "done"
    assert done.report["kept"] == [{"what": "ticket", "id": held_id, "reason": "hold 9: litigation"}]
    assert done.report["stores"]["tickets"] == {"tickets_deleted": 2}
    assert {(i.what, i.id) for i in hold.asked} == {("ticket", t) for t in made.ticket_ids}


def test_every_item_of_an_erasure_passes_the_check_and_a_held_message_survives_it(session: Session, hold: Hold) -> None:
    # Given a subject's erasure, and a hold on the message they wrote into a bystander's ticket
    sc = scene(session)
    theirs = session.scalars(select(Message).where(Message.ticket_id == sc.bystander.id, Message.sender_email_bidx.is_not(None)).order_by(Message.id)).all()
    written = next(m for m in theirs if CANARY_NAME in (m.body_text or ""))
    hold.held[("message", written.id)] = "hold 4: regulator request"
    instruct(session, sc, "erase")
    # When the erasure runs
    record = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=OPERATOR, now=T0)
    drain_request(session, record.id)
    session.expire_all()
    # Then the held message still says what it said; the rest of the subject's messages are redacted
    kept = session.get(Message, written.id)
    assert kept is not None and CANARY_NAME in (kept.body_text or "")
    assert all(CANARY_NAME not in (m.body_text or "") for m in session.scalars(select(Message).where(Message.id != written.id)))
    # And every kind of item the run changed was asked about: messages, tickets, outbox rows, the request's own records
    assert {i.what for i in hold.asked} >= {"message", "ticket", "outbox", "instruction", "dsr"}
    outbox_ids = set(session.scalars(select(OutboxEmail.id)))
    assert {i.id for i in hold.asked if i.what == "outbox"} <= outbox_ids
    # And the request's record and its notice to the controller say what was kept
    record_ = session.get(SubjectRun, record.id)
    assert record_ is not None and record_.state == "done"
    assert record_.report["kept"] == [{"what": "message", "id": written.id, "reason": "hold 4: regulator request"}]
    engine_run = session.get(DeletionRun, record_.deletion_run_id)
    assert engine_run is not None and engine_run.report["kept"] == record_.report["kept"]
    closing.close(session, sc.dsr.id, settings=SETTINGS, by=OPERATOR, now=T0)
    notice = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_completion")).one()
    assert "1 item(s) kept under a legal hold" in (notice.body_text or "")


def test_with_no_hold_registered_nothing_is_kept(session: Session) -> None:
    assert "tests.hold" not in HOLDS.names()
    controller = make_controller(session)
    made = make_tickets(session, controller, 1)
    run = deletion.start(session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(made.ticket_ids)), "delete", by=OPERATOR, now=T0)
    drain(session, run.id)
    assert session.get(DeletionRun, run.id).report.get("kept", []) == []  # type: ignore[union-attr]
