"""Our ticket references (T-…) quoted back by strangers: another helpdesk's answer to our mail is a loop, not a request.

The quoting sender is not on the ticket, so the message does not join it (references are guessable) and is kept on a
ticket of its own; it must not open a second request with a second 24-hour clock and acknowledgement. A reference the
desk never issued is nobody's: such a message to the privacy address is a request like any other."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.tickets.models import Ticket
from tests.factories import TEST_PRINCIPAL
from tests.mail import more_cases as cases
from tests.mail.test_cases import NOW, mail_requests
from tests.mail.test_real_world import acks, ingest, request_with_ack


def test_a_stranger_quoting_our_ticket_reference_in_the_body_subject_opens_no_request(session: Session) -> None:
    # Given a request whose acknowledgement went out
    request_with_ack(session)
    ticket = session.scalars(select(Ticket)).one()
    # When another helpdesk's robot answers with our reference in its subject, in its own words and no threading headers
    subject = f"Ihre Anfrage {ticket.reference} wurde erfasst [Ticket#88213]"
    outcome = ingest(session, cases.plain("noreply@support.example", "privacy@desk.example", subject, "Wir melden uns.", "hd2@t"))
    # Then it is kept (a ticket of its own), and nothing answers it: no second request, no second acknowledgement
    assert outcome.status == "stored" and outcome.ticket_id != ticket.id
    assert len(mail_requests(session)) == 1 and acks(session) == 1


def test_a_reference_the_desk_never_issued_does_not_stop_a_request(session: Session) -> None:
    # Given a desk with one request (ticket T-<year>-000001)
    request_with_ack(session)
    # When a data subject writes to the privacy address with a T-… number of their own (no ticket of ours has it)
    subject = "Delete my data (my case T-2019-987654)"
    ingest(session, cases.plain("bob@acme.example", "privacy@desk.example", subject, "Please delete all my personal data.", "bob@x"))
    # Then it is a request of its own, acknowledged
    assert len(mail_requests(session)) == 2 and acks(session) == 2


def test_a_list_reflecting_our_acknowledgement_opens_nothing_and_replies_still_join_the_request(session: Session) -> None:
    # Given a request whose acknowledgement went out
    ack = request_with_ack(session)
    ticket = session.scalars(select(Ticket)).one()
    # When a mailing list sends our acknowledgement back (its Message-ID, From rewritten, list headers; found by a tester)
    reflected = (
        f"From: Acme Team via list <team@acme.example>\r\nTo: team@acme.example\r\nSubject: Your request\r\n"
        f"Message-ID: {ack.message_id}\r\nList-Id: <team.acme.example>\r\nPrecedence: list\r\n\r\nThank you for your request.\r\n"
    ).encode()
    held = ingest(session, reflected)
    # Then it is held as a loop, not stored as a message of a ticket of its own
    assert (held.status, held.reason, held.exit_code) == ("quarantined", "loop", 0)
    assert session.scalars(select(Ticket)).all() == [ticket]
    # And the data subject's reply to the acknowledgement still joins the request's ticket: no second request
    reply = (
        f"From: Ann Archer <ann@acme.example>\r\nTo: privacy@desk.example\r\nSubject: Re: Your request\r\n"
        f"Message-ID: <reply-after-list@acme.example>\r\nIn-Reply-To: {ack.message_id}\r\nReferences: {ack.message_id}\r\n\r\nThanks!\r\n"
    ).encode()
    joined = ingest(session, reply, minutes=9)
    assert joined.ticket_id == ticket.id and len(mail_requests(session)) == 1 and acks(session) == 1


def test_a_read_receipt_for_our_forward_joins_the_requests_ticket_with_no_empty_attachment(session: Session) -> None:
    from app.dsr import forward as dsr_forward
    from app.dsr.models import Instruction
    from app.dsr.settings import DsrSettings
    from app.mail.models import OutboxEmail
    from app.tickets.models import Attachment

    # Given a request forwarded to Acme's DSR contact
    request_with_ack(session)
    dsr = mail_requests(session)[0]
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    sent = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_forward")).one()
    instructions = len(session.scalars(select(Instruction)).all())
    # When Outlook sends a read receipt (RFC 8098 MDN) for it, with no In-Reply-To (found by a tester)
    receipt = (
        f"From: Assistant <assistant@acme.example>\r\nTo: privacy@desk.example\r\nSubject: Read: Data subject request {dsr.reference}\r\n"
        "Message-ID: <mdn-1@acme.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="M"\r\n\r\n'
        "--M\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n"
        "--M\r\nContent-Type: message/disposition-notification\r\n\r\n"
        f"Final-Recipient: rfc822;dpo@acme.example\r\nOriginal-Message-ID: {sent.message_id}\r\n"
        "Disposition: automatic-action/MDN-sent-automatically; displayed\r\n\r\n--M--\r\n"
    ).encode()
    outcome = ingest(session, receipt, minutes=9)
    # Then it is kept on the request's ticket: no new ticket, no request, no instruction, no empty attachment
    assert outcome.status == "stored" and outcome.ticket_id == dsr.ticket_id and outcome.new_ticket is False
    assert len(mail_requests(session)) == 1 and session.scalars(select(Attachment)).all() == []
    assert len(session.scalars(select(Instruction)).all()) == instructions  # a receipt instructs nothing
