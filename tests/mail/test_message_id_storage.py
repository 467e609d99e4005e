"""Message-IDs are stored as a keyed hash for lookup and encrypted where shown or sent, never in plaintext (issue 13 item 1e).

A Message-ID carrying the subject's mailbox name goes through ingest, a duplicate, a
reply threaded by In-Reply-To onto the desk's acknowledgement, a staff reply quoting
it, a delivery status notification; then no column of any table holds it as stored,
while the mail the outbox sends carries the real headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.crypto.message_ids import digest
from app.db import Base
from app.extensions import db
from app.mail.models import OutboxEmail
from app.mail.outbox import build_message, enqueue_email
from app.mail.parse import parse_mail
from app.mail.threading import find_sent
from app.tickets import service as tickets
from app.tickets.lookup import find_by_message_ids
from app.tickets.models import Message, Ticket
from tests.conftest import app_on_own_database
from tests.factories import TEST_PRINCIPAL, make_controller
from tests.mail.test_cases import NOW
from tests.mail.test_real_world import _dsn, ingest, request_with_ack

CANARY = "zelda.quillfeather"  # the subject's mailbox name, as many mail programs put it in a Message-ID


def _stored_values(session: Session) -> list[tuple[str, str, Any]]:
    """Every non-null value of every column of every table, as stored (ciphertexts stay bytes)."""
    found = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).mappings():
            found += [(table.name, column, value) for column, value in row.items() if value is not None]
    return found


def _holds_canary(value: Any) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return CANARY.encode() in bytes(value).lower()
    return CANARY in str(value).lower()


def test_no_message_id_is_stored_in_plaintext_and_threading_duplicates_bounces_and_replies_still_work(session: Session) -> None:
    # Given a request whose Message-ID carries the subject's mailbox name, acknowledged by the desk
    first_id = f"{CANARY}.1700000000@mail.acme.example"
    sender = "Zelda Quillfeather <zq@acme.example>"
    ack = request_with_ack(session, sender=sender, msgid=first_id)
    request = session.scalars(select(Message).where(Message.message_id_bidx == digest(session, first_id))).one()
    assert request.message_id == first_id  # shown decrypted
    # When the same mail arrives again: a duplicate
    again = f"From: {sender}\r\nTo: privacy@desk.example\r\nSubject: Please delete my account\r\nMessage-ID: <{first_id}>\r\n\r\n"
    again += "Please delete my data.\r\n"  # byte for byte what request_with_ack ingested
    assert ingest(session, again.encode(), minutes=0).status == "duplicate"
    # And the subject answers the acknowledgement (In-Reply-To the outbox row, References their first mail)
    second_id = f"{CANARY}.1700000999@mail.acme.example"
    reply = (
        f"From: zq@acme.example\r\nTo: privacy@desk.example\r\nSubject: Re: something\r\nMessage-ID: <{second_id}>\r\n"
        f"In-Reply-To: {ack.message_id}\r\nReferences: <{first_id}> {ack.message_id}\r\n\r\nHere is my customer number.\r\n"
    )
    answered = ingest(session, reply.encode(), minutes=10)
    assert answered.status == "stored" and answered.ticket_id == request.ticket_id and not answered.new_ticket
    # And staff write about it, quoting both
    ticket = session.get(Ticket, request.ticket_id)
    assert ticket is not None
    row = enqueue_email(
        session,
        to="colleague@elsewhere.example",  # not the subject: no instruction is needed to write to them
        subject="Re: your request",
        body_text="Thank you.",
        in_reply_to=f"<{second_id}>",
        references=[f"<{first_id}>", f"<{second_id}>"],
        controller_id=ticket.controller_id,
        kind="notice",
        msgid_domain="desk.example",
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    session.flush()
    # And a delivery status notification returns the acknowledgement's headers
    bounce = ingest(session, _dsn(f"From: privacy@desk.example\r\nMessage-ID: {ack.message_id}\r\n", kind="text/rfc822-headers"), minutes=20)
    assert bounce.status == "bounce" and ack.state == "bounced"

    # Then the mail the outbox sends carries the real Message-ID, In-Reply-To and References
    sent = build_message(row, sender="privacy@desk.example")
    assert sent["In-Reply-To"] == f"<{second_id}>" and sent["References"] == f"<{first_id}> <{second_id}>"
    assert sent["Message-ID"] == row.message_id and row.message_id_bidx == digest(session, row.message_id or "")
    # And a reply to that outbox row is found by its keyed hash
    answer = f"From: zq@acme.example\r\nTo: privacy@desk.example\r\nSubject: Re: x\r\nMessage-ID: <a3@mail.acme.example>\r\nIn-Reply-To: {row.message_id}\r\n"
    answer += "\r\nOk.\r\n"
    assert find_sent(session, parse_mail(answer.encode(), attachment_max_bytes=1 << 20)) is row
    session.flush()
    # And no column of any table holds the subject's mailbox name as stored
    assert [(table, column) for table, column, value in _stored_values(session) if _holds_canary(value)] == []
    # (the scan sees the tables: the hashes are there)
    assert any(column == "message_id_bidx" and value == digest(session, second_id) for _table, column, value in _stored_values(session))
    assert session.scalar(select(OutboxEmail.id).where(OutboxEmail.message_id_bidx == digest(session, f"<{second_id}>"))) is None


def test_migration_0021_hashes_and_encrypts_the_message_ids_stored_before_it_and_back(app: Flask, tmp_path: Path) -> None:
    from app import migrations

    with app_on_own_database(app, tmp_path, "msgids") as own:
        with own.app_context(), db.session_scope() as session:
            controller = make_controller(session)
            ticket = tickets.create_ticket(
                session, controller_id=controller.id, requester_name="Z", requester_email="zq@acme.example", subject="S", by=TEST_PRINCIPAL, now=NOW
            )
            for msgid in (f"{CANARY}.1@mail.example", f"{CANARY}.2@mail.example"):
                tickets.add_message(session, ticket, tickets.MessageInput(direction="inbound", body_text="x", message_id=msgid), by=TEST_PRINCIPAL, now=NOW)
            row = enqueue_email(
                session,
                to="colleague@elsewhere.example",
                subject="About it",
                body_text="x",
                in_reply_to=f"<{CANARY}.1@mail.example>",
                references=[f"<{CANARY}.1@mail.example>"],
                kind="notice",
                msgid_domain="desk.example",
                by=TEST_PRINCIPAL,
                now=NOW,
            )
            session.flush()
            ids = (ticket.id, row.id, row.message_id)
            erased = digest(session, f"{CANARY}.2@mail.example")
        url = own.config["DATABASE_URL"]
        with own.app_context():
            db.state(own).engine.dispose()
            # Given the schema back at 0020: the values in plaintext again (downgrade decrypts them)
            migrations.downgrade(url, "0020")
            with db.state(own).engine.begin() as conn:
                assert conn.execute(text("SELECT message_id FROM outbox_emails WHERE id = :i"), {"i": ids[1]}).scalar_one() == ids[2]
                assert conn.execute(text("SELECT in_reply_to FROM outbox_emails WHERE id = :i"), {"i": ids[1]}).scalar_one() == f"<{CANARY}.1@mail.example>"
                # and one message an erasure took before 0021 (its id replaced by its keyed hash)
                stub = f"{erased.hex()}@erased.invalid"
                conn.execute(text("UPDATE ticket_messages SET message_id = :s WHERE message_id = :m"), {"s": stub, "m": f"{CANARY}.2@mail.example"})
            # When the migration runs (as `flask db upgrade` does, inside the app)
            migrations.upgrade(url)
            db.state(own).engine.dispose()
            with db.session_scope() as session:
                # Then lookups by keyed hash find them, the shown values decrypt, the stub is found by its original id
                assert (found := find_by_message_ids(session, [f"<{CANARY}.1@mail.example>"])) is not None and found.id == ids[0]
                assert (stub_found := find_by_message_ids(session, [f"{CANARY}.2@mail.example"])) is not None and stub_found.id == ids[0]
                outbox = session.get(OutboxEmail, ids[1])
                assert outbox is not None and (outbox.message_id, outbox.in_reply_to) == (ids[2], f"<{CANARY}.1@mail.example>")
                assert outbox.message_id_bidx == digest(session, ids[2] or "") and outbox.verp_bidx is not None
                # And nothing holds the canary as stored
                assert [(t, c) for t, c, v in _stored_values(session) if _holds_canary(v)] == []
