"""The deletion engine on its own (no DSR anywhere): an operator's ticket deletion, a controller's anonymisation, refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.deletion import service as deletion
from app.deletion.models import DeletionRun
from app.dsr.models import Dsr
from app.mail.models import OutboxEmail
from app.subject_data.models import SubjectRun
from app.tickets.models import Message, Ticket
from tests.deletion.support import OPERATOR, T0, drain, make_tickets, remaining
from tests.factories import make_controller


def test_an_operator_deletes_a_set_of_tickets_and_the_report_counts_each_store(session: Session) -> None:
    # Given three tickets to delete and one to keep, each with messages, raw originals, an attachment and an outbox reply
    controller = make_controller(session)
    doomed = make_tickets(session, controller, 3)
    bystander = make_tickets(session, controller, 1)
    blobs_before = remaining(session, [])["blobs"]
    # When an operator's command deletes the three
    run = deletion.start(session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(doomed.ticket_ids)), "delete", by=OPERATOR, now=T0)
    batches = drain(session, run.id)
    session.expire_all()
    # Then nothing of them is left, in any table or in the blob store, and the bystander's ticket is whole
    deleted_blobs = doomed.attachments + doomed.raws
    assert remaining(session, doomed.ticket_ids) == {"tickets": 0, "messages": 0, "attachments": 0, "outbox": 0, "blobs": blobs_before - deleted_blobs}
    assert remaining(session, bystander.ticket_ids) | {"blobs": 0} == {"tickets": 1, "messages": 2, "attachments": 1, "outbox": 1, "blobs": 0}
    # And the report says what each store lost, exactly
    done = session.get(DeletionRun, run.id)
    assert done is not None and done.state == "done" and done.params is None and done.finished_at == T0 and batches == 2
    assert (done.authority_kind, done.authority_id, done.scope_kind, done.action) == ("operator", None, "tickets", "delete")
    assert done.report["planned"] == {"tickets": 3, "not_found": 0}
    assert done.report["stores"] == {
        "tickets": {"tickets_deleted": 3},
        "ticket_messages": {"messages_deleted": doomed.messages},
        "ticket_attachments": {"attachments_deleted": doomed.attachments},
        "blobs": {"blobs_deleted": deleted_blobs},
        "outbox_emails": {"outbox_deleted": doomed.outbox},
    }
    assert done.report.get("failed", []) == [] and done.report.get("kept", []) == []
    # No request was involved, and the audit log has the run's start and end (ids and counts)
    assert session.scalar(select(Dsr.id)) is None and session.scalar(select(SubjectRun.id)) is None
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "deletion_run").order_by(AuditEvent.id)))
    assert actions == ["deletion.start", "deletion.finish"]
    assert deletion.progress(session, run.id).describe("delete") == (
        f"delete done (changed: attachments_deleted {doomed.attachments}, blobs_deleted {deleted_blobs}, messages_deleted {doomed.messages},"
        f" outbox_deleted {doomed.outbox}, tickets_deleted 3)"
    )


def test_a_ticket_whose_mail_is_being_sent_is_left_whole_and_reported(session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 2)
    sending = session.scalars(select(OutboxEmail).where(OutboxEmail.related_id == made.ticket_ids[0])).one()
    sending.state = "sending"
    run = deletion.start(session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(made.ticket_ids)), "delete", by=OPERATOR, now=T0)
    drain(session, run.id)
    session.expire_all()
    assert remaining(session, [made.ticket_ids[0]])["messages"] == 2 and remaining(session, [made.ticket_ids[1]])["tickets"] == 0
    done = session.get(DeletionRun, run.id)
    assert done is not None and done.state == "failed"
    assert done.report["failed"] == [{"what": "ticket", "id": made.ticket_ids[0], "reason": "being_sent"}]


def test_anonymising_a_controllers_tickets_clears_identities_and_keeps_the_texts(session: Session) -> None:
    # Given two tickets of one controller and one of another
    controller, other = make_controller(session), make_controller(session)
    made = make_tickets(session, controller, 2)
    theirs = make_tickets(session, other, 1)
    # When a retention policy's run anonymises the controller's tickets
    run = deletion.start(session, deletion.Authority("retention_policy", 7), deletion.Scope.controller(controller.id), "anonymise", by=OPERATOR, now=T0)
    drain(session, run.id)
    session.expire_all()
    # Then the requester, the senders and the raw originals are gone, the texts stay; queued mail to them is cancelled
    for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(made.ticket_ids))):
        assert ticket.requester_name is None and ticket.requester_email is None and ticket.requester_email_bidx is None
        assert ticket.subject is not None and ticket.subject.startswith("Order ")
        for message in ticket.messages:
            assert message.sender_email is None and message.raw_blob_id is None and (message.body_text or "").startswith("Hello ")
    for row in session.scalars(select(OutboxEmail).where(OutboxEmail.related_id.in_(made.ticket_ids))):
        assert row.to_addr == "erased@erased.invalid" and row.state == "failed"
    # And the other controller's ticket is untouched
    kept = session.get(Ticket, theirs.ticket_ids[0])
    assert kept is not None and kept.requester_email == "requester0@customer.example"
    assert all(m.raw_blob_id is not None for m in session.scalars(select(Message).where(Message.ticket_id == kept.id)))
    done = session.get(DeletionRun, run.id)
    assert done is not None and done.state == "done" and done.report["planned"] == {"tickets": 2}
    assert done.report["stores"] == {
        "tickets": {"tickets_anonymised": 2},
        "ticket_messages": {"senders_anonymised": made.messages},
        "blobs": {"raw_destroyed": made.raws},
        "outbox_emails": {"outbox_anonymised": 2, "outbox_cancelled": 2},
    }


@pytest.mark.parametrize(
    ("authority", "scope", "action"),
    [
        (deletion.Authority("whim"), deletion.Scope.tickets((1,)), "delete"),
        (deletion.Authority("operator"), deletion.Scope.tickets((1,)), "redact"),
        (deletion.Authority("operator"), deletion.Scope.tickets(()), "delete"),
        (deletion.Authority("operator"), deletion.Scope("controller"), "delete"),
        (deletion.Authority("operator"), deletion.Scope.subject(1, ()), "redact"),
        (deletion.Authority("operator"), deletion.Scope.subject(1, ("a@b.example",)), "rectify"),
        (deletion.Authority("operator"), deletion.Scope.tickets((1,)), "shred"),
    ],
)
def test_a_run_that_cannot_be_done_as_asked_is_refused_and_nothing_is_written(
    session: Session, authority: deletion.Authority, scope: deletion.Scope, action: str
) -> None:
    with pytest.raises(deletion.InvalidRun):
        deletion.start(session, authority, scope, action, by=OPERATOR, now=T0)
    assert session.scalar(select(DeletionRun.id)) is None


def test_an_unknown_run_is_not_found_and_a_finished_one_is_a_no_op(session: Session) -> None:
    with pytest.raises(deletion.RunNotFound):
        deletion.progress(session, 999_999)
    assert deletion.step(session, 999_999, by=OPERATOR, now=T0) is True
    controller = make_controller(session)
    made = make_tickets(session, controller, 1)
    run = deletion.start(session, deletion.Authority("operator"), deletion.Scope.tickets(tuple(made.ticket_ids)), "delete", by=OPERATOR, now=T0)
    drain(session, run.id)
    report = dict(run.report)
    assert deletion.step(session, run.id, by=OPERATOR, now=T0) is True
    assert session.get(DeletionRun, run.id).report == report  # type: ignore[union-attr]
