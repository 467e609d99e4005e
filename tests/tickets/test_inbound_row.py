"""A message with a one-chunk raw original: on Postgres one statement (app.tickets.inbound_row), the same rows as the ORM path."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.crypto.cipher import DecryptionError, decrypt_field, key_id_of
from app.crypto.keys import cache_for, load_key
from app.principal import Principal
from app.tickets import lookup
from app.tickets import service as tickets
from app.tickets.identifiers import MessageIdentifier, index_message
from app.tickets.models import Message
from tests.factories import make_controller

BY = Principal.system("tests")
NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)
RAW = b"From: Zo\xc3\xab Roe <zoe@example.org>\r\nTo: support@desk.example\r\nSubject: Invoice\r\n\r\nCall +49 30 901820, Zo\xc3\xab Roe.\r\n"


def _first(**overrides: Any) -> tickets.MessageInput:
    base = tickets.MessageInput(
        direction="inbound",
        body_text="Call +49 30 901820, Zoë Roe.\n> quoted jane@example.org",
        reply_text="Call +49 30 901820, Zoë Roe.",
        body_html="<p>Call</p>",
        sender_name="Zoë Roe",
        sender_email="Zoe@Example.org",
        subject="Invoice DE89 3704 0044 0532 0130 00",
        message_id="<row-1@example.org>",
        raw=RAW,
        recipients=["support@desk.example", "cc@example.org"],
        flags=["forged_sender"],
        notes=[{"code": "envelope_recipient", "address": "x"}],
        is_auto_reply=True,
    )
    return dataclasses.replace(base, **overrides)


def _index(session: Session, message_pk: int) -> set[tuple[str, bytes]]:
    rows = session.execute(select(MessageIdentifier.kind, MessageIdentifier.digest).where(MessageIdentifier.message_id == message_pk))
    return {(kind, bytes(digest)) for kind, digest in rows}


def test_a_message_with_its_raw_original_reads_back_bound_to_its_row_and_indexed(session: Session) -> None:
    # Given a controller's new ticket and its first inbound message with a raw original of one chunk
    controller = make_controller(session)
    statements: list[str] = []
    engine = session.get_bind().engine

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        ticket, message = tickets.open_ticket(
            session, controller_id=controller.id, requester_name="Zoë Roe", requester_email="zoe@example.org", subject="Invoice", first=_first(), by=BY, now=NOW
        )
        second = tickets.add_message(session, ticket, _first(message_id="<row-2@example.org>", raw=RAW + b"again\r\n"), by=BY, now=LATER)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Then on Postgres the ticket, the blob, its chunk, the message and its index are one statement (the audit events
    # follow), and a further message with its rows and the ticket's updated_at one more
    # (a controller's first write also creates its data key: not counted)
    writes = [s.lstrip().split()[0].upper() for s in statements if not s.lstrip().upper().startswith("SELECT") and "data_keys" not in s]
    if session.get_bind().dialect.name == "postgresql":
        assert writes == ["WITH", "INSERT", "WITH", "INSERT"]
    assert ticket.reference == f"T-2026-{ticket.id:06d}" and (ticket.status, ticket.controller_id) == ("new", controller.id)
    assert ticket.updated_at == LATER and not session.dirty  # the statement wrote it; nothing left for a flush
    # and everything reads back from the database, decrypted, in a fresh look
    first_pk, second_pk, blob_id, ticket_pk = message.id, second.id, message.raw_blob_id, ticket.id
    session.expire_all()
    assert [t.id for t in lookup.find_by_requester_email(session, "ZOE@example.org")] == [ticket_pk]
    again = tickets.get_ticket(session, ticket_pk)
    assert (again.requester_name, again.requester_email, again.subject, again.reference) == ("Zoë Roe", "zoe@example.org", "Invoice", ticket.reference)
    assert [m.id for m in again.messages] == [first_pk, second_pk] and again.updated_at == LATER and again.created_at == NOW
    stored = session.get(Message, first_pk)
    assert stored is not None and stored.ticket_id == ticket.id and stored.raw_blob_id == blob_id
    assert (stored.body_text, stored.reply_text, stored.body_html) == (_first().body_text, _first().reply_text, "<p>Call</p>")
    assert (stored.sender_name, stored.sender_email, stored.subject, stored.message_id) == (
        "Zoë Roe",
        "Zoe@Example.org",
        "Invoice DE89 3704 0044 0532 0130 00",
        "<row-1@example.org>",
    )
    assert (stored.flags, stored.notes, stored.is_auto_reply, stored.direction) == (
        ["forged_sender"],
        [{"code": "envelope_recipient", "address": "x"}],
        True,
        "inbound",
    )
    assert b"".join(tickets.raw_original_chunks(session, stored)) == RAW
    assert lookup.find_by_message_ids(session, ["row-1@example.org"]) is not None
    assert session.scalars(
        select(Message.id).where(Message.sender_email.matches(session, "zoe@example.org", controller_id=stored.key_owner)).order_by(Message.id)
    ).all() == [
        first_pk,
        second_pk,
    ]
    # and each value is bound to its row: under another row's identity it does not decrypt
    assert stored.body_text_ct is not None
    aead = load_key(session.connection(), cache_for(session), key_id_of(stored.body_text_ct, where="ticket_messages.body_text_ct")).aead
    with pytest.raises(DecryptionError):
        decrypt_field(aead, stored.body_text_ct, table="ticket_messages", column="body_text_ct", row_uid="0" * 32)
    # and the index holds what index_message writes for the message (phone, IBAN, names, addresses, To/Cc)
    indexed = _index(session, first_pk)
    assert {kind for kind, _ in indexed} == {"email", "phone", "iban", "name"}
    index_message(session, stored, recipients=_first().recipients)
    assert _index(session, first_pk) == indexed


def test_a_message_without_a_raw_original_or_over_its_limit_takes_the_ordinary_path(session: Session) -> None:
    controller = make_controller(session)
    ticket = tickets.create_ticket(session, controller_id=controller.id, requester_name=None, requester_email=None, subject="s", by=BY, now=NOW)
    note = tickets.add_message(session, ticket, _first(message_id=None, raw=None, direction="note"), by=BY, now=NOW)
    assert note.raw_blob_id is None and note.body_text == _first().body_text
    with pytest.raises(Exception, match="larger"):
        tickets.add_message(session, ticket, _first(message_id="<big@example.org>"), by=BY, now=NOW, raw_max_bytes=10)
