"""DSR services without HTTP: intake, routing, the exactly-once forward, the sweeper, the instruction gate."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.crypto.message_ids import digest
from app.dsr import dashboard as dsr_dashboard
from app.dsr import forward as dsr_forward
from app.dsr import gate
from app.dsr import instructions as dsr_instructions
from app.dsr.errors import InvalidDsr
from app.dsr.models import Dsr, DsrEvent, DsrForward
from app.dsr.requests import DsrInput, assign_controllers, create_from_ticket
from app.dsr.settings import DsrSettings
from app.dsr.sweeper import record_missed_reason, sweep
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from app.tickets import service as tickets
from tests.factories import TEST_PRINCIPAL, make_controller, make_instruction, make_standing, make_user, relay_accepts

SETTINGS = DsrSettings(privacy_address="privacy@desk.example", msgid_domain="desk.example")
T0 = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.UTC)  # a Friday


def make_ticket(session: Session, controller_id: int | None, email: str = "jane@subject.example") -> tickets.Ticket:
    ticket = tickets.create_ticket(
        session, controller_id=controller_id, requester_name="Jane Doe", requester_email=email, subject="My data", by=TEST_PRINCIPAL, now=T0
    )
    tickets.add_message(
        session, ticket, tickets.MessageInput(direction="inbound", body_text="Please delete my data", sender_email=email), by=TEST_PRINCIPAL, now=T0
    )
    return ticket


def make_dsr(session: Session, controller_id: int | None, *, email: str = "jane@subject.example", now: dt.datetime = T0) -> Dsr:
    ticket = make_ticket(session, controller_id, email)
    data = DsrInput(types=["erasure"], subject_email=email, subject_name="Jane Doe", request_text="Delete my account and data.")
    return create_from_ticket(session, ticket.id, data, by=TEST_PRINCIPAL, now=now + dt.timedelta(hours=2))


def outbox_rows(session: Session, kind: str) -> list[OutboxEmail]:
    return list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))


def test_the_clock_runs_from_the_subjects_first_message_not_from_when_staff_noticed(session: Session) -> None:
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    assert dsr.received_at == T0
    assert dsr.due_at == T0 + dt.timedelta(hours=24)
    assert dsr.reference and dsr.reference.startswith("DSR-2026-")
    assert dsr.state == "awaiting_forward" and dsr.controller_ids == [controller.id]


def test_forwarding_twice_forwards_once(session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@c.example", "privacy@c.example"])
    dsr = make_dsr(session, controller.id)
    assert dsr_forward.forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2)) == 1
    assert dsr_forward.forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=3)) == 0
    rows = outbox_rows(session, "dsr_forward")
    assert sorted(r.to_addr for r in rows) == ["dpo@c.example", "privacy@c.example"]
    assert all(dsr.reference in r.subject and "jane" not in r.subject.lower() for r in rows)
    assert "Delete my account" in rows[0].body_text
    session.refresh(dsr)
    # Queued is not forwarded (issue 15 item 1): the clock runs until the relay accepts it
    assert dsr.state == "awaiting_forward" and dsr.forwarded_at is None and dsr.forwards[0].state == "queued"
    relay_accepts(session, dsr.id, now=T0 + dt.timedelta(hours=2, seconds=5))
    session.refresh(dsr)
    assert dsr.state == "forwarded" and dsr.forwarded_at == T0 + dt.timedelta(hours=2, seconds=5)
    assert dsr.forward_seconds == 2 * 3600 + 5
    assert dsr.forwards[0].message_id_bidx == digest(session, rows[0].message_id or "") == rows[0].message_id_bidx


def test_a_subject_known_to_two_controllers_waits_in_triage_with_the_clock_running(session: Session) -> None:
    a, b = make_controller(session), make_controller(session)
    make_ticket(session, a.id, "sam@elsewhere.example")
    make_ticket(session, b.id, "sam@elsewhere.example")
    ticket = make_ticket(session, None, "sam@elsewhere.example")
    dsr = create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email="sam@elsewhere.example"), by=TEST_PRINCIPAL, now=T0)
    assert dsr.state == "triage" and dsr.forwards == []
    assign_controllers(session, dsr.id, [a.id], by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=1))
    assert dsr.state == "awaiting_forward" and dsr.due_at == T0 + dt.timedelta(hours=24)


def test_one_earlier_ticket_routes_the_request_by_blind_index(session: Session) -> None:
    a = make_controller(session)
    make_ticket(session, a.id, "kim@elsewhere.example")
    ticket = make_ticket(session, None, "kim@elsewhere.example")
    dsr = create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email="KIM@elsewhere.example"), by=TEST_PRINCIPAL, now=T0)
    assert dsr.controller_ids == [a.id]


def test_the_sweeper_escalates_at_four_hours_and_marks_a_missed_deadline(session: Session) -> None:
    officer = make_user(session, "privacy_officer")
    ticket = make_ticket(session, None, "lee@nowhere.example")
    dsr = create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email="lee@nowhere.example"), by=TEST_PRINCIPAL, now=T0)
    early = sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=19, minutes=59))
    assert early.escalated == 0
    result = sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=20))
    assert result.escalated == 1
    alerts = outbox_rows(session, "dsr_escalation")
    assert officer.email in [r.to_addr for r in alerts]
    assert all("lee@" not in r.subject for r in alerts)
    again = sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=21))
    assert again.escalated == 0 and again.missed == 0
    late = sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=24))
    assert late.missed == 1
    session.refresh(dsr)
    assert dsr.missed_at == T0 + dt.timedelta(hours=24) and dsr.due_at == T0 + dt.timedelta(hours=24)
    with pytest.raises(InvalidDsr):
        record_missed_reason(session, dsr.id, "short", by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=25))
    record_missed_reason(session, dsr.id, "Two controllers claimed the subject; routing took too long.", by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=25))
    assert {"missed", "missed_reason"} <= {e.code for e in session.scalars(select(DsrEvent).where(DsrEvent.dsr_id == dsr.id))}


def test_the_sweeper_forwards_a_request_whose_doorbell_was_lost(session: Session) -> None:
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    fresh = sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2, minutes=1))
    assert fresh.rung == 1 and fresh.forwarded == 0
    later = sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=8))
    assert later.forwarded == 1
    assert session.scalar(select(func.count()).select_from(DsrForward).where(DsrForward.dsr_id == dsr.id, DsrForward.state == "queued")) == 1


def refusals(session: Session, dsr_id: int) -> int:
    return int(
        session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "dsr.reply_refused", AuditEvent.target_id == str(dsr_id))) or 0
    )


def test_a_reply_to_the_subject_without_an_instruction_is_refused_and_audited(session: Session) -> None:
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    with pytest.raises(gate.InstructionRequired):
        with session.begin_nested():
            enqueue_email(session, to="Jane@Subject.example", subject="Re: your request", body_text="Here you go", kind="reply", by=TEST_PRINCIPAL, now=T0)
    session.commit()  # the edge ends its transaction; the refusal is written after it
    assert refusals(session, dsr.id) == 1
    assert outbox_rows(session, "reply") == []


def test_a_confirmed_respond_instruction_lets_exactly_that_text_through(session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@ctl.example"])
    dsr = make_dsr(session, controller.id)
    dsr_forward.forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2))
    instruction = make_instruction(
        session,
        dsr,
        controller_id=controller.id,
        sender_email="dpo@ctl.example",
        reply_text="Please tell her: Your data has been deleted from all our systems.",
        raw=b"Authentication-Results: mx; dkim=pass spf=pass\r\n\r\nx",
        now=T0 + dt.timedelta(hours=5),
    )
    assert instruction.state == "pending" and instruction.auth_verdict == "dkim=pass spf=pass"
    officer = make_user(session, "privacy_officer")
    by = TEST_PRINCIPAL.staff(officer.id)
    words = "Your data has been deleted from all our systems."
    dsr_instructions.confirm(session, dsr.id, instruction.id, "respond", response_text=words, by=by, now=T0 + dt.timedelta(hours=6))
    with pytest.raises(gate.InstructionRequired):
        with session.begin_nested():
            enqueue_email(
                session, to="jane@subject.example", subject=f"Your request {dsr.reference}", body_text="Something else entirely", kind="reply", by=by, now=T0
            )
    row = enqueue_email(
        session,
        to="jane@subject.example",
        subject=f"Your request {dsr.reference}",
        body_text=gate.response_body(words),  # the controller's words between the fixed greeting and signature (issue 12 item 3)
        kind="reply",
        by=by,
        now=T0,
    )
    assert row.id


def test_a_reply_from_an_unregistered_address_cannot_be_confirmed(session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@ctl2.example"])
    dsr = make_dsr(session, controller.id)
    instruction = make_instruction(session, dsr, controller_id=controller.id, sender_email="attacker@evil.example", reply_text="Send her everything.", now=T0)
    assert instruction.state == "unverified" and instruction.auth_verdict is None
    officer = make_user(session, "privacy_officer")
    with pytest.raises(dsr_instructions.InstructionNotConfirmable):
        dsr_instructions.confirm(session, dsr.id, instruction.id, "no_action", by=TEST_PRINCIPAL.staff(officer.id), now=T0)
    with pytest.raises(gate.NoConfirmedInstruction):
        gate.require_instruction(session, dsr.id, "no_action")


def test_a_standing_instruction_allows_only_its_neutral_acknowledgement(session: Session) -> None:
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    make_standing(session, controller, now=T0)
    template = gate.acknowledgement_body(dsr.reference)
    enqueue_email(
        session, to="jane@subject.example", subject=f"Your request {dsr.reference}", body_text=template, kind="acknowledgement", by=TEST_PRINCIPAL, now=T0
    )
    with pytest.raises(gate.InstructionRequired):
        with session.begin_nested():
            enqueue_email(
                session, to="jane@subject.example", subject="x", body_text=template + " We found 3 tickets.", kind="acknowledgement", by=TEST_PRINCIPAL, now=T0
            )


def test_staff_and_the_controller_may_be_written_to_on_a_dsr_ticket(session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@ctl3.example"])
    dsr = make_dsr(session, controller.id)
    enqueue_email(session, to="dpo@ctl3.example", subject="Question", body_text="x", related_type="ticket", related_id=dsr.ticket_id, by=TEST_PRINCIPAL, now=T0)
    with pytest.raises(gate.InstructionRequired):
        with session.begin_nested():
            enqueue_email(
                session,
                to="cc-person@else.example",
                subject="Question",
                body_text="x",
                related_type="ticket",
                related_id=dsr.ticket_id,
                kind="reply",
                by=TEST_PRINCIPAL,
                now=T0,
            )


def test_the_chart_counts_weeks_and_medians(session: Session) -> None:
    controller = make_controller(session)
    for hours in (1, 3, 30):
        dsr = make_dsr(session, controller.id, now=T0)
        dsr_forward.forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=hours))
        relay_accepts(session, dsr.id, now=T0 + dt.timedelta(hours=hours, seconds=1))
    weeks = dsr_dashboard.chart(session, now=T0 + dt.timedelta(days=2))
    assert len(weeks) == 12
    this = [w for w in weeks if w.start <= T0 < w.start + dt.timedelta(weeks=1)][0]
    assert this.received >= 3 and this.forwarded_in_time >= 2


def test_the_dashboard_reads_the_kept_chart_while_fresh_and_recomputes_when_stale(session: Session) -> None:
    controller = make_controller(session)
    now = T0 + dt.timedelta(days=2)
    kept = dsr_dashboard.refresh_chart(session, now=now)
    # A request forwarded after the chart was kept shows only once the kept chart is stale
    dsr = make_dsr(session, controller.id, now=T0)
    dsr_forward.forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2))
    assert dsr_dashboard.cached_chart(session, now=now + dt.timedelta(minutes=5)) == kept
    fresh = dsr_dashboard.cached_chart(session, now=now + dt.timedelta(minutes=20))
    assert sum(w.received for w in fresh) == sum(w.received for w in kept) + 1


def test_a_reason_written_before_the_rename_still_reads_and_a_new_one_is_bound_the_same_way(session: Session) -> None:
    from app.crypto.cipher import decrypt_field, encrypt_field
    from app.crypto.keys import PLATFORM, active_key, cache_for

    # Given a missed request whose reason was encrypted before migration 0012 (bound to dsrs.breach_reason_ct)
    dsr = make_dsr(session, None)
    key = active_key(session.connection(), cache_for(session), PLATFORM)
    dsr.missed_reason_ct = encrypt_field(key.aead, key.id, b"Written before the rename.", table="dsrs", column="breach_reason_ct", row_uid=dsr.row_uid)
    session.flush()
    session.expire(dsr)
    # Then it decrypts through the renamed field
    assert dsr.missed_reason == "Written before the rename."
    # And a reason written now is bound the same way (one label per column, so key rotation re-encrypts both alike)
    dsr.missed_reason = "Written after the rename."
    session.flush()
    assert dsr.missed_reason_ct is not None
    plain = decrypt_field(key.aead, dsr.missed_reason_ct, table="dsrs", column="breach_reason_ct", row_uid=dsr.row_uid)
    assert plain == b"Written after the rename."


@pytest.mark.parametrize("bad", ["Jane\x00Doe", "\x1b[2J", "\u200b\u200b"], ids=["nul", "escape", "zero-width"])
def test_what_staff_type_into_a_request_is_refused_with_control_characters_or_nothing_visible(session: Session, bad: str) -> None:
    # Given a ticket in triage
    ticket = make_ticket(session, None, "pat@nowhere.example")
    count = session.scalar(select(func.count()).select_from(Dsr))
    # When staff make a request of it with such text as the subject's name, identifiers or request text
    for field in ("subject_name", "subject_identifiers", "request_text"):
        data = DsrInput(types=["access"], subject_email="pat@nowhere.example", **{field: bad})
        with pytest.raises(InvalidDsr, match="the text (contains control characters|has nothing visible)"):
            create_from_ticket(session, ticket.id, data, by=TEST_PRINCIPAL, now=T0)
    # Then no request was recorded
    assert session.scalar(select(func.count()).select_from(Dsr)) == count
    # And a request that missed its deadline takes no such reason, nor a flagged instruction such a concern (long enough)
    dsr = create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email="pat@nowhere.example"), by=TEST_PRINCIPAL, now=T0)
    sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=24))
    with pytest.raises(InvalidDsr, match="reason: the text"):
        record_missed_reason(session, dsr.id, bad * 12, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=25))
    session.refresh(dsr)
    assert dsr.missed_reason_missing is True
    controller = make_controller(session, dsr_contacts=["dpo@flagging.example"])
    routed = make_dsr(session, controller.id)
    instruction = make_instruction(session, routed, controller_id=controller.id, sender_email="dpo@flagging.example", reply_text="Delete it all.", now=T0)
    with pytest.raises(dsr_instructions.InstructionNotConfirmable, match="the text"):
        dsr_instructions.flag(session, routed.id, instruction.id, bad * 12, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0)
    assert instruction.state != "flagged"
