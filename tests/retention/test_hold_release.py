"""When a legal hold ends, what it kept from a DSR erasure is erased by the next retention run, and the controller is told.

Driven as an operator would: `retention hold add|lift` and `retention run` on the command line, the clock moved
with the time-travel library one second either side of a hold's end (issue 14 item 2, Pexgle §13.3).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import time_machine
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.deletion import service as deletion
from app.deletion.models import DeletionRun
from app.dsr.models import DsrEvent
from app.mail.models import OutboxEmail
from app.retention import holds
from app.subject_data import closing
from app.subject_data.models import SubjectRun
from app.tickets.models import Message, Ticket
from tests.conftest import AuthActions
from tests.deletion.support import drain as drain_engine
from tests.deletion.support import make_tickets, remaining
from tests.factories import make_controller
from tests.retention.support import SYSTEM, erase_under_instruction, run_now
from tests.subject_data.support import CANARIES, CANARY_EMAIL, CANARY_NAME, SETTINGS, T0, Scene, scene

SECOND = dt.timedelta(seconds=1)
CONTACT = "dpo@ctl-subject.example"


def _cli(runner: FlaskCliRunner, *args: str) -> str:
    result = runner.invoke(args=["retention", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _place(runner: FlaskCliRunner, *args: str) -> int:
    found = re.search(r"hold (\d+) placed", _cli(runner, "hold", "add", *args))
    assert found, "no hold id in the output"
    return int(found.group(1))


def _with_canary(session: Session, sc: Scene) -> set[int]:
    """The subject's tickets (and the bystander's) whose messages still name the subject."""
    ids = [t.id for t in sc.tickets] + [sc.bystander.id]
    return {m.ticket_id for m in session.scalars(select(Message).where(Message.ticket_id.in_(ids))) if CANARY_NAME in (m.body_text or "")}


def _notices(session: Session, kind: str = "dsr_hold_release") -> list[OutboxEmail]:
    return list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))


def _releases(session: Session) -> list[DeletionRun]:
    return list(session.scalars(select(DeletionRun).where(DeletionRun.authority_kind == "hold_release").order_by(DeletionRun.id)))


def _no_personal_data(notice: OutboxEmail) -> None:
    text = f"{notice.subject}\n{notice.body_text}".lower()
    assert not [c for c in CANARIES if c in text]


def test_a_dated_hold_keeps_an_erasure_to_its_last_second_and_the_first_run_after_erases_and_tells_the_controller(
    runner: FlaskCliRunner, session: Session
) -> None:
    # Given a subject hold on the accounting basis through 2026-12-31, and the subject's erasure under it
    with time_machine.travel(T0, tick=False):
        sc = scene(session)
        session.commit()
        subject = ["--subject", CANARY_EMAIL, "--controller", str(sc.controller.id)]
        hold_id = _place(runner, *subject, "--basis", "accounting", "--note", "FY2026 invoices", "--until", "2026-12-31")
        record = erase_under_instruction(session, sc)
        kept = len(record.report["kept"])
        assert kept > 0 and _with_canary(session, sc) == {*(t.id for t in sc.tickets), sc.bystander.id}
        # Then the completion notice names the hold: its basis and text, its last day, and how many items it keeps
        closing.close(session, sc.dsr.id, settings=SETTINGS, by=SYSTEM, now=T0)
        completion = _notices(session, "dsr_completion")[0]
        held_line = f"{kept} item(s) kept under legal hold {hold_id}: accounting records (statutory retention) (FY2026 invoices), until 2026-12-31"
        assert held_line in (completion.body_text or "")
        _no_personal_data(completion)
        session.commit()
    end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    # When retention runs one second before the hold ends: nothing of the subject is touched, nobody is told
    with time_machine.travel(end - SECOND, tick=False):
        _cli(runner, "run")
    session.expire_all()
    assert _with_canary(session, sc) == {*(t.id for t in sc.tickets), sc.bystander.id}
    assert _releases(session) == [] and _notices(session) == []
    # When it runs one second after: what the hold kept is erased, under the controller's instruction
    with time_machine.travel(end + SECOND, tick=False):
        out = _cli(runner, "run")
    session.expire_all()
    assert "hold_release due" in out
    assert _with_canary(session, sc) == set()
    assert all(t.requester_email is None for t in session.scalars(select(Ticket).where(Ticket.id.in_([t.id for t in sc.tickets]))))
    [release] = _releases(session)
    assert release.state == "done" and release.authority_id == record.deletion_run_id and release.report.get("kept", []) == []
    # And the controller's DSR contact is told, through the outbox, with the hold and its end, nothing of the subject
    [notice] = _notices(session)
    assert notice.to_addr == CONTACT and str(sc.dsr.reference) in notice.subject
    body = notice.body_text or ""
    assert f"legal hold {hold_id}: accounting records (statutory retention) (FY2026 invoices), until 2026-12-31; the hold ended on 2027-01-01" in body
    assert "is now erased" in body
    _no_personal_data(notice)
    # And the ledger counts the release once, the audit log names it, the request's history says so
    ledger = json.loads(_cli(runner, "runs", "--json"))
    counts = ledger[0]["counts"]["hold_release"][str(sc.controller.id)]
    assert counts["due"] == counts["deleted"] == kept and counts["changed"] > 0 and counts["held"] == 0
    audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.hold_release")).one()
    assert audit.details["holds"] == [hold_id] and audit.details["source_run"] == record.deletion_run_id
    codes = session.scalars(select(DsrEvent.code).where(DsrEvent.dsr_id == sc.dsr.id)).all()
    assert "hold_release_started" in codes and "hold_release_done" in codes
    # And a later run releases nothing again
    with time_machine.travel(end + 2 * SECOND, tick=False):
        _cli(runner, "run")
    session.expire_all()
    assert len(_releases(session)) == 1 and len(_notices(session)) == 1


def test_a_lifted_litigation_hold_releases_at_once_and_the_run_page_says_what_was_kept(
    runner: FlaskCliRunner, session: Session, client: FlaskClient, auth: AuthActions
) -> None:
    # Given a litigation hold "until lifted" on the controller, and the subject's erasure kept whole under it
    with time_machine.travel(T0, tick=False):
        sc = scene(session)
        session.commit()
        hold_id = _place(runner, "--controller", str(sc.controller.id), "--basis", "litigation", "--note", "Case 12/2026", "--indefinite")
        record = erase_under_instruction(session, sc)
        session.commit()
        # Then the run's page lists the hold with its basis, "until lifted" and the count
        auth.login("privacy_officer")
        page = client.get(f"/subject-data/runs/{record.id}").get_data(as_text=True)
        assert f"hold {hold_id}" in page and "litigation (Case 12/2026)" in page and "until lifted" in page
        assert f"<td>{len(record.report['kept'])}</td>" in page
        # and the request's page says it under the run
        dsr_page = client.get(f"/dsr/{sc.dsr.id}").get_data(as_text=True)
        assert f"{len(record.report['kept'])} item(s) kept under legal hold {hold_id}: litigation (Case 12/2026), until lifted" in dsr_page
        # When the hold is lifted and retention runs the same minute
        _cli(runner, "hold", "lift", str(hold_id))
        # (the dry run says what the run will take, changing nothing)
        kept = len(record.report["kept"])
        preview = _cli(runner, "run", "--dry-run")
        assert f"would take {kept} item(s) deletion run {record.deletion_run_id} kept under ended hold(s) {hold_id}" in preview
        owed = [p for p in json.loads(_cli(runner, "run", "--dry-run", "--json")) if p["category"] == "hold_release"]
        assert owed == [{"category": "hold_release", "controller_id": sc.controller.id, "source_run": record.deletion_run_id, "holds": [hold_id], "due": kept}]
        assert _releases(session) == []
        retention_page = client.get("/retention/").get_data(as_text=True)
        assert f"take what deletion run {record.deletion_run_id} kept" in retention_page and f"released: hold {hold_id} ended" in retention_page
        _cli(runner, "run")
    session.expire_all()
    # Then the erasure is complete and the controller is told
    assert _with_canary(session, sc) == set()
    [notice] = _notices(session)
    assert f"legal hold {hold_id}: litigation (Case 12/2026), until lifted; the hold ended on {T0.date().isoformat()}" in (notice.body_text or "")
    _no_personal_data(notice)
    release = session.scalars(select(SubjectRun).where(SubjectRun.dsr_id == sc.dsr.id, SubjectRun.id != record.id)).one()
    assert release.state == "done" and release.instruction_id == record.instruction_id
    with time_machine.travel(T0, tick=False):
        page = client.get(f"/subject-data/runs/{release.id}").get_data(as_text=True)
    assert f"erase run {record.id}" in page


def test_of_two_overlapping_holds_lifting_one_keeps_what_the_other_covers_until_it_ends(runner: FlaskCliRunner, session: Session) -> None:
    # Given a hold on the subject's first ticket through 2027-06-30 and a litigation hold on the whole controller
    with time_machine.travel(T0, tick=False):
        sc = scene(session)
        session.commit()
        first = sc.tickets[0]
        ticket_hold = _place(runner, "--ticket", str(first.reference), "--basis", "aml_kyc", "--until", "2027-06-30")
        controller_hold = _place(runner, "--controller", str(sc.controller.id), "--basis", "litigation", "--indefinite")
        erase_under_instruction(session, sc)
        session.commit()
        # When the controller's hold is lifted and retention runs
        _cli(runner, "hold", "lift", str(controller_hold))
        _cli(runner, "run")
    session.expire_all()
    # Then everything but the ticket still on hold is erased, and the controller is told what stays and until when
    assert _with_canary(session, sc) == {first.id}
    [notice] = _notices(session)
    body = notice.body_text or ""
    assert "Still kept under a legal hold in force" in body
    assert re.search(rf"\d+ item\(s\) kept under legal hold {ticket_hold}: anti-money-laundering / know-your-customer records, until 2027-06-30\n", body)
    _no_personal_data(notice)
    # When retention runs one second before the ticket's hold ends, nothing more; one second after, the rest goes
    end = dt.datetime(2027, 7, 1, tzinfo=dt.UTC)
    with time_machine.travel(end - SECOND, tick=False):
        _cli(runner, "run")
    session.expire_all()
    assert _with_canary(session, sc) == {first.id} and len(_releases(session)) == 1
    with time_machine.travel(end + SECOND, tick=False):
        _cli(runner, "run")
    session.expire_all()
    assert _with_canary(session, sc) == set()
    first_release, second_release = _releases(session)
    assert second_release.authority_id == first_release.id and second_release.state == "done"
    assert len(_notices(session)) == 2
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "retention.hold_release"))
    assert total == 2


@pytest.mark.parametrize("scope", ["controller", "tickets"])
def test_what_a_hold_kept_from_a_run_without_a_release_hook_is_taken_on_its_tickets_or_its_controller(session: Session, scope: str) -> None:
    # Given a termination-style run (no domain hooks) over a controller's tickets, one ticket under a dated hold
    controller = make_controller(session)
    made = make_tickets(session, controller, 3, messages=1, now=T0)
    held = made.ticket_ids[1]
    end = T0 + dt.timedelta(days=10)
    holds.place(session, kind="ticket", ticket_id=held, basis="accounting", until=end, by=SYSTEM, now=T0)
    target = deletion.Scope.controller(controller.id) if scope == "controller" else deletion.Scope.tickets(tuple(made.ticket_ids), controller_id=controller.id)
    source = deletion.start(session, deletion.Authority("termination", controller.id), target, "delete", by=SYSTEM, now=T0)
    drain_engine(session, source.id, by=SYSTEM, now=T0)
    assert remaining(session, made.ticket_ids)["tickets"] == 1
    # When retention runs one second before the hold ends, then one second after
    run_now(session, end - SECOND)
    assert remaining(session, made.ticket_ids)["tickets"] == 1 and _releases(session) == []
    run_now(session, end + SECOND)
    session.expire_all()
    # Then the held ticket goes too, under a release of that run, and nothing is written to a DSR contact
    assert remaining(session, made.ticket_ids)["tickets"] == 0
    [release] = _releases(session)
    assert release.authority_id == source.id and release.scope_kind == scope and release.state == "done"
    assert _notices(session) == []
