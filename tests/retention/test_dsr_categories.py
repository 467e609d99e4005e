"""DSR records (identity minimised after 3 years) and export files (deleted after 30 days): boundaries, holds, ledger, dry run."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.blobs.models import Blob
from app.dsr.models import Dsr, DsrForward, Instruction
from app.retention import holds
from app.subject_data.export import expire
from app.subject_data.models import SubjectExport
from tests.factories import make_controller
from tests.retention.records import SECOND, clock_preview, clock_run, closed_dsr, export_file, ledger
from tests.retention.support import SYSTEM

CLOSED = dt.datetime(2023, 2, 1, 10, 0, tzinfo=dt.UTC)
RECORDS = dt.timedelta(days=1095)
EXPORTS = dt.timedelta(days=30)


def _identity(session: Session, dsr_id: int) -> tuple[object, ...]:
    session.expire_all()
    dsr = session.get(Dsr, dsr_id)
    assert dsr is not None
    return (dsr.subject_name, dsr.subject_email, dsr.subject_email_bidx, dsr.subject_identifiers, dsr.request_text)


def test_a_closed_request_loses_its_subjects_identity_one_second_after_three_years_and_keeps_its_evidence(session: Session) -> None:
    controller = make_controller(session)
    dsr = closed_dsr(session, [controller], CLOSED)
    dsr_id, reference = dsr.id, dsr.reference
    still_open = closed_dsr(session, [controller], CLOSED, email="open@people.example")
    still_open.state, still_open.is_open, still_open.closed_at = "forwarded", True, None
    session.flush()
    open_id = still_open.id
    # One second before: nothing changes
    clock_run(session, CLOSED + RECORDS - SECOND, only_category="dsr_records")
    assert _identity(session, dsr_id)[:2] == ("Sam Subject", "subject@people.example")
    # One second after: the dry run counts it; the run clears the identity and the free texts
    at = CLOSED + RECORDS + SECOND
    line = next(li for li in clock_preview(session, at, "dsr_records") if li.controller_id == controller.id)
    assert (line.due, line.held, line.action) == (1, {}, "anonymise")
    result = clock_run(session, at, only_category="dsr_records")
    assert _identity(session, dsr_id) == (None, None, None, None, None)
    instruction = session.scalars(select(Instruction).where(Instruction.dsr_id == dsr_id)).one()
    assert (instruction.reply_text, instruction.sender_email, instruction.sender_email_bidx) == (None, None, None)
    # The evidence stays: reference, types, state, dates, outcome, controller, the instruction's decision flags
    kept = session.get(Dsr, dsr_id)
    assert kept is not None
    assert (kept.reference, kept.types, kept.state, kept.closed_at, kept.outcome) == (reference, ["access"], "closed", CLOSED, "answered")
    assert session.scalars(select(DsrForward.controller_id).where(DsrForward.dsr_id == dsr_id)).all() == [controller.id]
    assert (instruction.verified, instruction.state) == (True, "pending")
    # An open request is never due
    assert _identity(session, open_id)[1] == "open@people.example"
    counts = ledger(session, result.run_id)["dsr_records"][str(controller.id)]
    assert (counts["due"], counts["anonymised"], counts["held"]) == (1, 1, 0)
    # Nothing twice: the next run finds nothing
    again = clock_run(session, at + SECOND, only_category="dsr_records")
    assert ledger(session, again.run_id) == {}


def test_a_hold_on_any_of_its_controllers_or_its_subject_keeps_a_request_and_lifting_releases_it(session: Session) -> None:
    first, second = make_controller(session), make_controller(session)
    shared = closed_dsr(session, [first, second], CLOSED).id  # owned by the first, held through the second
    subject_held = closed_dsr(session, [first], CLOSED, email="Kept@People.example").id
    free = closed_dsr(session, [first], CLOSED, email="free@people.example").id
    nobody = closed_dsr(session, [], CLOSED, email="triage@people.example").id  # closed in triage: the desk's
    on_second = holds.place(session, kind="controller", controller_id=second.id, basis="regulator_request", until=None, by=SYSTEM, now=CLOSED)
    on_subject = holds.place(
        session, kind="subject", controller_id=first.id, subject_email="kept@people.example", basis="litigation", until=None, by=SYSTEM, now=CLOSED
    )
    at = CLOSED + RECORDS + SECOND
    lines = {li.controller_id: li for li in clock_preview(session, at, "dsr_records")}
    assert (lines[first.id].due, lines[first.id].held) == (1, {f"hold {on_second.id}: regulator_request": 1, f"hold {on_subject.id}: litigation": 1})
    assert (lines[None].due, lines[None].held, lines[None].desk_label) == (1, {}, "desk")
    result = clock_run(session, at, only_category="dsr_records")
    assert _identity(session, shared)[1] == "subject@people.example"
    assert _identity(session, subject_held)[1] == "Kept@People.example"
    assert _identity(session, free)[1] is None and _identity(session, nobody)[1] is None
    counts = ledger(session, result.run_id)["dsr_records"]
    held_by = {f"hold {on_second.id}: regulator_request": 1, f"hold {on_subject.id}: litigation": 1}
    assert counts[str(first.id)] | {"changed": 0} == {"due": 3, "anonymised": 1, "held": 2, "changed": 0, "held_by": held_by}
    assert counts["*"]["anonymised"] == 1
    holds.lift(session, on_second.id, by=SYSTEM, now=at)
    holds.lift(session, on_subject.id, by=SYSTEM, now=at)
    clock_run(session, at + SECOND, only_category="dsr_records")
    assert _identity(session, shared)[1] is None and _identity(session, subject_held)[1] is None


def test_an_export_file_goes_one_second_after_30_days_and_its_row_stays(session: Session) -> None:
    controller = make_controller(session)
    dsr = closed_dsr(session, [controller], CLOSED)
    export = export_file(session, dsr, controller, CLOSED)
    export_id, blob_id = export.id, export.blob_id
    clock_run(session, CLOSED + EXPORTS - SECOND, only_category="export_files")
    session.expire_all()
    assert session.get(Blob, blob_id) is not None
    at = CLOSED + EXPORTS + SECOND
    [line] = clock_preview(session, at, "export_files")
    assert (line.controller_id, line.due, line.unit) == (controller.id, 1, "export file(s)")
    result = clock_run(session, at, only_category="export_files")
    session.expire_all()
    row = session.get(SubjectExport, export_id)
    assert row is not None and row.blob_id is None and row.deleted_at == at and session.get(Blob, blob_id) is None
    counts = ledger(session, result.run_id)["export_files"][str(controller.id)]
    assert (counts["due"], counts["deleted"], counts["held"]) == (1, 1, 0)


def test_a_controller_or_subject_hold_keeps_an_export_and_lifting_releases_it(session: Session) -> None:
    controller = make_controller(session)
    held_subject = export_file(session, closed_dsr(session, [controller], CLOSED, email="held@people.example"), controller, CLOSED).id
    other = export_file(session, closed_dsr(session, [controller], CLOSED, email="other@people.example"), controller, CLOSED).id
    hold = holds.place(
        session, kind="subject", controller_id=controller.id, subject_email="HELD@people.example", basis="litigation", until=None, by=SYSTEM, now=CLOSED
    )
    at = CLOSED + EXPORTS + SECOND
    [line] = clock_preview(session, at, "export_files")
    assert (line.due, line.held) == (1, {f"hold {hold.id}: litigation": 1})
    result = clock_run(session, at, only_category="export_files")
    session.expire_all()
    assert session.get(SubjectExport, held_subject).blob_id is not None  # type: ignore[union-attr]
    assert session.get(SubjectExport, other).blob_id is None  # type: ignore[union-attr]
    assert ledger(session, result.run_id)["export_files"][str(controller.id)]["held"] == 1
    holds.lift(session, hold.id, by=SYSTEM, now=at)
    on_controller = holds.place(
        session, kind="controller", controller_id=controller.id, basis="accounting", until=at + dt.timedelta(days=10), by=SYSTEM, now=at
    )
    [line] = clock_preview(session, at + SECOND, "export_files")
    assert (line.due, line.held) == (0, {f"hold {on_controller.id}: accounting": 1})
    clock_run(session, at + dt.timedelta(days=10) + SECOND, only_category="export_files")
    session.expire_all()
    assert session.get(SubjectExport, held_subject).blob_id is None  # type: ignore[union-attr]


def test_an_exports_own_seven_day_expiry_keeps_what_a_hold_covers_until_the_hold_ends(session: Session) -> None:
    # Given two exports past their own keeping time, one of a subject under a dated hold
    controller = make_controller(session)
    held_export = export_file(session, closed_dsr(session, [controller], CLOSED, email="held@people.example"), controller, CLOSED)
    free_export = export_file(session, closed_dsr(session, [controller], CLOSED, email="free@people.example"), controller, CLOSED)
    for item in (held_export, free_export):
        item.expires_at = CLOSED + dt.timedelta(days=7)
    until = CLOSED + dt.timedelta(days=20)
    holds.place(
        session, kind="subject", controller_id=controller.id, subject_email="held@people.example", basis="accounting", until=until, by=SYSTEM, now=CLOSED
    )
    held_id, free_id = held_export.id, free_export.id
    # When the subject-data sweep expires exports a day after their keeping time
    assert expire(session, now=CLOSED + dt.timedelta(days=8)) == 1
    session.expire_all()
    # Then only the unheld one's file is gone
    assert session.get(SubjectExport, held_id).blob_id is not None  # type: ignore[union-attr]
    assert session.get(SubjectExport, free_id).blob_id is None  # type: ignore[union-attr]
    # And the held one goes at the first sweep after the hold's end, not one second before
    assert expire(session, now=until - SECOND) == 0
    assert expire(session, now=until + SECOND) == 1
    session.expire_all()
    assert session.get(SubjectExport, held_id).blob_id is None  # type: ignore[union-attr]
