"""Inbound mail and DSRs: the privacy address opens a request, other mail may be suggested, replies to a forward become instructions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dsr import forward as dsr_forward
from app.dsr.gate import acknowledgement_body
from app.dsr.models import Dsr, DsrSuggestion, Instruction
from app.dsr.requests import DsrInput, create_dsr
from app.dsr.settings import DsrSettings
from app.mail.inbound import IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from tests.factories import TEST_PRINCIPAL, make_controller, make_standing

SETTINGS = IngestSettings(support_address="privacy@desk.example")
NOW = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.UTC)


def mail(to: str, body: str, *, msgid: str, sender: str = "Kim Lee <kim@mailbox.example>", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Hello\r\nMessage-ID: <{msgid}>\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def test_mail_to_the_privacy_address_opens_a_request_timed_from_its_arrival(session: Session) -> None:
    controller = make_controller(session, domains=["kimcorp.example"])
    outcome = ingest_message(
        session,
        mail("privacy@desk.example", "Bitte löschen Sie meine Daten.", msgid="a1@x", sender="kim@kimcorp.example"),
        settings=SETTINGS,
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).one()
    assert dsr.source == "privacy_address" and dsr.received_at == NOW and dsr.types == ["erasure"]
    assert dsr.subject_email == "kim@kimcorp.example" and dsr.controller_ids == [controller.id]


def test_other_mail_that_reads_like_a_request_is_only_suggested(session: Session) -> None:
    outcome = ingest_message(
        session, mail("support@desk.example", "Please send me a copy of my personal data.", msgid="a2@x"), settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW
    )
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).first() is None
    suggestion = session.scalars(select(DsrSuggestion).where(DsrSuggestion.ticket_id == outcome.ticket_id)).one()
    assert suggestion.types == ["access"] and suggestion.state == "open"


def test_an_auto_reply_to_the_privacy_address_is_not_a_request(session: Session) -> None:
    outcome = ingest_message(
        session,
        mail("privacy@desk.example", "I am out of the office.", msgid="a3@x", extra="Auto-Submitted: auto-replied\r\n"),
        settings=SETTINGS,
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).first() is None


def test_a_reply_to_the_forward_threads_onto_the_ticket_and_becomes_an_instruction(session: Session) -> None:
    make_controller(session, domains=["kimcorp2.example"], dsr_contacts=["dpo@kimcorp2.example"])
    outcome = ingest_message(
        session, mail("privacy@desk.example", "Delete my data.", msgid="a4@x", sender="kim@kimcorp2.example"), settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW
    )
    dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).one()
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    forward = session.scalars(select(OutboxEmail).where(OutboxEmail.related_id == dsr.id, OutboxEmail.kind == "dsr_forward")).one()
    reply = mail(
        "privacy@desk.example", "Go ahead and erase.\r\n\r\n> quoted forward", msgid="r1@kimcorp2.example", sender="dpo@kimcorp2.example",
        extra=f"In-Reply-To: {forward.message_id}\r\nAuthentication-Results: mx; dkim=fail; spf=pass\r\n",
    )  # fmt: skip
    joined = ingest_message(session, reply, settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW + dt.timedelta(hours=3))
    assert joined.ticket_id == dsr.ticket_id and not joined.new_ticket
    instruction = session.scalars(select(Instruction).where(Instruction.dsr_id == dsr.id)).one()
    assert instruction.state == "pending" and instruction.auth_verdict == "dkim=fail spf=pass"
    assert instruction.reply_text is not None and instruction.reply_text.startswith("Go ahead and erase.")
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == dsr.ticket_id)).one().id == dsr.id  # no second request from the reply


def test_a_neutral_acknowledgement_goes_out_only_under_a_standing_instruction(session: Session) -> None:
    with_standing = make_controller(session, domains=["ack-yes.example"])
    make_controller(session, domains=["ack-no.example"])
    make_standing(session, with_standing, now=NOW)
    for n, domain in enumerate(("ack-yes.example", "ack-no.example")):
        ingest_message(
            session,
            mail("privacy@desk.example", "Delete my data please.", msgid=f"ack{n}@x", sender=f"sam@{domain}"),
            settings=SETTINGS,
            by=TEST_PRINCIPAL,
            now=NOW,
        )
    acks = list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")))
    [dsr_yes] = session.scalars(select(Dsr).where(Dsr.subject_email.matches(session, "sam@ack-yes.example"))).all()
    # The neutral text only: receipt and the reference (issue 12 item 2)
    assert [(a.to_addr, a.body_text) for a in acks] == [("sam@ack-yes.example", acknowledgement_body(dsr_yes.reference))]
    assert "sam" not in acks[0].subject


def test_with_a_separate_support_address_only_privacy_mail_opens_a_request(session: Session) -> None:
    # Given SUPPORT_ADDRESS and PRIVACY_ADDRESS set apart, as an operator would configure them
    settings = IngestSettings.from_config({"SUPPORT_ADDRESS": "help@desk.example", "PRIVACY_ADDRESS": "privacy@desk.example"})
    # When an ordinary question reaches the support address
    support = ingest_message(session, mail("help@desk.example", "My invoice is wrong.", msgid="s1@x"), settings=settings, by=TEST_PRINCIPAL, now=NOW)
    # Then it is a ticket and no request
    assert support.ticket_id is not None
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == support.ticket_id)).first() is None
    # And mail to the privacy address still opens a request with its clock running
    privacy = ingest_message(session, mail("privacy@desk.example", "Please delete my data.", msgid="s2@x"), settings=settings, by=TEST_PRINCIPAL, now=NOW)
    dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == privacy.ticket_id)).one()
    assert dsr.received_at == NOW and dsr.due_at == NOW + dt.timedelta(hours=24)


def test_a_reply_to_the_acknowledgement_threads_onto_the_requests_ticket_and_opens_no_second_request(session: Session) -> None:
    # Given a request by mail whose controller allows a neutral acknowledgement, and the acknowledgement queued
    controller = make_controller(session, domains=["ack-reply.example"])
    standing_request = session.get(Instruction, make_standing(session, controller, now=NOW).source_instruction_id).dsr_id  # type: ignore[union-attr]
    first = ingest_message(
        session,
        mail("privacy@desk.example", "Delete my data please.", msgid="ackr1@x", sender="sam@ack-reply.example"),
        settings=SETTINGS,
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == first.ticket_id)).one()
    ack = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "acknowledgement", OutboxEmail.related_id == dsr.ticket_id)).one()
    # When the subject answers the acknowledgement, to the privacy address again
    reply = mail(
        "privacy@desk.example", "Thanks. Also delete my newsletter address.", msgid="ackr2@x", sender="sam@ack-reply.example",
        extra=f"In-Reply-To: {ack.message_id}\r\nReferences: {ack.message_id}\r\n",
    )  # fmt: skip
    joined = ingest_message(session, reply, settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW + dt.timedelta(hours=1))
    # Then the answer joins the request's ticket, and the subject still has one request
    assert (joined.ticket_id, joined.new_ticket, joined.how) == (dsr.ticket_id, False, "outbox")
    assert joined.claim is None
    # the test's transaction holds no other request (but the one the standing instruction's reply answered)
    assert [d for d in session.scalars(select(Dsr)) if d.id != standing_request] == [dsr]


def test_a_reply_to_any_contacts_forward_of_a_request_without_a_ticket_becomes_an_instruction(session: Session) -> None:
    # Given a request staff entered by hand (no ticket) for a controller with two DSR contacts, forwarded to both
    controller = make_controller(session, domains=["twocontacts.example"], dsr_contacts=["dpo@twocontacts.example", "legal@twocontacts.example"])
    dsr = create_dsr(
        session,
        DsrInput(types=["access"], subject_email="pat@mailbox.example"),
        source="staff",
        received_at=NOW,
        ticket=None,
        controller_ids=[controller.id],
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    forwards = list(session.scalars(select(OutboxEmail).where(OutboxEmail.related_id == dsr.id, OutboxEmail.kind == "dsr_forward").order_by(OutboxEmail.id)))
    assert len(forwards) == 2
    # When the second contact answers its own copy of the forward
    reply = mail(
        "privacy@desk.example", "Please provide the data to us.", msgid="legal1@twocontacts.example", sender="legal@twocontacts.example",
        extra=f"In-Reply-To: {forwards[1].message_id}\r\n",
    )  # fmt: skip
    outcome = ingest_message(session, reply, settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW + dt.timedelta(hours=2))
    # Then it is that controller's pending instruction on the request, and not a new request
    assert outcome.claim is not None and (outcome.claim.handler, outcome.claim.code) == ("dsr.instruction", "instruction")
    instruction = session.scalars(select(Instruction).where(Instruction.dsr_id == dsr.id)).one()
    assert (instruction.controller_id, instruction.state, instruction.sender_email) == (controller.id, "pending", "legal@twocontacts.example")
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).first() is None
