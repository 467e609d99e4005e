"""Retention runs through the engine: each covered category's boundary, holds of every kind, resume, the ledger."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.deletion.models import DeletionRun
from app.retention import holds, policies, runner
from app.retention.holds import InvalidHold
from app.retention.models import RetentionHold, RetentionRun
from app.tickets.models import Message, Ticket
from tests.deletion.support import make_tickets, remaining
from tests.factories import make_controller
from tests.retention.support import SYSTEM, close_at, run_now

CLOSED = dt.datetime(2025, 1, 10, 12, 0, tzinfo=dt.UTC)
CONTENT = dt.timedelta(days=365)
IDENTITY = dt.timedelta(days=180)
SECOND = dt.timedelta(seconds=1)


def _clock_run(session: Session, at: dt.datetime, **filters: object) -> runner.RunResult:
    # The time-travel library moves the clock the run reads (utcnow), one second either side of a boundary.
    with time_machine.travel(at, tick=False):
        return run_now(session, utcnow(), **filters)


def test_closed_ticket_content_goes_one_second_after_its_period_not_before(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 2, now=CLOSED - dt.timedelta(days=3))
    close_at(session, made.ticket_ids, CLOSED)
    # One second before the boundary: kept whole
    _clock_run(session, CLOSED + CONTENT - SECOND, only_category="closed_ticket_content")
    session.expire_all()
    assert remaining(session, made.ticket_ids)["tickets"] == 2
    # One second after: gone with messages, attachments, outbox rows
    result = _clock_run(session, CLOSED + CONTENT + SECOND, only_category="closed_ticket_content")
    session.expire_all()
    left = remaining(session, made.ticket_ids)
    assert (left["tickets"], left["messages"], left["attachments"], left["outbox"]) == (0, 0, 0, 0)
    run = session.get(RetentionRun, result.run_id)
    assert run is not None and run.state == "done"
    assert run.counts["closed_ticket_content"][str(controller.id)]["due"] == 2
    version_ids = run.policy_versions["closed_ticket_content"][str(controller.id)]
    engine_runs = session.scalars(select(DeletionRun).where(DeletionRun.authority_kind == "retention_policy")).all()
    assert {r.authority_id for r in engine_runs} == set(version_ids) and all(r.state == "done" for r in engine_runs)


def test_requester_identity_is_anonymised_one_second_after_its_period(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 1, now=CLOSED - dt.timedelta(days=3))
    close_at(session, made.ticket_ids, CLOSED)
    _clock_run(session, CLOSED + IDENTITY - SECOND, only_category="requester_identity")
    session.expire_all()
    ticket = session.get(Ticket, made.ticket_ids[0])
    assert ticket is not None and ticket.requester_email == "requester0@customer.example"
    _clock_run(session, CLOSED + IDENTITY + SECOND, only_category="requester_identity")
    session.expire_all()
    ticket = session.get(Ticket, made.ticket_ids[0])
    assert ticket is not None and ticket.requester_email is None and ticket.requester_name is None
    assert all(m.sender_email is None and m.raw_blob_id is None for m in session.scalars(select(Message).where(Message.ticket_id == ticket.id)))
    assert ticket.subject == "Order 0"  # the content stays until its own period


def test_an_open_ticket_is_never_due(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 1, now=CLOSED - dt.timedelta(days=900))
    run_now(session, CLOSED + dt.timedelta(days=3000))
    session.expire_all()
    assert remaining(session, made.ticket_ids)["tickets"] == 1


@pytest.mark.parametrize("kind", ["controller", "ticket", "subject"])
def test_every_hold_kind_keeps_due_tickets_and_lifting_releases_them(session: Session, kind: str) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 2, now=CLOSED - dt.timedelta(days=3))
    close_at(session, made.ticket_ids, CLOSED)
    held_id = made.ticket_ids[0]
    target = {
        "controller": {"controller_id": controller.id},
        "ticket": {"ticket_id": held_id},
        "subject": {"controller_id": controller.id, "subject_email": "Requester0@Customer.example"},
    }[kind]
    hold = holds.place(session, kind=kind, basis="litigation", basis_text="case 12/2026", until=None, by=SYSTEM, now=CLOSED, **target)  # type: ignore[arg-type]
    later = CLOSED + CONTENT + SECOND
    # The dry run says what would go and what the hold keeps
    lines = runner.preview(session, only_category="closed_ticket_content", now=later)
    line = next(li for li in lines if li.controller_id == controller.id)
    expected_held = 2 if kind == "controller" else 1
    assert line.held == {f"hold {hold.id}: litigation": expected_held} and line.due == 2 - expected_held
    # The real run keeps what the hold covers and reports it
    result = run_now(session, later, only_category="closed_ticket_content")
    session.expire_all()
    assert remaining(session, [held_id])["tickets"] == 1
    assert remaining(session, made.ticket_ids)["tickets"] == expected_held
    run = session.get(RetentionRun, result.run_id)
    assert run is not None and run.counts["closed_ticket_content"][str(controller.id)]["held"] == expected_held
    # Lifting releases: the next run takes what it kept
    holds.lift(session, hold.id, by=SYSTEM, now=later)
    run_now(session, later + SECOND, only_category="closed_ticket_content")
    session.expire_all()
    assert remaining(session, made.ticket_ids)["tickets"] == 0


def test_a_hold_that_has_ended_keeps_nothing(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 1, now=CLOSED - dt.timedelta(days=3))
    close_at(session, made.ticket_ids, CLOSED)
    holds.place(session, kind="controller", controller_id=controller.id, basis="accounting", until=CLOSED + dt.timedelta(days=30), by=SYSTEM, now=CLOSED)
    run_now(session, CLOSED + CONTENT + SECOND, only_category="closed_ticket_content")
    session.expire_all()
    assert remaining(session, made.ticket_ids)["tickets"] == 0


def test_holds_are_refused_when_incomplete(session: Session) -> None:
    controller = make_controller(session)
    with pytest.raises(InvalidHold, match="end date"):
        holds.place(session, kind="controller", controller_id=controller.id, basis="accounting", until=None, by=SYSTEM, now=CLOSED)
    with pytest.raises(InvalidHold, match="address"):
        holds.place(session, kind="subject", controller_id=controller.id, basis="litigation", until=None, by=SYSTEM, now=CLOSED)
    with pytest.raises(InvalidHold, match="ticket"):
        holds.place(session, kind="ticket", ticket_id=999_999, basis="litigation", until=None, by=SYSTEM, now=CLOSED)
    hold = holds.place(session, kind="controller", controller_id=controller.id, basis="litigation", until=None, by=SYSTEM, now=CLOSED)
    holds.lift(session, hold.id, by=SYSTEM, now=CLOSED)
    with pytest.raises(InvalidHold, match="lifted already"):
        holds.lift(session, hold.id, by=SYSTEM, now=CLOSED)


def test_a_stopped_run_resumes_where_it_stood_and_nothing_is_done_twice(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 3, messages=1, now=CLOSED - dt.timedelta(days=3))
    close_at(session, made.ticket_ids, CLOSED)
    holds.place(session, kind="ticket", ticket_id=made.ticket_ids[1], basis="litigation", until=None, by=SYSTEM, now=CLOSED)
    later = CLOSED + CONTENT + SECOND
    # Given a run stopped after two batches (its engine run started, not finished)
    first = run_now(session, later, only_category="closed_ticket_content", max_batches=2)
    assert first.progress.stopped
    stopped = session.get(RetentionRun, first.run_id)
    assert stopped is not None and stopped.state == "stopped" and stopped.cursor["engine_run"] is not None
    in_flight = int(stopped.cursor["engine_run"])
    # When a run is started again (even with other filters)
    second = run_now(session, later)
    # Then it resumed the same ledger row and finished it; the held ticket is there, the others gone once
    assert second.resumed and second.run_id == first.run_id
    session.expire_all()
    done = session.get(RetentionRun, first.run_id)
    assert done is not None and done.state == "done"
    counts = done.counts["closed_ticket_content"][str(controller.id)]
    hold_id = session.scalars(select(RetentionHold.id)).one()
    assert counts == {"due": 3, "deleted": 2, "changed": counts["changed"], "held": 1, "held_by": {f"hold {hold_id}: litigation": 1}}
    assert remaining(session, made.ticket_ids)["tickets"] == 1
    engine = session.get(DeletionRun, in_flight)
    assert engine is not None and engine.report["stores"]["tickets"] == {"tickets_deleted": 2}


def test_a_policy_change_mid_run_applies_from_the_next_chunk(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 2, messages=1, now=CLOSED - dt.timedelta(days=3))
    close_at(session, made.ticket_ids, CLOSED)
    later = CLOSED + CONTENT + SECOND
    first = run_now(session, later, only_category="closed_ticket_content", only_controller=controller.id, chunk=1, max_batches=1)
    # The first chunk (one ticket) is under way; now the controller's period is lengthened past "later"
    policies.change(
        session,
        "closed_ticket_content",
        controller_id=controller.id,
        period_days=800,
        action="delete",
        legal_basis="longer",
        max_days=3650,
        by=SYSTEM,
        now=later,
    )
    run_now(session, later)
    session.expire_all()
    assert remaining(session, made.ticket_ids)["tickets"] == 1  # the first went under v1; the second is kept by v2
    done = session.get(RetentionRun, first.run_id)
    assert done is not None and len(done.policy_versions["closed_ticket_content"][str(controller.id)]) == 2
