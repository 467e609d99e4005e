"""A run killed between batches, or in the middle of one, resumes where its last commit left it and does nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.db import utcnow
from app.deletion import purge
from app.deletion import service as deletion
from app.deletion.models import DeletionRun
from app.extensions import db
from tests.deletion.support import OPERATOR, make_tickets, remaining
from tests.factories import make_controller


def test_a_run_killed_between_batches_and_in_a_batch_resumes_and_deletes_each_ticket_once(committed_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(purge, "BATCH", 2)
    with committed_app.app_context():
        # Given an operator's run over five tickets, two tickets a batch
        with db.session_scope() as session:
            controller = make_controller(session)
            made = make_tickets(session, controller, 5, now=utcnow())
            run_id = deletion.start(
                session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(made.ticket_ids)), "delete", by=OPERATOR, now=utcnow()
            ).id
        # When its worker dies after two committed batches (the plan, then two tickets) ...
        progress = deletion.advance(db.session_scope, run_id, by=OPERATOR, clock=utcnow, max_batches=2)
        assert progress.stopped and progress.batches == 2
        with db.session_scope() as session:
            run = session.get(DeletionRun, run_id)
            assert run is not None and run.state == "running" and run.params is not None
            assert run.report["stores"]["tickets"] == {"tickets_deleted": 2}
            assert remaining(session, made.ticket_ids)["tickets"] == 3
            where = deletion.progress(session, run_id).describe("delete")
            assert where.startswith("delete running, phase tickets after id ")
        # ... and the next worker dies in the middle of its batch, after deleting, before the commit
        real_save = deletion.save_state

        def crash(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed")

        monkeypatch.setattr(deletion, "save_state", crash)
        with pytest.raises(RuntimeError, match="killed"):
            deletion.advance(db.session_scope, run_id, by=OPERATOR, clock=utcnow)
        monkeypatch.setattr(deletion, "save_state", real_save)
        with db.session_scope() as session:
            assert remaining(session, made.ticket_ids)["tickets"] == 3  # the half-done batch was rolled back whole
        # Then a resume finishes it, and every count is exactly what there was: nothing done twice
        assert deletion.advance(db.session_scope, run_id, by=OPERATOR, clock=utcnow).finished
        with db.session_scope() as session:
            run = session.get(DeletionRun, run_id)
            assert run is not None and run.state == "done" and run.params is None
            assert remaining(session, made.ticket_ids) | {"blobs": 0} == {"tickets": 0, "messages": 0, "attachments": 0, "outbox": 0, "blobs": 0}
            assert run.report["stores"] == {
                "tickets": {"tickets_deleted": 5},
                "ticket_messages": {"messages_deleted": made.messages},
                "ticket_attachments": {"attachments_deleted": made.attachments},
                "blobs": {"blobs_deleted": made.attachments + made.raws},
                "outbox_emails": {"outbox_deleted": made.outbox},
            }
        # And a duplicate delivery of the doorbell finds nothing left to do
        assert deletion.advance(db.session_scope, run_id, by=OPERATOR, clock=utcnow).batches == 1
