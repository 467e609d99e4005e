"""Erasure erases everything of the subject, everywhere they appear (issue 13 items 1 and 2), each kind on its own."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.mail.models import OutboxEmail
from app.mail.policies import POLICIES, OutboundMessage
from app.subject_data import closing, restrict, service
from app.subject_data.aftercare import FLAG
from app.subject_data.errors import InvalidRequest
from app.subject_data.models import SubjectRun
from app.subject_data.policy import restriction_policy
from app.tickets import service as tickets
from app.tickets.identifiers import MessageIdentifier, normalise_name
from app.tickets.models import Attachment, Message, Ticket
from tests.factories import TEST_PRINCIPAL
from tests.subject_data.support import (
    CANARY_EMAIL,
    CANARY_IBAN,
    CANARY_MAILBOX,
    CANARY_NAME,
    CANARY_PHONE,
    CANARY_SECOND,
    CANARY_STREET,
    CANARY_TOWN,
    EVERY_CANARY,
    SETTINGS,
    T0,
    decrypted_hits,
    drain,
    everywhere,
    instruct,
    scene,
)


def _erase(session: Session):  # type: ignore[no-untyped-def]
    sc = scene(session)
    where = everywhere(session, sc)
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    drain(session, run.id)
    session.expire_all()
    record = session.get(SubjectRun, run.id)
    assert record is not None and record.state == "done", record.report if record else None
    return sc, where, record


def _text(session: Session, message: Message) -> str:
    row = session.get(Message, message.id)
    assert row is not None
    return "\n".join(v or "" for v in (row.subject, row.body_text, row.reply_text, row.body_html, row.sender_name, row.sender_email))


def test_a_message_the_subject_wrote_is_erased_whole_with_a_stub(session: Session) -> None:
    sc, where, record = _erase(session)
    own = session.get(Message, where.own_message.id)
    assert own is not None
    assert own.body_text is not None and own.body_text.startswith("[Message erased on 2026-11-20 09:00 UTC under instruction ")
    assert f"deletion run {record.deletion_run_id}" in own.body_text
    assert own.body_html is None and own.reply_text is None and own.raw_blob_id is None and own.sender_email is None
    # Its Message-ID named the subject's mailbox: now a keyed hash.
    assert own.message_id is not None and CANARY_MAILBOX not in own.message_id and own.message_id.endswith("@erased.invalid")


def test_what_the_subject_gave_is_redacted_in_other_peoples_messages(session: Session) -> None:
    # Phone (written another way), street and IBAN (without spaces) found with phonenumbers and schwifty.
    _sc, where, _record = _erase(session)
    quote, forward = _text(session, where.quote), _text(session, where.forward)
    assert "Agreed." in quote and "0151 23456789" not in quote and CANARY_STREET not in quote and CANARY_NAME not in quote
    assert CANARY_IBAN.replace(" ", "") not in forward and CANARY_EMAIL not in forward and "Forwarded message" in forward


def test_the_subjects_tickets_are_closed(session: Session) -> None:
    sc, where, _record = _erase(session)
    for ticket_id in [*(t.id for t in sc.tickets), where.second_ticket.id]:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "closed" and ticket.closed_at is not None
    assert session.get(Ticket, sc.bystander.id).status != "closed"  # type: ignore[union-attr]


def test_delivered_outbox_rows_about_the_subject_are_purged_with_their_files(session: Session, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.deletion.files import OUTBOX_FILES

    removed: list[str] = []
    sc = scene(session)
    everywhere(session, sc)
    forward_row = session.scalars(select(OutboxEmail).where(OutboxEmail.related_type == "dsr", OutboxEmail.related_id == sc.dsr.id)).first()
    assert forward_row is not None
    forward_row.state, forward_row.sent_at = "sent", T0
    OUTBOX_FILES.add("test", lambda message_id: removed.append(message_id) is None)
    try:
        instruct(session, sc, "erase")
        run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
        drain(session, run.id)
    finally:
        OUTBOX_FILES.discard("test")
    session.expire_all()
    row = session.get(OutboxEmail, forward_row.id)
    assert row is not None and row.body_text.startswith("[erased 2026-11-20 09:00 UTC after delivery")
    assert forward_row.message_id in removed
    record = session.get(SubjectRun, run.id)
    assert record is not None and record.report["changed"]["outbox_purged"] >= 1 and "outbox_files" in record.report["stores"]


def test_other_peoples_tickets_cc_quote_forward_note_signature_and_file_name(session: Session) -> None:
    _sc, where, record = _erase(session)
    for message in (where.quote, where.forward, where.note, where.signature, where.file_message):
        text = _text(session, message).lower()
        assert not [c for c in EVERY_CANARY if c in text], (message.id, text)
    attachment = session.scalars(select(Attachment).where(Attachment.message_id == where.file_message.id)).one()
    assert attachment.filename == "[erased] form.pdf"
    # The file's contents cannot be read by the index: listed for the officer, not silently left.
    assert {"what": "attachment", "id": attachment.id, "reason": "contents_not_scanned"} in record.report["review"]
    # The Cc line: the raw original of the message that carried it is destroyed, its index no longer finds the subject.
    cc_first = session.scalars(select(Message).where(Message.ticket_id == where.cc_ticket.id).order_by(Message.id)).first()
    assert cc_first is not None and cc_first.raw_blob_id is None


def test_a_second_address_of_the_subject_is_erased_too(session: Session) -> None:
    _sc, where, _record = _erase(session)
    ticket = session.get(Ticket, where.second_ticket.id)
    assert ticket is not None and ticket.requester_email is None and ticket.requester_name is None
    assert not [c for c in EVERY_CANARY if c in "\n".join(_text(session, m) for m in ticket.messages).lower()]
    assert decrypted_hits(session, (CANARY_SECOND,)) == {}


def test_name_variants_match_in_every_normal_form() -> None:
    from app.deletion.rewrite import Rewriter

    assert normalise_name("Zoë  ZEBRACANARY") == normalise_name("Zoe\u0308 zebracanary") == normalise_name("zoe zebracanary")
    rw = Rewriter({}, names=["Zoë Zebracanary"])
    assert rw("Hi Zoe Zebracanary, ZOË ZEBRACANARY and Zoe\u0308 Zebracanary; Zoey stays") == "Hi [erased], [erased] and [erased]; Zoey stays"


def test_the_request_record_itself_loses_what_the_subject_gave(session: Session) -> None:
    sc, _where, _record = _erase(session)
    session.expire_all()
    from app.dsr.models import Dsr

    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None and dsr.subject_email is None and dsr.subject_identifiers is None
    assert dsr.request_text is not None and CANARY_PHONE not in dsr.request_text and CANARY_STREET not in dsr.request_text


def test_the_identifier_index_finds_mentions_without_decrypting(session: Session) -> None:
    sc = scene(session)
    where = everywhere(session, sc)
    kinds = set(session.scalars(select(MessageIdentifier.kind).where(MessageIdentifier.message_id == where.own_message.id)))
    assert kinds == {"email", "phone", "iban", "name"}
    # No identifier is stored in the clear.
    for digest in session.scalars(select(MessageIdentifier.digest)):
        assert all(c.encode() not in digest for c in (CANARY_EMAIL, "+4915123456789", "DE89370400440532013000"))


def test_new_mail_from_an_erased_subject_is_flagged_and_closing_refuses_to_say_erased(session: Session) -> None:
    sc, _where, _record = _erase(session)
    # After the run, the subject writes again into their old ticket.
    from app.mail.intake import Inbound
    from app.subject_data.aftercare import flag_new_mail

    message = tickets.add_message(
        session, sc.tickets[0], tickets.MessageInput(direction="inbound", sender_email=CANARY_EMAIL, body_text="me again"), by=TEST_PRINCIPAL, now=T0
    )
    inbound = Inbound(sc.tickets[0], message, None, b"", False, None, "support@desk.example", "privacy@desk.example")  # type: ignore[arg-type]
    assert flag_new_mail(session, inbound, by=TEST_PRINCIPAL, now=T0) is None  # flags, claims nothing
    assert FLAG in message.flags
    with pytest.raises(InvalidRequest, match="not erased yet"):
        closing.close(session, sc.dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0)
    # Erasing again takes the new mail; then the request closes as erased, its notice per store.
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0 + dt.timedelta(minutes=5))
    drain(session, run.id)
    dsr = closing.close(session, sc.dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(minutes=10))
    assert dsr.outcome == "erased"
    notice = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_completion")).first()
    assert notice is not None and "ticket messages:" in notice.body_text and "left for review" in notice.body_text


def test_a_reply_queued_before_a_restriction_is_refused_at_claim(session: Session) -> None:
    sc = scene(session)
    message = OutboundMessage(to="someone@x.example", kind="reply", body_text="hi", related_type="ticket", related_id=sc.tickets[0].id, outbox_id=7)
    assert restriction_policy(session, message, now=T0) is None
    instruct(session, sc, "restrict")
    restrict.restrict(session, sc.dsr.id, sc.controller.id, "restriction", by=TEST_PRINCIPAL, now=T0)
    refusal = restriction_policy(session, message, now=T0)
    assert refusal is not None and refusal.reason == "restricted"
    assert "subject_data.restriction" in POLICIES.names
    # The desk's notices to the controller are not replies: not concerned.
    assert restriction_policy(session, OutboundMessage(to="x@y.example", kind="dsr_completion", body_text="", related_type="dsr", related_id=1), now=T0) is None
    assert CANARY_TOWN and CANARY_IBAN  # (used by the scene)


def test_a_reply_queued_before_a_restriction_is_never_sent(session: Session) -> None:
    # Given a reply to the subject's ticket queued (allowed) before the controller's restriction was recorded
    from app.mail.delivery import claim, refuse_if_disallowed
    from app.mail.outbox import enqueue_email
    from app.mail.outbox_settings import OutboxTiming

    sc = scene(session)
    row = enqueue_email(
        session,
        to="bea@bystander.example",
        subject="Re: your ticket",
        body_text="An answer",
        related_type="ticket",
        related_id=sc.tickets[1].id,  # (not the request's own ticket, so the instruction gate lets it through)
        controller_id=sc.controller.id,
        kind="reply",
        by=TEST_PRINCIPAL,
        now=T0,
    )
    instruct(session, sc, "restrict")
    restrict.restrict(session, sc.dsr.id, sc.controller.id, "restriction", by=TEST_PRINCIPAL, now=T0)
    # When a worker claims it, the policies are asked again
    won = claim(session, row.id, now=T0 + dt.timedelta(minutes=1), timing=OutboxTiming())
    assert won is not None
    refusals = refuse_if_disallowed(session, won, row, now=T0 + dt.timedelta(minutes=1))
    # Then the restriction refuses it: it ends 'refused', never sent
    assert [r.policy for r in refusals] == ["subject_data.restriction"]
    session.refresh(row)
    assert row.state == "refused" and row.sent_at is None


def test_a_file_named_after_or_mentioning_the_subject_is_found_on_a_message_that_does_not(session: Session) -> None:
    # Given two files on another customer's message whose text says nothing of the subject
    sc = scene(session)
    other = tickets.create_ticket(
        session, controller_id=sc.controller.id, requester_name="Fay", requester_email="fay@others.example", subject="Docs", by=TEST_PRINCIPAL, now=T0
    )
    message = tickets.add_message(
        session, other, tickets.MessageInput(direction="inbound", sender_email="fay@others.example", body_text="See attached."), by=TEST_PRINCIPAL, now=T0
    )
    named = tickets.add_attachment(
        session, message, filename=f"{CANARY_NAME} contract.pdf", content_type="application/pdf", content=b"%PDF-1.4", by=TEST_PRINCIPAL, now=T0
    )
    mentions = tickets.add_attachment(
        session, message, filename="notes.txt", content_type="text/plain", content=f"call {CANARY_EMAIL}".encode(), by=TEST_PRINCIPAL, now=T0
    )
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    drain(session, run.id)
    session.expire_all()
    record = session.get(SubjectRun, run.id)
    assert record is not None
    # Then the index found the message: the file name is rewritten, both files are listed for the officer
    assert session.get(Attachment, named.id).filename == "[erased] contract.pdf"  # type: ignore[union-attr]
    assert {"what": "attachment", "id": named.id, "reason": "contents_not_scanned"} in record.report["review"]
    assert {"what": "attachment", "id": mentions.id, "reason": "contents_redacted"} in record.report["review"]
    from app.blobs.store import read_blob

    redacted = session.get(Attachment, mentions.id)
    assert redacted is not None and read_blob(session, redacted.blob_id) == b"call [erased]"


def test_messages_stored_before_the_index_are_indexed_again_with_their_cc_from_the_raw_original(session: Session) -> None:
    from sqlalchemy import delete

    from app.tickets.identifiers import digest, index_key_of, index_unindexed

    sc = scene(session)
    raw = b"From: Gus <gus@others.example>\r\nTo: support@desk.example\r\nCc: " + CANARY_EMAIL.encode() + b"\r\nSubject: hi\r\n\r\nhello\r\n"
    message = tickets.add_message(
        session,
        sc.bystander,
        tickets.MessageInput(direction="inbound", sender_email="gus@others.example", body_text="hello", raw=raw),
        by=TEST_PRINCIPAL,
        now=T0,
    )
    # Given messages without index rows (as stored before migration 0017)
    session.execute(delete(MessageIdentifier))
    last, count = index_unindexed(session, after=0, limit=1000)
    assert count == len(session.scalars(select(Message.id)).all()) and last == max(session.scalars(select(Message.id)))
    assert index_unindexed(session, after=last) == (last, 0)
    key = index_key_of(session, sc.controller.id)
    assert key is not None
    digests = set(session.scalars(select(MessageIdentifier.digest).where(MessageIdentifier.message_id == message.id)))
    assert digest(key, "email", CANARY_EMAIL) in digests  # the Cc line, read back from the raw original


def test_the_index_messages_command_indexes_what_is_missing(session: Session, runner) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete

    scene(session)
    session.execute(delete(MessageIdentifier))
    session.flush()
    result = runner.invoke(args=["subject-data", "index-messages", "--batch", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"messages indexed: {len(session.scalars(select(Message.id)).all())}"


@pytest.mark.parametrize("sender", [CANARY_EMAIL, CANARY_EMAIL.replace("@", "+news@").upper()])
def test_new_mail_from_an_erased_subject_is_flagged_even_before_it_is_routed(session: Session, sender: str) -> None:
    # Found trying the desk: after an erasure, the subject's new mail to the privacy address opened a triage ticket
    # and a new request with no flag (the check ran only for a ticket whose controller was known, and after the
    # request handler had claimed the message). A sub-address or another case is the same person.
    from app.mail.inbound import IngestSettings, ingest_message

    sc, _where, _record = _erase(session)
    raw = (
        f"From: Somebody <{sender}>\r\nTo: privacy@desk.example\r\nSubject: Please delete my data again\r\n"
        f"Message-ID: <again-{len(sender)}@canary-subject.example>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
        "Please erase everything you hold about me.\r\n"
    ).encode()
    settings = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
    outcome = ingest_message(session, raw, settings=settings, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=1))
    assert outcome.status == "stored"
    message = session.get(Message, outcome.message_pk)
    assert message is not None and FLAG in message.flags
    # The flag claims nothing: the message still reached the handler that owns it (a new request here).
    assert outcome.claim is not None and outcome.claim.handler == "dsr.request"
