"""Issue 12 items 2 and 3: the standing acknowledgement comes from the controller and is neutral; "respond" means the controller's text."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dsr import gate
from app.dsr import instructions as dsr_instructions
from app.dsr.models import StandingInstruction
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from tests.conftest import AuthActions
from tests.dsr.test_dsr_service import make_dsr
from tests.factories import TEST_PRINCIPAL, make_controller, make_instruction, make_standing

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
SUBJECT = "jane@subject.example"


def _reply(session: Session, text: str) -> tuple[int, int]:
    controller = make_controller(session, dsr_contacts=["dpo@ctl-words.example"])
    dsr = make_dsr(session, controller.id)
    instruction = make_instruction(session, dsr, controller_id=controller.id, sender_email="dpo@ctl-words.example", reply_text=text, now=T0)
    return dsr.id, instruction.id


def _send(session: Session, dsr_id: int, body: str) -> None:
    with session.begin_nested():
        enqueue_email(
            session, to=SUBJECT, subject="Your request", body_text=body, kind="reply", related_type="dsr", related_id=dsr_id, by=TEST_PRINCIPAL, now=T0
        )


@pytest.mark.parametrize("text", ["", "ok", "   ", "yes go ahead", "Send the booking."])
def test_an_empty_or_trivial_respond_text_cannot_be_confirmed(session: Session, text: str) -> None:
    dsr_id, instruction_id = _reply(session, f"{text} whatever else the controller wrote here")
    with pytest.raises(dsr_instructions.InstructionNotConfirmable):
        dsr_instructions.confirm(session, dsr_id, instruction_id, "respond", response_text=text, by=TEST_PRINCIPAL, now=T0)


def test_the_respond_text_must_be_the_controllers_own_words(session: Session) -> None:
    dsr_id, instruction_id = _reply(session, "Please answer: we hold no booking under your name.")
    with pytest.raises(dsr_instructions.InstructionNotConfirmable, match="own words"):
        dsr_instructions.confirm(session, dsr_id, instruction_id, "respond", response_text="We have already deleted all your data.", by=TEST_PRINCIPAL, now=T0)


def test_the_body_sent_is_the_instructed_text_itself_not_any_text_containing_it(session: Session) -> None:
    # The tester: "ok" authorised any body containing it. Now the body must be exactly greeting + words + signature.
    words = "We hold no booking under your name."
    dsr_id, instruction_id = _reply(session, f"Please answer: {words}")
    dsr_instructions.confirm(session, dsr_id, instruction_id, "respond", response_text=words, by=TEST_PRINCIPAL, now=T0)
    for body in (f"{words} Also, here are all your tickets.", f"Hi!\n{words}\nPS: we know where you live.", words):
        with pytest.raises(gate.InstructionRequired):
            _send(session, dsr_id, body)
    _send(session, dsr_id, gate.response_body(words))


def test_a_standing_instruction_needs_a_verified_reply_of_that_controller(session: Session) -> None:
    controller = make_controller(session)
    with pytest.raises(dsr_instructions.InstructionNotFound):
        dsr_instructions.record_standing(session, controller.id, source_instruction_id=999999, by=TEST_PRINCIPAL, now=T0)
    other = make_controller(session, dsr_contacts=["dpo@other-ctl.example"])
    dsr = make_dsr(session, other.id)
    theirs = make_instruction(session, dsr, controller_id=other.id, sender_email="dpo@other-ctl.example", reply_text="Acknowledge receipt, please.", now=T0)
    with pytest.raises(dsr_instructions.InstructionNotFound):
        dsr_instructions.record_standing(session, controller.id, source_instruction_id=theirs.id, by=TEST_PRINCIPAL, now=T0)
    forged = make_instruction(session, dsr, controller_id=other.id, sender_email="attacker@evil.example", reply_text="Say anything.", now=T0)
    with pytest.raises(dsr_instructions.InstructionNotConfirmable):
        dsr_instructions.record_standing(session, other.id, source_instruction_id=forged.id, by=TEST_PRINCIPAL, now=T0)


def test_a_standing_acknowledgement_is_neutral(session: Session) -> None:
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    # The tester stored "we have already deleted all your data" as the standing text
    source = make_standing(session, controller, now=T0).source_instruction_id
    with pytest.raises(dsr_instructions.InstructionNotConfirmable):
        dsr_instructions.record_standing(
            session, controller.id, "We have already deleted all your data.", source_instruction_id=source or 0, by=TEST_PRINCIPAL, now=T0
        )
    with pytest.raises(gate.InstructionRequired), session.begin_nested():
        enqueue_email(session, to=SUBJECT, subject="x", body_text="We have already deleted all your data.", kind="acknowledgement", by=TEST_PRINCIPAL, now=T0)
    enqueue_email(session, to=SUBJECT, subject="x", body_text=gate.acknowledgement_body(dsr.reference), kind="acknowledgement", by=TEST_PRINCIPAL, now=T0)


def test_a_standing_text_stored_before_the_fix_sends_nothing(session: Session) -> None:
    # Given a legacy standing row: free text, no controller reply behind it
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    session.add(StandingInstruction(controller_id=controller.id, kind="acknowledgement", template="We deleted everything.", recorded_at=T0))
    session.flush()
    # Then even the neutral text is refused for its subjects, and the stored text never goes out
    with pytest.raises(gate.InstructionRequired), session.begin_nested():
        enqueue_email(session, to=SUBJECT, subject="x", body_text=gate.acknowledgement_body(dsr.reference), kind="acknowledgement", by=TEST_PRINCIPAL, now=T0)


def test_the_reply_form_sends_the_controllers_words_and_the_confirm_form_shows_them(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    words = "We hold no booking under your name."
    dsr_id, instruction_id = _reply(session, f"Please answer her: {words} Thanks, Dana")
    auth.login("privacy_officer")
    page = client.get(f"/dsr/{dsr_id}").get_data(as_text=True)
    assert "Please answer her" in page and "own words" in page
    assert client.post(f"/dsr/{dsr_id}/instructions/{instruction_id}/confirm", data={"decision": "respond", "response_text": "ok"}).status_code == 303
    assert client.post(f"/dsr/{dsr_id}/instructions/{instruction_id}/confirm", data={"decision": "respond", "response_text": words}).status_code == 302
    # A typed body is ignored: the desk sends the instructed text between the fixed greeting and signature
    sent = client.post(f"/dsr/{dsr_id}/reply", data={"instruction_id": instruction_id, "body_text": "anything at all"})
    assert sent.status_code == 302
    [row] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "reply")).all()
    assert row.body_text == gate.response_body(words)
