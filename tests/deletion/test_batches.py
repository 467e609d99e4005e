"""Whole tickets go thousands a batch, but a batch stops before its files and raw originals pass BATCH_BYTES."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import ids_in, utcnow
from app.deletion import purge
from app.deletion import service as deletion
from app.deletion.models import DeletionRun
from app.extensions import db
from app.tickets.models import Ticket
from tests.deletion.support import OPERATOR, make_tickets, remaining
from tests.factories import make_controller


@pytest.mark.parametrize("scope", ["tickets", "controller"])
def test_tickets_with_more_bytes_than_a_batch_allows_go_one_batch_each_and_all_go_once(
    committed_app: Flask, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    # Given four tickets, each with files and raw originals larger than a batch may carry
    monkeypatch.setattr(purge, "BATCH_BYTES", 1)
    with committed_app.app_context():
        with db.session_scope() as session:
            controller = make_controller(session)
            made = make_tickets(session, controller, 4, now=utcnow())
            chosen = deletion.Scope.tickets(tuple(made.ticket_ids)) if scope == "tickets" else deletion.Scope.controller(controller.id)
            run_id = deletion.start(session, deletion.Authority("operator"), chosen, "delete", by=OPERATOR, now=utcnow()).id
        # When the run goes to the end
        progress = deletion.advance(db.session_scope, run_id, by=OPERATOR, clock=utcnow)
        # Then it took the plan and one batch per ticket (each batch takes at least one ticket), and deleted each once
        assert progress.finished and progress.batches == 1 + 4
        with db.session_scope() as session:
            run = session.get(DeletionRun, run_id)
            assert run is not None and run.state == "done"
            assert remaining(session, made.ticket_ids) | {"blobs": 0} == {"tickets": 0, "messages": 0, "attachments": 0, "outbox": 0, "blobs": 0}
            assert run.report["stores"]["tickets"] == {"tickets_deleted": 4}
            assert run.report["stores"]["blobs"] == {"blobs_deleted": made.attachments + made.raws}


def test_a_batch_within_its_bytes_takes_every_ticket_at_once(committed_app: Flask) -> None:
    with committed_app.app_context():
        with db.session_scope() as session:
            controller = make_controller(session)
            made = make_tickets(session, controller, 4, now=utcnow())
            run_id = deletion.start(
                session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(made.ticket_ids)), "delete", by=OPERATOR, now=utcnow()
            ).id
        progress = deletion.advance(db.session_scope, run_id, by=OPERATOR, clock=utcnow)
        assert progress.finished and progress.batches == 2  # the plan, then the four tickets with the run's end


def test_ids_in_matches_exactly_the_ids_given(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 5, messages=1, now=utcnow())
    first, second, _, fourth, _ = made.ticket_ids
    # Out of order, repeated, and with an id no ticket has: the tickets among them, nothing else (not the one between)
    found = session.scalars(select(Ticket.id).where(ids_in(session, Ticket.id, [fourth, first, fourth, 10**9])).order_by(Ticket.id)).all()
    assert found == [first, fourth]
    assert session.scalars(select(Ticket.id).where(ids_in(session, Ticket.id, []))).all() == []
    assert second not in found
