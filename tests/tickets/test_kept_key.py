"""A message's one statement checks the owner's kept data key itself (app.crypto.kept_active; Postgres): no key query,
the same lock, and a key retired or shredded since is never used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.blobs.models import Blob, BlobChunk
from app.blobs.store import read_blob, store_blob
from app.crypto.cipher import KeyShredded, key_id_of
from app.crypto.keys import PLATFORM, cache_for, data_keys, forget_keys, insert_generation, owner_of
from app.extensions import db
from app.keys.service import shred_controller_keys
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket
from tests.databases import ON_POSTGRES
from tests.factories import make_controller

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="the one-statement message is Postgres only (SQLite takes the ordinary path)")

BY = Principal.system("tests")
NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
RAW = b"From: Jo <jo@example.org>\r\nSubject: Hi\r\n\r\nCall +49 30 901820.\r\n"


def _mail(n: int) -> tickets.MessageInput:
    return tickets.MessageInput(direction="inbound", body_text=f"Call +49 30 901820 ({n}).", sender_email="jo@example.org", message_id=f"<k{n}@x>", raw=RAW)


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = session.get_bind().engine
    # Each statement, its PLATFORM key queries left out (the Message-ID hash: another owner's key, not checked here)

    def listen(*args: Any) -> None:
        if not (isinstance(args[3], dict) and args[3].get("owner") == PLATFORM):
            seen.append(args[2])

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def _key_queries(seen: list[str]) -> list[str]:
    # A statement of its own about data_keys
    return [s for s in seen if "data_keys" in s and not s.lstrip().startswith("WITH")]


def _ticket_of(session: Session) -> tuple[Ticket, int]:
    controller = make_controller(session)
    ticket, first = tickets.open_ticket(
        session, controller_id=controller.id, requester_name="Jo", requester_email="jo@example.org", subject="Hi", first=_mail(0), by=BY, now=NOW
    )
    assert first.body_text_ct is not None
    return ticket, key_id_of(first.body_text_ct, where="ticket_messages.body_text_ct")


def test_a_later_transaction_writes_under_the_kept_key_checked_and_locked_by_its_one_statement(session: Session) -> None:
    # Given a controller's ticket whose first message loaded (and kept) the controller's active key
    ticket, key_id = _ticket_of(session)
    owner = owner_of(ticket.key_owner)
    forget_keys(session)  # what a new transaction starts with
    # When a further message is stored
    with _statements(session) as seen:
        message = tickets.add_message(session, ticket, _mail(1), by=BY, now=NOW)
    # Then no statement asked for the controller's key: the message's one statement checked it, FOR SHARE
    assert not [s for s in _key_queries(seen) if "FOR SHARE" in s]
    written = [s for s in seen if s.lstrip().startswith("WITH")]
    assert len(written) == 1 and "key_ok" in written[0] and "FOR SHARE" in written[0]
    # and the values are under that key, which is this transaction's active one from now on, and read back
    assert message.body_text_ct is not None and key_id_of(message.body_text_ct, where="x") == key_id
    assert cache_for(session).active[owner].id == key_id
    session.expire_all()
    stored = session.get(Message, message.id)
    assert stored is not None and stored.body_text == "Call +49 30 901820 (1)." and stored.raw_blob_id is not None
    assert b"".join(tickets.raw_original_chunks(session, stored)) == RAW


def test_a_kept_key_retired_since_writes_nothing_and_the_message_goes_under_the_new_active_key(session: Session) -> None:
    # Given a kept key that a rotation retired after it was kept (a new active generation in its place)
    ticket, key_id = _ticket_of(session)
    owner = owner_of(ticket.key_owner)
    forget_keys(session)
    conn = session.connection()
    conn.execute(update(data_keys).where(data_keys.c.id == key_id).values(state="retired"))
    insert_generation(conn, cache_for(session).keyring, owner, 2)
    blobs, messages = session.scalar(select(func.count()).select_from(Blob)) or 0, session.scalar(select(func.count()).select_from(Message)) or 0
    # When a further message is stored
    with _statements(session) as seen:
        message = tickets.add_message(session, ticket, _mail(1), by=BY, now=NOW)
    # Then the checking statement wrote nothing; the active key was asked for (locked) and the message written again under it
    assert len([s for s in seen if s.lstrip().startswith("WITH")]) == 2 and len(_key_queries(seen)) >= 1
    assert message.body_text_ct is not None and key_id_of(message.body_text_ct, where="x") != key_id
    assert session.scalar(select(func.count()).select_from(Blob)) == blobs + 1
    assert session.scalar(select(func.count()).select_from(Message)) == messages + 1
    session.expire_all()
    stored = session.get(Message, message.id)
    assert stored is not None and stored.body_text == "Call +49 30 901820 (1)."
    # and the next transaction uses the new key, checked in its statement
    forget_keys(session)
    with _statements(session) as seen:
        again = tickets.add_message(session, ticket, _mail(2), by=BY, now=NOW)
    assert not [s for s in _key_queries(seen) if "FOR SHARE" in s] and again.body_text_ct is not None
    assert key_id_of(again.body_text_ct, where="x") == key_id_of(message.body_text_ct, where="x")


def test_a_kept_key_shredded_since_is_never_used(session: Session) -> None:
    # Given a controller's kept key, shredded afterwards (another process: this one's memory of it is not told)
    ticket, key_id = _ticket_of(session)
    forget_keys(session)
    session.connection().execute(update(data_keys).where(data_keys.c.id == key_id).values(state="shredded", wrapped_key=None, wrapped_index_key=None))
    messages = session.scalar(select(func.count()).select_from(Message))
    # When a further message is stored: refused as before, and nothing written
    with pytest.raises(KeyShredded):
        tickets.add_message(session, ticket, _mail(1), by=BY, now=NOW)
    assert session.scalar(select(func.count()).select_from(Message)) == messages
    assert owner_of(ticket.key_owner) not in cache_for(session).active


def test_a_new_ticket_under_a_shredded_controllers_kept_key_is_refused(session: Session) -> None:
    controller = make_controller(session)
    tickets.open_ticket(session, controller_id=controller.id, requester_name=None, requester_email=None, subject="a", first=_mail(0), by=BY, now=NOW)
    shred_controller_keys(session, controller.id, by=BY, now=NOW)
    tickets_before = session.scalar(select(func.count()).select_from(Ticket))
    with pytest.raises(KeyShredded):
        tickets.open_ticket(session, controller_id=controller.id, requester_name=None, requester_email=None, subject="b", first=_mail(1), by=BY, now=NOW)
    assert session.scalar(select(func.count()).select_from(Ticket)) == tickets_before


def test_the_checking_statement_holds_the_key_row_as_active_key_does(committed_app: Flask) -> None:
    # Given a committed ticket: its first message loaded and kept the controller's key
    with committed_app.app_context():
        with db.session_scope() as setup:
            ticket, key_id = _ticket_of(setup)
            ticket_id = ticket.id
        with db.session_scope() as s:
            # When a new transaction stores a message without asking for the key
            with _statements(s) as seen:
                tickets.add_message(s, tickets.get_ticket(s, ticket_id), _mail(1), by=BY, now=NOW)
            assert not [q for q in _key_queries(seen) if "FOR SHARE" in q]
            # Then until it ends the key row is locked: a rotation cannot retire it under the writer
            with db.state(committed_app).engine.connect() as other, pytest.raises(OperationalError, match="lock"):
                other.execute(text("SELECT id FROM data_keys WHERE id = :k FOR UPDATE NOWAIT"), {"k": key_id})


def test_a_blob_of_one_chunk_is_one_checked_statement_and_falls_back_when_the_key_changed(session: Session) -> None:
    # Given a controller's kept key (its first message) and a new transaction
    ticket, key_id = _ticket_of(session)
    forget_keys(session)
    # When a blob of one chunk is stored under the controller (a quarantined raw message, say)
    with _statements(session) as seen:
        blob = store_blob(session, b"raw bytes", key_owner=ticket.key_owner, now=NOW)
    # Then it is one statement checking the key, and reads back
    assert len(seen) == 1 and "key_ok" in seen[0] and "FOR SHARE" in seen[0]
    assert read_blob(session, blob.id) == b"raw bytes"
    # and with the key retired since (a rotation), nothing is written under it: the new active key is used
    forget_keys(session)
    conn = session.connection()
    conn.execute(update(data_keys).where(data_keys.c.id == key_id).values(state="retired"))
    insert_generation(conn, cache_for(session).keyring, owner_of(ticket.key_owner), 2)
    again = store_blob(session, b"more bytes", key_owner=ticket.key_owner, now=NOW)
    chunk = session.scalar(select(BlobChunk).where(BlobChunk.blob_id == again.id))
    assert chunk is not None and chunk.data_ct is not None and key_id_of(chunk.data_ct, where="x") != key_id
    assert read_blob(session, again.id) == b"more bytes" and session.scalar(select(func.count()).select_from(Blob).where(Blob.id > blob.id)) == 1
