"""Message-IDs that differ only in the case of their domain part are the same Message-ID (issue 11 item 3).

RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"; the id-right is a domain, and domains are case-insensitive
(RFC 1034 §3.1, RFC 4343). Some MTAs and mail programs lowercase it (or not) when they quote an id in In-Reply-To,
References or a bounce, so a reply to the desk's acknowledgement or forward, a subject's follow-up that overtook its
original, or a DSN returning our mail must still find what they name, or the desk opens a second ticket and request
with a second 24-hour clock (a loop). The id-left stays exact: it is case-sensitive, and generators use mixed case.
Rows stored before the comparison changed hold the keyed hash of the exact id: they still match the exact id.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crypto.cipher import blind_index
from app.crypto.keys import PLATFORM, cache_for, find_index_key
from app.crypto.message_ids import bare, digest, normalised
from app.dsr import forward as dsr_forward
from app.dsr.models import Instruction
from app.dsr.settings import DsrSettings
from app.mail.models import OutboxEmail
from app.mail.parse import parse_mail
from app.mail.threading import find_sent
from app.tickets.lookup import find_by_message_ids
from app.tickets.models import Message, Ticket
from app.tickets.referenced import MessageReference
from tests.factories import TEST_PRINCIPAL, make_controller
from tests.mail import test_out_of_order as reorder
from tests.mail.test_cases import NOW, count, mail_requests
from tests.mail.test_real_world import _dsn, acks, ingest, request_with_ack


def _domain_upper(message_id: str) -> str:
    """The same Message-ID with its id-right (domain) in upper case: `<a.1@desk.example>` -> `<a.1@DESK.EXAMPLE>`."""
    left, _, right = message_id.rpartition("@")
    return f"{left}@{right.upper()}"


def _left_upper(message_id: str) -> str:
    """Another Message-ID: the id-left in upper case, the domain as it was."""
    left, _, right = message_id.rpartition("@")
    return f"{left.upper()}@{right}"


def _reply(names: str, header: str, *, msgid: str = "re1@acme.example", sender: str = "ann@acme.example") -> bytes:
    # No reference tag in the subject and no +token address: only the Message-ID can thread it.
    return (
        f"From: {sender}\r\nTo: privacy@desk.example\r\nSubject: Re: your mail\r\nMessage-ID: <{msgid}>\r\n{header}: {names}\r\n\r\n"
        "Please also delete my newsletter subscription.\r\n"
    ).encode()


def _exact_digest(session: Session, message_id: str) -> bytes:
    """The keyed hash rows stored before this change hold: of the id exactly as it came (no case folding)."""
    key = find_index_key(session.connection(), cache_for(session), PLATFORM)
    assert key is not None
    return blind_index(key, "text", f"message-id:{bare(message_id)}")


# --- the comparison ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "compared"),
    [
        ("<abc.123@Desk.Example>", "abc.123@desk.example"),
        ("  <AbC.123@DESK.example> ", "AbC.123@desk.example"),  # the id-left keeps its case
        ('<"Q@Left"@Mail.Example>', '"Q@Left"@mail.example'),  # a quoted id-left may hold "@": the last one splits
        ("<x@[IPv6:2001:DB8::1]>", "x@[ipv6:2001:db8::1]"),  # a domain literal is a domain too
        ("NoDomainAtAll", "NoDomainAtAll"),  # not an RFC 5322 msg-id: compared as it is
        ("<x@MÜNCHEN.Example>", "x@mÜnchen.example"),  # only ASCII letters fold, as DNS compares (RFC 4343 §3)
    ],
)
def test_the_domain_part_is_compared_without_case_and_the_id_left_exactly(given: str, compared: str) -> None:
    assert normalised(given) == compared


def test_ids_differing_in_domain_case_share_a_digest_and_ids_differing_in_id_left_case_do_not(session: Session) -> None:
    assert digest(session, "<abc.123@Desk.Example>") == digest(session, "abc.123@desk.example")
    assert digest(session, "<Abc.123@desk.example>") != digest(session, "abc.123@desk.example")


# --- replies to what the desk sent -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["In-Reply-To", "References"])
def test_a_reply_naming_our_acknowledgement_with_its_domain_in_another_case_joins_the_request(session: Session, header: str) -> None:
    # Given a request by mail and the acknowledgement the desk sent (its Message-ID's domain in lower case)
    ack = request_with_ack(session)
    [dsr] = mail_requests(session)
    # When the subject's mail program answers it, quoting the Message-ID with the domain in upper case
    names = _domain_upper(ack.message_id) if header == "In-Reply-To" else f"<older@acme.example> {_domain_upper(ack.message_id)}"
    outcome = ingest(session, _reply(names, header), minutes=10)
    # Then the reply joins the request's ticket: no second request, no second clock, no second acknowledgement
    assert (outcome.status, outcome.ticket_id, outcome.new_ticket) == ("stored", dsr.ticket_id, False)
    assert len(mail_requests(session)) == 1 and acks(session) == 1
    assert count(session, Ticket) == 1


def test_a_controllers_reply_to_our_forward_with_its_domain_in_another_case_is_its_instruction(session: Session) -> None:
    # Given a request forwarded to Acme's DSR contact
    request_with_ack(session)
    [dsr] = mail_requests(session)
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    forward = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_forward")).one()
    # When the controller answers, its MTA having rewritten the domain of the forward's Message-ID as Desk.Example
    left, _, _ = forward.message_id.rpartition("@")
    raw = _reply(f"{left}@Desk.Example>", "In-Reply-To", msgid="dpo-1@acme.example", sender="dpo@acme.example")
    outcome = ingest(session, raw, minutes=60)
    # Then the answer is on the request's ticket as the controller's instruction for it, and opens nothing new
    assert (outcome.ticket_id, outcome.new_ticket) == (dsr.ticket_id, False)
    assert session.scalars(select(Instruction).where(Instruction.dsr_id == dsr.id)).one().state == "pending"
    assert len(mail_requests(session)) == 1


def test_a_reply_naming_our_acknowledgement_with_its_id_left_in_another_case_names_another_message(session: Session) -> None:
    # Given the acknowledgement
    ack = request_with_ack(session)
    [dsr] = mail_requests(session)
    other = _left_upper(ack.message_id)
    assert other != ack.message_id  # the id-left has letters (a hex token)
    # When a message names the id with its id-left in upper case, the domain as sent
    raw = _reply(other, "In-Reply-To", sender="someone@elsewhere.example")
    # Then it is not taken for a reply to the acknowledgement: that is another Message-ID (RFC 5322: id-left is exact)
    assert find_sent(session, parse_mail(raw, attachment_max_bytes=1_000_000)) is None
    outcome = ingest(session, raw, minutes=10)
    assert outcome.new_ticket and outcome.ticket_id != dsr.ticket_id


def test_a_dsn_returning_our_message_id_with_its_domain_in_another_case_marks_that_row(session: Session) -> None:
    # Given the acknowledgement the desk sent
    ack = request_with_ack(session)
    # When the recipient's server returns it with the domain of its Message-ID upper-cased (to the plain address, not VERP)
    outcome = ingest(session, _dsn(f"From: privacy@desk.example\r\nMessage-ID: {_domain_upper(ack.message_id)}\r\n", kind="text/rfc822-headers"))
    # Then the row it reports on is bounced, and no ticket was opened
    assert outcome.status == "bounce" and outcome.exit_code == 0
    assert (ack.state, ack.bounce_status) == ("bounced", "5.1.1")
    assert count(session, Ticket) == 1


# --- inbound messages, in either order of arrival ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("named", "original_id"),
    [
        ("o1@Reorder.Example", "o1@reorder.example"),  # the follow-up's program kept the case, the original's MTA lowered it
        ("o1@reorder.example", "o1@REORDER.Example"),
    ],
)
def test_an_original_after_its_follow_up_naming_it_with_another_domain_case_joins_the_follow_ups_ticket(session: Session, named: str, original_id: str) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    follow_up = reorder.ingest(session, reorder.mail("privacy@desk.example", "Any news?", msgid="f1@reorder.example", names=[named]), 0)
    original = reorder.ingest(session, reorder.mail("privacy@desk.example", "Please delete all my data.", msgid=original_id), 7)
    assert (original.status, original.ticket_id, original.new_ticket, original.how) == ("stored", follow_up.ticket_id, False, "followed_up")
    assert len(reorder.subject_tickets(session, controller)) == 1 and len(reorder.subject_requests(session)) == 1


def test_an_original_after_a_follow_up_naming_its_id_left_in_another_case_opens_its_own_ticket(session: Session) -> None:
    make_controller(session, domains=["reorder.example"])
    follow_up = reorder.ingest(session, reorder.mail("privacy@desk.example", "Any news?", msgid="f1@reorder.example", names=["O1@reorder.example"]), 0)
    original = reorder.ingest(session, reorder.mail("privacy@desk.example", "Please delete all my data.", msgid="o1@reorder.example"), 7)
    assert original.new_ticket and original.ticket_id != follow_up.ticket_id


def test_a_follow_up_naming_a_stored_message_with_its_domain_in_another_case_joins_its_ticket(session: Session) -> None:
    # Given a subject's request whose Message-ID has an upper-case host, as some mail servers write them
    controller = make_controller(session, domains=["reorder.example"])
    original = reorder.ingest(session, reorder.mail("privacy@desk.example", "Please delete my data.", msgid="AM0PR07.a1@AM0PR07MB1.Reorder.Example"), 0)
    # When their follow-up names it with the domain lowered (and another one with the id-left lowered)
    joined = reorder.ingest(
        session, reorder.mail("privacy@desk.example", "Any news?", msgid="f2@reorder.example", names=["AM0PR07.a1@am0pr07mb1.reorder.example"]), 5
    )
    # Then the first joins the request's ticket; the id-left is compared exactly
    assert (joined.ticket_id, joined.new_ticket, joined.how) == (original.ticket_id, False, "in_reply_to")
    assert find_by_message_ids(session, ["am0pr07.a1@AM0PR07MB1.Reorder.Example"]) is None
    assert len(reorder.subject_tickets(session, controller)) == 1 and len(reorder.subject_requests(session)) == 1


# --- rows stored before the comparison changed ---------------------------------------------------------------------


def test_rows_stored_before_still_match_the_exact_id(session: Session) -> None:
    # Given a stored message and a follow-up's reverse index row, both holding the hash of the exact, mixed-case id
    make_controller(session, domains=["reorder.example"])
    stored_id, named_id = "s1@Mail.Reorder.Example", "o9@Mail.Reorder.Example"
    follow_up = reorder.ingest(session, reorder.mail("privacy@desk.example", "Any news?", msgid="f9@reorder.example", names=[named_id]), 0)
    session.execute(update(MessageReference).where(MessageReference.message_id == follow_up.message_pk).values(digest=_exact_digest(session, named_id)))
    raw = reorder.mail("support@desk.example", "My parcel is late.", msgid=stored_id, sender="Pat <pat@reorder.example>", subject="Parcel")
    stored = reorder.ingest(session, raw, 1)
    session.execute(update(Message).where(Message.id == stored.message_pk).values(message_id_bidx=_exact_digest(session, stored_id)))
    session.expire_all()
    # When the same message comes again, a reply names it exactly, and the original of the follow-up arrives under the exact id
    again = reorder.ingest(session, raw, 2)
    reply = reorder.ingest(
        session, reorder.mail("support@desk.example", "Any news?", msgid="r9@reorder.example", sender="Pat <pat@reorder.example>", names=[stored_id]), 3
    )
    original = reorder.ingest(session, reorder.mail("privacy@desk.example", "Please delete my data.", msgid=named_id), 4)
    # Then each still finds what it found before
    assert (again.status, again.message_pk) == ("duplicate", stored.message_pk)
    assert (reply.ticket_id, reply.new_ticket) == (stored.ticket_id, False)
    assert (original.ticket_id, original.new_ticket, original.how) == (follow_up.ticket_id, False, "followed_up")
    # And new rows hold the hash of the compared form (domain folded)
    assert session.scalar(select(Message.message_id_bidx).where(Message.id == reply.message_pk)) == digest(session, "r9@REORDER.EXAMPLE")
