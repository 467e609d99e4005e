"""Execution services without HTTP: find, the instruction each action needs, erasure, rectification, restriction, closing."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask.testing import FlaskCliRunner
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.blobs.store import read_blob
from app.deletion import messages as message_store
from app.dsr import forward as dsr_forward
from app.dsr import instructions as dsr_instructions
from app.dsr.models import Dsr
from app.dsr.requests import assign_controllers
from app.mail import quarantine
from app.mail.models import OutboxEmail
from app.subject_data import closing, restrict, service
from app.subject_data.errors import NotAuthorised
from app.subject_data.models import SubjectExport, SubjectRun
from app.tickets import lookup
from app.tickets import service as tickets
from app.tickets.models import Attachment, Message, Ticket
from tests.factories import TEST_PRINCIPAL, make_controller, make_instruction
from tests.subject_data.support import CANARIES, CANARY_EMAIL, CANARY_NAME, SETTINGS, T0, decrypted_hits, drain, instruct, scene


def test_find_counts_the_subjects_data_before_anything_is_done(session: Session) -> None:
    sc = scene(session)
    found = service.find_for(session, sc.dsr.id, sc.controller.id)
    # Two tickets of three messages each, the forward's note on the source ticket, and the message they wrote into a bystander's ticket.
    assert found.counts == {"tickets": 2, "messages": 8, "attachments": 2, "outbox": 1}
    assert sorted(found.ticket_ids) == sorted(t.id for t in sc.tickets)
    assert len(found.other_message_ids) == 1


@pytest.mark.parametrize(("kind", "wrong"), [("export", "erase"), ("erase", "provide_data"), ("rectify", "restrict")])
def test_no_action_without_a_confirmed_instruction_of_its_own_kind(session: Session, kind: str, wrong: str) -> None:
    sc = scene(session)
    with pytest.raises(NotAuthorised):
        service.start(session, sc.dsr.id, sc.controller.id, kind, new_name="X Y", by=TEST_PRINCIPAL, now=T0)
    instruct(session, sc, wrong)
    with pytest.raises(NotAuthorised):
        service.start(session, sc.dsr.id, sc.controller.id, kind, new_name="X Y", by=TEST_PRINCIPAL, now=T0)
    if wrong != "restrict":
        with pytest.raises(NotAuthorised):
            restrict.restrict(session, sc.dsr.id, sc.controller.id, "restriction", by=TEST_PRINCIPAL, now=T0)
    assert session.scalar(select(SubjectRun.id)) is None


def test_erasure_leaves_no_trace_of_the_subject_and_reports_what_changed(session: Session) -> None:
    sc = scene(session)
    held = quarantine.hold(
        session, b"From: " + CANARY_EMAIL.encode() + b"\r\n\r\nbroken", reason="malformed", detail="", source="pipe", by=TEST_PRINCIPAL, now=T0
    )
    other = quarantine.hold(session, b"From: someone@else.example\r\n\r\nbroken", reason="malformed", detail="", source="pipe", by=TEST_PRINCIPAL, now=T0)
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    drain(session, run.id)
    session.expire_all()
    assert decrypted_hits(session) == {}
    run = session.get(SubjectRun, run.id)
    assert run is not None and run.state == "done" and run.params is None
    changed = run.report["changed"]
    assert changed["messages"] == 8 and changed["tickets"] == 2 and changed["attachments_removed"] == 2 and changed["raw_destroyed"] == 4
    assert changed["outbox"] == 1 and changed["instructions"] == 1 and changed["quarantine_deleted"] == 1 and changed["dsrs"] == 1
    assert run.report.get("failed", []) == []
    assert session.scalar(select(Attachment.id).join(Message).where(Message.ticket_id.in_([t.id for t in sc.tickets]))) is None
    assert session.get(quarantine.QuarantinedMessage, held.id).state == "deleted"  # type: ignore[union-attr]
    assert session.get(quarantine.QuarantinedMessage, other.id).state == "held"  # type: ignore[union-attr]
    # The bystander's own data stays; the subject's message in their ticket is anonymised.
    bystander = session.get(Ticket, sc.bystander.id)
    assert bystander is not None and bystander.requester_email == "bea@bystander.example"
    texts = [m.body_text for m in bystander.messages]
    # (issue 13 item 1a: a message the subject wrote is erased whole; a stub says what, when and under which instruction)
    stub = (
        f"[Message erased on 2026-11-20 09:00 UTC under instruction {run.instruction_id} (deletion run {run.deletion_run_id}): "
        "its text, HTML, original and 0 attachment(s).]"
    )
    assert "Where is my order?" in texts and stub in texts
    # The request is the record of what was done: reference, types, dates; no subject.
    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None and dsr.subject_email is None and dsr.subject_email_bidx is None and dsr.reference
    details = " ".join(e.details_json for e in session.scalars(select(AuditEvent))).lower()
    assert not any(c in details for c in CANARIES)
    assert lookup.find_by_requester_email(session, CANARY_EMAIL, controller_ids=[sc.controller.id]) == []


def test_erasure_is_resumable_and_a_finished_run_is_a_no_op(session: Session) -> None:
    sc = scene(session, messages=6, tickets_count=3)
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    # Interrupted after the plan and the first batch of messages ...
    batch, message_store.BATCH = message_store.BATCH, 5
    try:
        assert service.step(session, run.id, by=TEST_PRINCIPAL, now=T0) is False
        assert service.step(session, run.id, by=TEST_PRINCIPAL, now=T0) is False
        partial = session.get(SubjectRun, run.id)
        assert partial is not None and partial.state == "running" and partial.report["changed"]["messages"] == 5
        # ... the rerun continues from the cursor and completes.
        drain(session, run.id)
    finally:
        message_store.BATCH = batch
    done = session.get(SubjectRun, run.id)
    assert done is not None and done.state == "done"
    assert done.report["changed"]["messages"] == 3 * 6 + 1 + 1
    before = json.dumps(done.report, sort_keys=True)
    assert service.step(session, run.id, by=TEST_PRINCIPAL, now=T0) is True
    assert json.dumps(session.get(SubjectRun, run.id).report, sort_keys=True) == before  # type: ignore[union-attr]
    assert decrypted_hits(session) == {}


def test_rectification_writes_the_corrected_values_and_removes_the_old(session: Session) -> None:
    sc = scene(session)
    instruct(session, sc, "rectify")
    run = service.start(
        session, sc.dsr.id, sc.controller.id, "rectify", new_name="Quentin Zebra-Smith", new_email="q.smith@new.example", by=TEST_PRINCIPAL, now=T0
    )
    drain(session, run.id)
    session.expire_all()
    ticket = session.get(Ticket, sc.tickets[0].id)
    assert ticket is not None and ticket.requester_email == "q.smith@new.example" and ticket.requester_name == "Quentin Zebra-Smith"
    assert lookup.find_by_requester_email(session, "q.smith@new.example", controller_ids=[sc.controller.id])
    assert not lookup.find_by_requester_email(session, CANARY_EMAIL, controller_ids=[sc.controller.id])
    first = session.scalars(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id)).first()
    assert first is not None and "Quentin Zebra-Smith (q.smith@new.example)" in (first.body_text or "") and first.raw_blob_id is None
    # The old values remain only in the attachments, which cannot be rewritten and are reported.
    hits = decrypted_hits(session, (CANARY_EMAIL.lower(), CANARY_NAME.lower()))
    assert hits and all(h.startswith(("blob_chunks.", "ticket_attachments.")) for h in hits), list(hits)
    run = session.get(SubjectRun, run.id)
    assert run is not None and run.report["changed"]["attachments_not_rectifiable"] == 2
    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None and dsr.subject_email == "q.smith@new.example"


def test_restriction_flags_the_subjects_tickets_until_lifted_and_closing_notifies_the_controller(session: Session) -> None:
    sc = scene(session)
    instruct(session, sc, "restrict")
    item = restrict.restrict(session, sc.dsr.id, sc.controller.id, "objection", by=TEST_PRINCIPAL, now=T0)
    ids = [t.id for t in sc.tickets]
    assert restrict.restricted_ticket_ids(session, [*ids, sc.bystander.id]) == set(ids)
    # A ticket the subject opens later is covered too (same controller, same blind index).
    later = tickets.create_ticket(
        session, controller_id=sc.controller.id, requester_name="Q", requester_email=CANARY_EMAIL.upper(), subject="again", by=TEST_PRINCIPAL, now=T0
    )
    assert restrict.is_restricted(session, later.id)
    closing.close(session, sc.dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0)
    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None and dsr.outcome == "restricted" and not dsr.is_open
    notice = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_completion")).one()
    assert notice.to_addr == "dpo@ctl-subject.example" and dsr.reference in notice.subject
    assert CANARY_EMAIL not in notice.body_text and "objection recorded" in notice.body_text
    restrict.lift(session, sc.dsr.id, item.id, by=TEST_PRINCIPAL, now=T0)
    assert restrict.restricted_ticket_ids(session, [*ids, later.id]) == set()


def test_an_export_leaves_out_restricted_tickets_and_expired_files_are_deleted(session: Session) -> None:
    sc = scene(session)
    instruct(session, sc, "restrict")
    instruct(session, sc, "provide_data")
    restrict.restrict(session, sc.dsr.id, sc.controller.id, "restriction", by=TEST_PRINCIPAL, now=T0)
    run = service.start(session, sc.dsr.id, sc.controller.id, "export", by=TEST_PRINCIPAL, now=T0)
    drain(session, run.id)
    files = session.scalars(select(SubjectExport).where(SubjectExport.run_id == run.id)).all()
    assert sorted(f.format for f in files) == ["json", "pdf"]
    data = json.loads(read_blob(session, next(f.blob_id for f in files if f.format == "json") or 0))
    assert data["counts"]["restricted_tickets_excluded"] == 2 and data["tickets"] == []
    # Only the message they wrote into the bystander's (unrestricted) ticket remains.
    assert [m["ticket_id"] for m in data["messages"]] == [sc.bystander.id]
    swept = service.sweep(session, now=T0 + dt.timedelta(days=8))
    assert swept["exports_deleted"] == 2
    assert all(f.blob_id is None and f.deleted_at is not None for f in session.scalars(select(SubjectExport)))


def test_an_operator_resumes_an_interrupted_run_from_the_cli(session: Session, runner: FlaskCliRunner) -> None:
    sc = scene(session)
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    assert service.step(session, run.id, by=TEST_PRINCIPAL, now=T0) is False
    listed = runner.invoke(args=["subject-data", "runs", "--unfinished", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["id"] == run.id
    result = runner.invoke(args=["subject-data", "resume", str(run.id)])
    assert result.exit_code == 0 and f"run {run.id}: done" in result.output
    assert runner.invoke(args=["subject-data", "resume", "999999"]).exit_code == 2
    assert CANARY_EMAIL not in result.output


def test_a_run_asked_to_stop_stops_after_a_committed_batch_says_where_and_resumes(session: Session, runner: FlaskCliRunner) -> None:
    # Given an erasure run with several batches to do
    sc = scene(session)
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)

    @contextmanager
    def same_session() -> Iterator[Session]:
        yield session

    # When it is asked to stop (as Ctrl-C does in `subject-data resume`)
    steps: list[str] = []

    def note() -> None:
        steps.append(service.describe_progress(session, run.id))

    finished = service.run_to_end(same_session, run.id, by=TEST_PRINCIPAL, clock=lambda: T0, should_stop=lambda: True, on_step=note)
    # Then it stopped after one batch, unfinished, and says where it stands
    assert finished is False and len(steps) == 1
    where = service.describe_progress(session, run.id)
    assert where.startswith("erase running, phase ") and " after id " in where
    assert CANARY_EMAIL not in where and CANARY_NAME not in where
    # And `subject-data resume` finishes it, showing its progress batch by batch
    result = runner.invoke(args=["subject-data", "resume", str(run.id)])
    assert result.exit_code == 0, result.output
    assert f"run {run.id}: erase running, phase " in result.output and f"run {run.id}: done" in result.output


def test_a_request_of_two_controllers_keeps_its_subject_until_both_have_erased(session: Session) -> None:
    sc = scene(session)
    other = make_controller(session, dsr_contacts=["dpo@other-ctl.example"])
    assign_controllers(session, sc.dsr.id, [other.id], by=TEST_PRINCIPAL, now=T0)
    dsr_forward.forward(session, sc.dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0)
    instruct(session, sc, "erase")
    first = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    drain(session, first.id)
    session.expire_all()
    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None and dsr.subject_email == CANARY_EMAIL
    assert session.get(SubjectRun, first.id).report["changed"]["dsrs_kept_for_other_controllers"] == 1  # type: ignore[union-attr]
    instruction = make_instruction(session, dsr, controller_id=other.id, sender_email="dpo@other-ctl.example", reply_text="Erase.", raw=b"y", now=T0)
    dsr_instructions.confirm(session, dsr.id, instruction.id, "erase", by=TEST_PRINCIPAL, now=T0)
    second = service.start(session, sc.dsr.id, other.id, "erase", by=TEST_PRINCIPAL, now=T0)
    drain(session, second.id)
    session.expire_all()
    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None and dsr.subject_email is None and dsr.subject_name is None


def test_the_pdf_summary_prints_greek_cyrillic_and_polish_names_as_written(session: Session) -> None:
    # Given the subject wrote in several scripts (and one the font lacks)
    sc = scene(session, messages=1, tickets_count=1)
    written = "Łukasz Żółć, Ελένη Παπαδοπούλου, Ольга Смирнова"
    tickets.add_message(
        session,
        sc.tickets[0],
        tickets.MessageInput(direction="inbound", body_text=f"{written} 日本", sender_email=CANARY_EMAIL, sender_name=CANARY_NAME),
        by=TEST_PRINCIPAL,
        now=T0,
    )
    instruct(session, sc, "provide_data")
    # When the export runs
    run = service.start(session, sc.dsr.id, sc.controller.id, "export", by=TEST_PRINCIPAL, now=T0)
    drain(session, run.id)
    pdf = next(f for f in session.scalars(select(SubjectExport).where(SubjectExport.run_id == run.id)) if f.format == "pdf")
    # Then the PDF's text holds the names as written; a character the font lacks is a "?", never dropped silently
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(read_blob(session, pdf.blob_id or 0))).pages)
    assert written in " ".join(text.split())
    assert f"{written} ??" in " ".join(text.split())
