"""A DSR erasure is a run of the engine: authority = the confirmed instruction, scope = the subject within the controller."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.deletion.models import DeletionRun
from app.deletion.report import changes
from app.dsr.models import DsrEvent, Instruction
from app.subject_data import service
from app.subject_data.models import SubjectRun
from tests.factories import TEST_PRINCIPAL
from tests.subject_data.support import T0, decrypted_hits, drain, instruct, scene


def test_a_dsr_erasure_runs_on_the_engine_under_the_confirmed_instruction(session: Session) -> None:
    # Given a request with a confirmed erase instruction of its controller
    sc = scene(session)
    instruct(session, sc, "erase")
    confirmed = session.scalars(select(Instruction.id).where(Instruction.dsr_id == sc.dsr.id, Instruction.decision == "erase")).one()
    # When the officer starts the erasure
    record = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    # Then the request's record points at an engine run with that authority and scope; the parameters are the engine's
    run = session.get(DeletionRun, record.deletion_run_id)
    assert run is not None and record.params is None and run.params is not None
    assert (run.authority_kind, run.authority_id, run.scope_kind, run.controller_id, run.action) == (
        "instruction",
        confirmed,
        "subject",
        sc.controller.id,
        "redact",
    )
    # And when it has run, both say the same, and the request's history has its start and end
    drain(session, record.id)
    session.expire_all()
    run, record = session.get(DeletionRun, run.id), session.get(SubjectRun, record.id)  # type: ignore[assignment]
    assert run is not None and record is not None
    assert run.state == record.state == "done" and run.params is None and record.finished_at == run.finished_at
    assert record.report["changed"] == changes(run.report) and record.report["changed"]["messages"] == 8
    # (no held quarantine item mentions the subject here: that store found nothing to count)
    assert set(run.report["stores"]) == {
        "ticket_messages",
        "message_identifiers",
        "blobs",
        "ticket_attachments",
        "tickets",
        "outbox_emails",
        "dsr_instructions",
        "dsrs",
    }
    codes = list(session.scalars(select(DsrEvent.code).where(DsrEvent.dsr_id == sc.dsr.id).order_by(DsrEvent.id)))
    assert codes[-2:] == ["erase_started", "erase_done"]
    assert decrypted_hits(session) == {}
