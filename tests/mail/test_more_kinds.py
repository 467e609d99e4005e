"""More unseen cases of each failing kind of issue 11, written as a reviewer would try them after the fix.

Each case goes through `ingest_message` (the service behind `mail ingest`) on the set-up of the shared cases
(Acme with its standing acknowledgement, privacy@ and support@desk.example) and asserts what a user would
notice: the outcome and exit code, tickets, requests and acknowledgements opened, the stored text.
The raw messages are built by `tests.mail.more_cases` (also written out as .eml files for `mail ingest` runs).
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dsr.models import Dsr
from app.mail.inbound import IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from app.tickets.models import Attachment, Message, Ticket
from tests.factories import TEST_PRINCIPAL
from tests.mail import more_cases as cases
from tests.mail.test_cases import NOW, acme, count, mail_requests
from tests.mail.test_real_world import acks, ingest, request_with_ack


def stored(session: Session, raw: bytes, minutes: int = 5) -> Message:
    """Ingest `raw` on the cases' desk; it must be stored (exit 0); returns the stored message."""
    outcome = ingest(session, raw, minutes)
    assert (outcome.status, outcome.exit_code) == ("stored", 0), outcome
    message = session.get(Message, outcome.message_pk)
    assert message is not None
    return message


# --- 1. raw 8-bit headers: never lost, decoded -------------------------------------------------------------------


@pytest.mark.parametrize(("charset", "subject", "name"), cases.RAW_HEADER_CHARSETS, ids=[c[0] for c in cases.RAW_HEADER_CHARSETS])
def test_raw_8bit_subject_and_name_in_a_legacy_charset_are_decoded(session: Session, charset: str, subject: str, name: str) -> None:
    acme(session)
    message = stored(session, cases.raw_header_message(charset, subject, name))
    ticket = message.ticket
    assert (ticket.subject, ticket.requester_name) == (subject, name)


def test_raw_utf8_in_to_and_cc_display_names_still_opens_the_request(session: Session) -> None:
    acme(session)
    stored(session, cases.RAW_TO_CC)
    assert len(mail_requests(session)) == 1 and acks(session) == 1


@pytest.mark.parametrize(("charset", "filename"), [("utf-8", "Kündigung – März.pdf"), ("latin-1", "Löschantrag.pdf"), ("shift_jis", "申請書.pdf")])
def test_a_raw_8bit_attachment_filename_is_kept_readable(session: Session, charset: str, filename: str) -> None:
    acme(session)
    message = stored(session, cases.raw_filename(charset, filename))
    assert [a.filename for a in message.attachments] == [filename]


def test_an_iso_2022_jp_subject_sent_raw_without_encoded_words_is_decoded(session: Session) -> None:
    acme(session)
    message = stored(session, cases.RAW_ISO2022JP_SUBJECT)
    assert message.ticket.subject == "個人情報の削除"


def test_an_rfc6532_address_and_raw_bytes_in_the_message_id_are_stored(session: Session) -> None:
    acme(session)
    message = stored(session, cases.EAI_ADDRESS)
    assert message.ticket.requester_email == "δοκιμή@acme.example" and message.ticket.requester_name == "Δοκιμή Χρήστης"


# --- 2. reused Message-IDs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lf_first", [False, True], ids=["crlf_then_lf", "lf_then_crlf"])
def test_the_same_message_with_other_line_endings_is_a_duplicate(session: Session, lf_first: bool) -> None:
    # Given a message delivered once (by one path: SMTP keeps CRLF, a local pipe or Maildir often hands over LF)
    acme(session)
    crlf = cases.plain("ann@acme.example", "privacy@desk.example", "Delete my data", "Please delete my personal data.", "le@acme.example")
    lf = crlf.replace(b"\r\n", b"\n") + b"\n"
    first = ingest(session, lf if lf_first else crlf)
    # When the same message arrives again by the other path
    again = ingest(session, crlf if lf_first else lf, minutes=6)
    # Then it is a duplicate: not stored twice, no second request or acknowledgement
    assert (again.status, again.exit_code, again.ticket_id, again.message_pk) == ("duplicate", 0, first.ticket_id, first.message_pk)
    assert count(session, Message) == 1 and len(mail_requests(session)) == 1 and acks(session) == 1 and count(session, Ticket) == 1


def test_the_same_message_by_another_path_or_for_another_of_our_addresses_is_a_duplicate(session: Session) -> None:
    # Given a message delivered once (To privacy, Cc support: one copy for each address; a backup MX adds a Received)
    acme(session)
    body = cases.plain("ann@acme.example", "privacy@desk.example", "Delete my data", "Please delete my personal data.", "cc@acme.example")
    first = ingest(session, b"Delivered-To: privacy@desk.example\r\nReceived: from mx1 by desk; Mon, 16 Nov 2026\r\n" + body)
    # When the copy for the other address, through another relay, arrives
    copy = b"Delivered-To: support@desk.example\r\nReceived: from backup-mx by desk;\r\n\tMon, 16 Nov 2026\r\nReceived: from mx2 by backup-mx\r\n" + body
    again = ingest(session, copy, minutes=6)
    # Then it is the same message: not stored twice, no second request; but another body is another message
    assert (again.status, again.message_pk) == ("duplicate", first.message_pk)
    assert count(session, Message) == 1 and len(mail_requests(session)) == 1
    other = ingest(session, copy.replace(b"Please delete", b"Please also delete"), minutes=7)
    assert other.status == "stored" and count(session, Message) == 2


def test_a_different_message_from_the_same_subject_under_a_reused_id_is_kept_on_the_thread(session: Session) -> None:
    acme(session)
    first = ingest(session, cases.plain("ann@acme.example", "privacy@desk.example", "Delete my data", "Please delete my data.", "r@acme.example"))
    other = stored(session, cases.plain("ann@acme.example", "privacy@desk.example", "Also", "And my invoices 7731 too.", "r@acme.example"), 9)
    assert other.ticket_id == first.ticket_id and "invoices 7731" in (other.body_text or "")
    assert any(n.get("code") == "reused_message_id" for n in other.notes or [])
    assert len(mail_requests(session)) == 1 and acks(session) == 1


# --- 3. loops -------------------------------------------------------------------------------------------------------


def test_another_helpdesk_quoting_our_ticket_reference_only_opens_no_second_request(session: Session) -> None:
    # Given a request whose acknowledgement went out
    request_with_ack(session)
    ticket = session.scalars(select(Ticket)).one()
    # When another helpdesk answers with our ticket's reference in the subject (a stranger to the ticket, no threading headers)
    raw = cases.plain("helpdesk@tickets.example", "privacy@desk.example", f"[#5521] Re: {ticket.reference} received", "Thank you, we will reply.", "hd@t")
    ingest(session, raw)
    # Then nothing answers it: no second request, no second acknowledgement
    assert len(mail_requests(session)) == 1 and acks(session) == 1


@pytest.mark.parametrize("header", cases.AUTO_HEADERS)
def test_more_automatic_mail_headers_open_no_request(session: Session, header: str) -> None:
    acme(session)
    ingest(session, cases.plain("robot@acme.example", "privacy@desk.example", "Hello", "Please delete my data.", "ah@x", extra=header))
    assert len(mail_requests(session)) == 0 and acks(session) == 0


def test_auto_submitted_no_is_a_person(session: Session) -> None:
    acme(session)
    ingest(session, cases.plain("ann@acme.example", "privacy@desk.example", "Hello", "Please delete my data.", "no@x", extra="Auto-Submitted: no"))
    assert len(mail_requests(session)) == 1


@pytest.mark.parametrize("subject", cases.AUTO_SUBJECTS)
def test_auto_reply_subjects_in_more_languages_open_no_request(session: Session, subject: str) -> None:
    acme(session)
    ingest(session, cases.plain("ann@acme.example", "privacy@desk.example", subject, "I am out of the office until Monday.", "as@x"))
    assert len(mail_requests(session)) == 0 and acks(session) == 0


@pytest.mark.parametrize("subject", cases.PEOPLES_SUBJECTS)
def test_a_persons_request_whose_subject_starts_like_an_auto_reply_word_is_a_request(session: Session, subject: str) -> None:
    acme(session)
    ingest(session, cases.plain("ann@acme.example", "privacy@desk.example", subject, "Please delete all my personal data.", "ps@x"))
    assert len(mail_requests(session)) == 1


def test_an_out_of_office_sent_to_our_verp_return_path_opens_nothing(session: Session) -> None:
    # RFC 3834 §4: automatic replies go to the Return-Path, which is the outbox row's VERP address.
    ack = request_with_ack(session)
    from app.mail.dsn import verp_local

    verp = verp_local("privacy", ack.message_id) + "@desk.example"
    raw = cases.plain("ann@acme.example", verp, "Out of Office: Your request", "I am away.", "oof-verp@x", extra="Auto-Submitted: auto-replied")
    outcome = ingest(session, raw)
    assert outcome.exit_code == 0 and count(session, Ticket) == 1 and len(mail_requests(session)) == 1 and acks(session) == 1


@pytest.mark.parametrize("sender", ["Privacy Desk <PRIVACY@Desk.Example>", '"ann@acme.example" <privacy@desk.example>', "SUPPORT+Abc123@DESK.EXAMPLE"])
def test_mail_from_our_own_addresses_in_other_spellings_opens_nothing(session: Session, sender: str) -> None:
    acme(session)
    outcome = ingest(session, cases.plain(sender, "privacy@desk.example", "Delete my data", "Delete my data.", "own2@x"))
    assert outcome.exit_code == 0 and count(session, Ticket) == 0 and len(mail_requests(session)) == 0


# --- 4. bounces -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(cases.DSN_SHAPES))
def test_dsns_in_real_mta_formats_mark_the_row_and_open_no_ticket(session: Session, shape: str) -> None:
    ack = request_with_ack(session)
    status, raw = cases.DSN_SHAPES[shape](ack.message_id.strip("<>"), cases.verp(ack.message_id))
    outcome = ingest(session, raw)
    assert (outcome.status, outcome.exit_code) == ("bounce", 0), outcome
    assert (ack.state, ack.bounce_status) == ("bounced", status)
    assert count(session, Ticket) == 1 and count(session, Attachment) == 0 and len(mail_requests(session)) == 1


def test_a_plain_text_bounce_to_the_verp_address_marks_the_row(session: Session) -> None:
    # qmail and some appliances send no multipart/report: the VERP address still names the row.
    ack = request_with_ack(session)
    outcome = ingest(session, cases.qmail_bounce(cases.verp(ack.message_id), ack.message_id))
    assert outcome.exit_code == 0 and ack.state == "bounced" and ack.bounce_status == "5.1.1"
    assert count(session, Ticket) == 1 and len(mail_requests(session)) == 1


def test_a_plain_text_bounce_whose_verp_address_is_only_the_envelope_recipient_marks_the_row(session: Session) -> None:
    # Real bounces often show our plain address in To:; the VERP address is only the MTA's envelope recipient (found by a tester)
    ack = request_with_ack(session)
    raw = cases.qmail_bounce("privacy@desk.example", ack.message_id)
    outcome = ingest_message(
        session, raw, settings=cases_settings(), by=TEST_PRINCIPAL, now=NOW + dt.timedelta(minutes=9), recipient=cases.verp(ack.message_id)
    )
    assert (outcome.status, outcome.exit_code) == ("bounce", 0), outcome
    assert ack.state == "bounced" and count(session, Ticket) == 1 and len(mail_requests(session)) == 1


def test_a_dsn_whose_returned_message_is_base64_encoded_is_matched(session: Session) -> None:
    # RFC 2046 allows only 7bit/8bit/binary for message/rfc822, but gateways base64 it (found by a tester)
    import base64

    ack = request_with_ack(session)
    returned = f"From: privacy@desk.example\r\nTo: ann@acme.example\r\nMessage-ID: {ack.message_id}\r\nSubject: Your request\r\n\r\nHello\r\n"
    encoded = base64.encodebytes(returned.encode()).decode()
    raw = dsn_with_part(f"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}")
    outcome = ingest(session, raw, minutes=9)
    assert (outcome.status, outcome.exit_code) == ("bounce", 0), outcome
    assert (ack.state, ack.bounce_status) == ("bounced", "5.1.1") and count(session, Ticket) == 1


def test_an_exchange_undeliverable_with_a_winmail_dat_to_the_plain_address_marks_the_row(session: Session) -> None:
    # Exchange's NDR: multipart/mixed, text and application/ms-tnef, null sender, the returned headers quoted in the text
    # (found by a tester: it opened a ticket and the forward's escalation never came)
    ack = request_with_ack(session)
    raw = (
        "Return-Path: <>\r\nFrom: postmaster@mail.elsewhere.example\r\nTo: privacy@desk.example\r\nSubject: Undeliverable: Your request\r\n"
        'Message-ID: <ndr-1@mail.elsewhere.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="T"\r\n\r\n'
        "--T\r\nContent-Type: text/plain\r\n\r\nDelivery has failed to these recipients or groups:\r\n\r\nann@acme.example\r\n"
        "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\r\n\r\nOriginal message headers:\r\n\r\n"
        f"From: privacy@desk.example\r\nMessage-ID: {ack.message_id}\r\nSubject: Your request\r\n\r\n"
        '--T\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\nContent-Transfer-Encoding: base64\r\n\r\neJ8+IgAAAQ==\r\n--T--\r\n'
    ).encode()
    outcome = ingest(session, raw, minutes=9)
    assert (outcome.status, outcome.exit_code) == ("bounce", 0), outcome
    assert (ack.state, ack.bounce_status) == ("bounced", "5.1.1") and count(session, Ticket) == 1 and count(session, Attachment) == 0


def dsn_with_part(part: str) -> bytes:
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example\r\nTo: privacy@desk.example\r\nSubject: Undelivered Mail\r\n"
        "Message-ID: <dsn-b64@mx.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type="delivery-status"; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        "Final-Recipient: rfc822; ann@acme.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B\r\n{part}\r\n--B--\r\n"
    ).encode()


def cases_settings() -> IngestSettings:
    from tests.mail.test_cases import SETTINGS

    return SETTINGS


# --- 5. text -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "text", "encoding"), cases.BODY_CHARSETS, ids=[f"{c[0]}-{c[2]}" for c in cases.BODY_CHARSETS])
def test_bodies_under_lying_or_odd_labels_are_decoded(session: Session, label: str | None, text: str, encoding: str) -> None:
    acme(session)
    message = stored(session, cases.body_message(label, cases.encode(text, encoding)))
    assert (message.body_text or "").strip() == text


def test_an_html_body_without_a_label_is_decoded_by_its_meta_charset(session: Session) -> None:
    acme(session)
    text = "Прошу удалить мои данные"
    message = stored(session, cases.html_meta_charset(text, "windows-1251"))
    assert text in (message.body_text or "") and text in (message.body_html or "")


@pytest.mark.parametrize(("subject", "expected"), cases.ENCODED_WORD_SUBJECTS)
def test_encoded_word_subjects_under_odd_labels(session: Session, subject: str, expected: str) -> None:
    acme(session)
    message = stored(session, cases.plain("ann@acme.example", "support@desk.example", subject, "x", "ew@x"))
    assert message.ticket.subject == expected


@pytest.mark.parametrize(("params", "body", "expected"), cases.FLOWED)
def test_format_flowed_variants_are_unwrapped(session: Session, params: str, body: bytes, expected: str) -> None:
    acme(session)
    message = stored(session, cases.flowed(params, body))
    assert (message.body_text or "").strip() == expected


def test_format_flowed_inside_a_multipart_is_unwrapped(session: Session) -> None:
    acme(session)
    message = stored(session, cases.FLOWED_MULTIPART)
    assert "https://files.acme.example/exports/2026/daily-report.csv" in (message.body_text or "")


@pytest.mark.parametrize("shape", sorted(cases.CID_SHAPES))
def test_inline_images_in_other_shapes_point_at_the_stored_part(session: Session, shape: str) -> None:
    acme(session)
    message = stored(session, cases.CID_SHAPES[shape])
    [image] = [a for a in message.attachments if a.content_type == "image/png"]
    assert f"/tickets/{message.ticket_id}/attachments/{image.id}" in (message.body_html or ""), message.body_html
    assert "cid:" not in (message.body_html or "").lower()


@pytest.mark.parametrize(("shape", "says"), cases.CALENDAR_SHAPES, ids=[c[0] for c in cases.CALENDAR_SHAPES])
def test_calendar_mail_is_kept_as_ics_and_says_what_it_is(session: Session, shape: str, says: list[str]) -> None:
    acme(session)
    message = stored(session, cases.calendar(shape))
    assert [a.filename for a in message.attachments if a.content_type == "text/calendar" or (a.filename or "").endswith(".ics")]
    assert all((a.filename or "").lower().endswith(".ics") for a in message.attachments if "calendar" in a.content_type or "ics" in a.content_type)
    for line in says:
        assert line in (message.body_text or ""), message.body_text


# --- 6. one address ---------------------------------------------------------------------------------------------------

SINGLE = IngestSettings.from_config({"PRIVACY_ADDRESS": "privacy@desk.example"})


@pytest.mark.parametrize(("subject", "body", "is_request"), cases.SINGLE_ADDRESS)
def test_on_one_address_only_requests_open_a_request(session: Session, subject: str, body: str, is_request: bool) -> None:
    acme(session)
    raw = cases.plain("Ann <ann@acme.example>", "privacy@desk.example", subject, body, "one@x")
    outcome = ingest_message(session, raw, settings=SINGLE, by=TEST_PRINCIPAL, now=NOW)
    assert outcome.status == "stored"
    opened = session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).first()
    assert (opened is not None) == is_request
    assert (count(session, OutboxEmail) > 0) == is_request


def test_on_one_address_a_reply_to_our_acknowledgement_joins_the_request(session: Session) -> None:
    acme(session)
    raw = cases.plain("Ann <ann@acme.example>", "privacy@desk.example", "Delete my data", "Please delete my personal data (GDPR art. 17).", "s1@x")
    first = ingest_message(session, raw, settings=SINGLE, by=TEST_PRINCIPAL, now=NOW)
    ack = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")).one()
    reply = cases.plain(
        "ann@acme.example", "privacy@desk.example", f"Re: {ack.subject}", "Thanks, also my invoices.", "s2@x", extra=f"In-Reply-To: {ack.message_id}"
    )
    again = ingest_message(session, reply, settings=SINGLE, by=TEST_PRINCIPAL, now=NOW + dt.timedelta(minutes=3))
    assert again.ticket_id == first.ticket_id and len(mail_requests(session)) == 1 and acks(session) == 1
