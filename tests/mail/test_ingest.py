"""Inbound mail into tickets: threading, routing, duplicates, auto-replies, limits, quarantine."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.crypto.message_ids import digests
from app.db import utcnow
from app.extensions import db
from app.mail import quarantine
from app.mail.inbound import IngestSettings, ingest_committed, ingest_message, release_quarantined
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket
from tests.factories import make_controller
from tests.mail.conftest import build, corpus

BY = Principal.system("tests")
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
SETTINGS = IngestSettings(support_address="privacy@desk.localhost")


def ingest(session: Session, raw: bytes, settings: IngestSettings = SETTINGS):  # type: ignore[no-untyped-def]
    return ingest_message(session, raw, settings=settings, by=BY, now=NOW)


def _desk_ticket(session: Session, controller_id: int | None, desk_message_id: str, status: str = "waiting") -> Ticket:
    ticket = tickets.create_ticket(session, controller_id=controller_id, requester_name="R", requester_email="r@example.org", subject="S", by=BY, now=NOW)
    tickets.add_message(session, ticket, tickets.MessageInput(direction="outbound", body_text="Hello", message_id=desk_message_id), by=BY, now=NOW)
    tickets.change_status(session, ticket.id, status, by=BY, now=NOW)
    return ticket


def test_new_message_opens_a_ticket_with_everything_encrypted_and_the_raw_original(session: Session) -> None:
    raw = build(sender="Jane Roe <jane.roe@example.org>", subject="Delete my data", body="Please delete my account.")
    outcome = ingest(session, raw)
    assert outcome.status == "stored" and outcome.new_ticket and outcome.exit_code == 0
    ticket = session.get(Ticket, outcome.ticket_id)
    assert ticket is not None and ticket.controller_id is None and ticket.status == "new"  # nobody routes it: triage
    assert (ticket.requester_name, ticket.requester_email, ticket.subject) == ("Jane Roe", "jane.roe@example.org", "Delete my data")
    [message] = ticket.messages
    assert message.direction == "inbound" and message.message_id == "m1@example.org"
    assert message.body_text is not None and "Please delete my account." in message.body_text
    assert message.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert b"".join(tickets.raw_original_chunks(session, message)) == raw


def test_the_same_bytes_again_are_a_no_op(session: Session) -> None:
    raw = build(message_id="<dup-1@example.org>")
    first = ingest(session, raw)
    again = ingest(session, raw)
    assert again.status == "duplicate" and again.exit_code == 0
    assert again.ticket_id == first.ticket_id
    assert session.scalar(select(func.count()).select_from(Message).where(Message.message_id_bidx.in_(digests(session, ["dup-1@example.org"])))) == 1


def test_a_different_message_under_a_stored_message_id_is_stored_on_that_thread_and_noted(session: Session) -> None:
    first = ingest(session, build(message_id="<dup-2@example.org>"))
    other = ingest(session, build(message_id="<dup-2@example.org>", body="different body, same id"))
    assert (other.status, other.ticket_id, other.new_ticket, other.how) == ("stored", first.ticket_id, False, "reused_message_id")
    message = session.get(Message, other.message_pk)
    assert message is not None and message.body_text is not None and "different body" in message.body_text
    assert {"code": "reused_message_id", "first_message": first.message_pk} in (message.notes or [])  # the reused id itself is never stored in plaintext
    # the second message delivered again is itself a no-op
    assert ingest(session, build(message_id="<dup-2@example.org>", body="different body, same id")).status == "duplicate"


@pytest.mark.parametrize(
    "name",
    ["reply_gmail_en.eml", "reply_apple_en.eml", "reply_thunderbird_en.eml", "reply_gmail_de.eml", "reply_outlook_de.eml", "reply_thunderbird_de.eml"],
)
def test_reply_joins_its_ticket_by_in_reply_to_and_reopens_it(session: Session, name: str) -> None:
    raw = corpus(name)
    desk_id = raw.split(b"In-Reply-To: <", 1)[1].split(b">", 1)[0].decode()
    ticket = _desk_ticket(session, make_controller(session).id, desk_id)
    outcome = ingest(session, raw)
    assert (outcome.status, outcome.ticket_id, outcome.how, outcome.new_ticket) == ("stored", ticket.id, "in_reply_to", False)
    assert ticket.status == "open"  # a person answered a waiting ticket
    assert ticket.messages[-1].reply_text and ">" not in ticket.messages[-1].reply_text


def test_reply_joins_by_reference_tag_in_subject(session: Session) -> None:
    ticket = _desk_ticket(session, None, "unrelated@desk.example")
    outcome = ingest(session, build(sender="R <R@Example.org>", subject=f"Re: [{ticket.reference}] Your request", message_id="<ref-1@example.org>"))
    assert (outcome.ticket_id, outcome.how) == (ticket.id, "subject_reference")


def test_a_strangers_mail_with_a_guessed_reference_opens_its_own_ticket(session: Session) -> None:
    ticket = _desk_ticket(session, None, "unrelated3@desk.example")
    outcome = ingest(session, build(sender="mallory@evil.example", subject=f"Re: [{ticket.reference}] new instructions", message_id="<ref-2@x>"))
    assert outcome.new_ticket and outcome.ticket_id != ticket.id


def test_reply_joins_by_reply_address_token(session: Session) -> None:
    ticket = _desk_ticket(session, None, "unrelated2@desk.example")
    to = tickets.reply_address(ticket, "privacy@desk.localhost")
    assert to.startswith("privacy+")
    outcome = ingest(session, build(to=to, subject="new words", message_id="<tok-1@example.org>"))
    assert (outcome.ticket_id, outcome.how) == (ticket.id, "reply_token")


def test_new_ticket_is_routed_by_sender_domain_then_identifier(session: Session) -> None:
    by_domain = make_controller(session, domains=["weco-route.example"])
    by_identifier = make_controller(session, domains=["other-route.example"], identifiers=["CUST-4711"])
    a = ingest(session, build(sender="dpo@mail.weco-route.example", message_id="<r1@x>"))
    b = ingest(session, build(sender="person@gmail.example", body="My customer number is cust-4711.", message_id="<r2@x>"))
    c = ingest(session, build(sender="person@gmail.example", body="No hint at all.", message_id="<r3@x>"))
    routed = {o.how: session.get(Ticket, o.ticket_id).controller_id for o in (a, b, c)}  # type: ignore[union-attr]
    assert routed == {"domain": by_domain.id, "identifier": by_identifier.id, "triage": None}


def test_auto_reply_is_marked_and_never_reopens_the_ticket(session: Session) -> None:
    ticket = _desk_ticket(session, None, "desk-out-1@desk.example", status="closed")
    outcome = ingest(session, corpus("auto_vacation_auto_submitted.eml"))
    assert outcome.ticket_id == ticket.id
    assert ticket.status == "closed"
    assert ticket.messages[-1].is_auto_reply is True


def test_forged_sender_is_stored_and_flagged(session: Session) -> None:
    outcome = ingest(session, corpus("hostile_forged_from.eml"))
    message = session.get(Message, outcome.message_pk)
    assert outcome.status == "stored" and message is not None
    assert {"return_path_mismatch", "dmarc_fail"} <= set(message.flags)


def test_html_mail_is_stored_as_received(session: Session) -> None:
    outcome = ingest(session, corpus("hostile_html_scripts.eml"))
    message = session.get(Message, outcome.message_pk)
    assert message is not None and message.body_html is not None and "<script>" in message.body_html


@pytest.mark.parametrize(("name", "reason"), [("hostile_no_headers.eml", "malformed"), ("hostile_no_sender.eml", "no_sender")])
def test_unusable_mail_is_quarantined_encrypted_with_its_reason_and_audited(session: Session, name: str, reason: str) -> None:
    raw = corpus(name)
    outcome = ingest(session, raw)
    assert (outcome.status, outcome.reason, outcome.exit_code) == ("quarantined", reason, 0)  # accepted once held (issue 15 item 8b)
    item = quarantine.get(session, outcome.quarantine_id or 0)
    assert item.state == "held" and item.sha256 == hashlib.sha256(raw).hexdigest()
    assert b"".join(quarantine.raw_chunks(session, item)) == raw
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "quarantine.hold", AuditEvent.target_id == str(item.id))).one()
    assert event.details == {"reason": reason, "size": len(raw)}
    # The MTA retries the same bytes: still one entry.
    assert ingest(session, raw).quarantine_id == item.id


def test_too_large_message_is_quarantined(session: Session) -> None:
    small = IngestSettings(support_address="privacy@desk.localhost", attachment_max_bytes=1000, mail_max_bytes=2000)
    outcome = ingest(session, build(body="x" * 5000, message_id="<big@x>"), small)
    assert (outcome.status, outcome.reason) == ("quarantined", "too_large")


def test_release_makes_a_ticket_and_delete_destroys_the_original(session: Session) -> None:
    held = ingest(session, corpus("hostile_no_sender.eml"))
    other = ingest(session, corpus("hostile_no_headers.eml"))
    officer = Principal.staff(7)
    released = IngestSettings(support_address="privacy@desk.localhost", attachment_max_bytes=1000)
    ticket_id = release_quarantined(session, held.quarantine_id or 0, settings=released, by=officer, now=NOW)
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None and ticket.controller_id is None
    assert "released_from_quarantine" in ticket.messages[0].flags
    quarantine.delete(session, other.quarantine_id or 0, by=officer, now=NOW)
    deleted = quarantine.get(session, other.quarantine_id or 0)
    assert deleted.state == "deleted" and deleted.raw_blob_id is None and b"".join(quarantine.raw_chunks(session, deleted)) == b""
    with pytest.raises(quarantine.QuarantineNotFound):
        quarantine.delete(session, other.quarantine_id or 0, by=officer, now=NOW)
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "mail_quarantine", AuditEvent.actor_id == 7)).all()
    assert sorted(actions) == ["quarantine.delete", "quarantine.release"]
    assert [i.id for i in quarantine.list_held(session)] == [] or all(i.state == "held" for i in quarantine.list_held(session))


@pytest.mark.slow
def test_fifty_megabyte_attachment_is_dropped_with_a_note_and_the_rest_kept(session: Session) -> None:
    # Given a message with a 50 MB attachment and a small one, against the default 25 MiB limit
    huge = base64.encodebytes(bytes(50 * 1024 * 1024))
    small = base64.encodebytes(b"\x89PNG" + b"\x00" * 100)
    raw = (
        b'From: big.sender@example.org\nSubject: Scans\nMessage-ID: <fifty@example.org>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\nTwo files attached.\n"
        b'--B\nContent-Type: image/png\nContent-Disposition: attachment; filename="small.png"\nContent-Transfer-Encoding: base64\n\n'
        + small
        + b'--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="huge.bin"\nContent-Transfer-Encoding: base64\n\n'
        + huge
        + b"--B--\n"
    )
    # When it is ingested
    outcome = ingest(session, raw)
    # Then the message is stored with the small file, and the big part is dropped with a note
    message = session.get(Message, outcome.message_pk)
    assert outcome.status == "stored" and message is not None
    assert [a.filename for a in message.attachments] == ["small.png"]
    assert any(n["code"] == "attachment_dropped" and n["approx_size"] >= 50 * 1024 * 1024 for n in message.notes)


def test_nul_and_control_bytes_anywhere_are_stored_not_crashed(session: Session) -> None:
    raw = (
        b"From: Nul \x00 Person <nul\x00@exa\x00mple.org>\r\nTo: privacy@desk.localhost\r\nSubject: zero \x00 byte\r\n"
        b"Message-ID: <nul\x00id@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b'Content-Disposition: inline; filename="a\x00b.txt"\r\n\r\nbody with \x00 and \x1b[31m escape\r\n'
    )
    outcome = ingest(session, raw)
    assert outcome.status in ("stored", "quarantined")
    if outcome.status == "stored":
        message = session.get(Message, outcome.message_pk)
        assert message is not None and "\x00" not in (message.message_id or "")


def test_released_oversized_message_is_parsed_not_dumped(session: Session) -> None:
    small = IngestSettings(support_address="privacy@desk.localhost", attachment_max_bytes=1000, mail_max_bytes=2000)
    held = ingest(session, build(subject="Big one", body="y" * 5000, message_id="<big-release@x>"), small)
    ticket_id = release_quarantined(session, held.quarantine_id or 0, settings=small, by=Principal.staff(3), now=NOW)
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None and ticket.subject == "Big one"
    assert ticket.messages[0].message_id == "big-release@x" and "released_from_quarantine" in ticket.messages[0].flags


def test_ingest_committed_retries_a_concurrent_duplicate_once_and_then_gives_up(committed_app: Flask) -> None:
    raw = build(to="support@desk.localhost", message_id="<raced@example.org>")
    scopes = 0

    @contextmanager
    def racing_scope(rivals: int) -> Iterator[Session]:
        # The first `rivals` transactions lose the race: another process commits the same
        # Message-ID between their duplicate check and their commit (the unique index refuses theirs).
        nonlocal scopes
        scopes += 1
        with db.session_scope() as session:
            yield session
            if scopes <= rivals:
                session.rollback()
                with db.session_scope() as rival:
                    ingest_message(rival, raw, settings=SETTINGS, by=BY, now=utcnow())
                raise IntegrityError("INSERT INTO messages", {}, Exception("unique message_id"))

    with committed_app.app_context():
        outcome = ingest_committed(lambda: racing_scope(1), raw, settings=SETTINGS, by=BY, clock=utcnow, source="pipe")
        assert (outcome.status, scopes) == ("duplicate", 2)  # retried once, as a no-op
        scopes = 0
        # A second IntegrityError is not retried again, and not a temporary failure either (issue 11 item 1): held
        held = ingest_committed(lambda: racing_scope(2), build(message_id="<raced-twice@example.org>"), settings=SETTINGS, by=BY, clock=utcnow, source="pipe")
        assert (held.status, held.reason) == ("quarantined", "unprocessable")
        assert scopes == 3  # two ingest attempts, then the hold
