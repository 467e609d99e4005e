"""A file of a message in one statement (app.tickets.attachment_row; Postgres): the same rows as the ordinary path."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.blobs.models import Blob
from app.crypto.keys import forget_keys
from app.principal import Principal
from app.tickets import attachment_row
from app.tickets import service as tickets
from app.tickets.identifiers import MessageIdentifier
from app.tickets.models import Attachment, Message, Ticket
from tests.databases import ON_POSTGRES
from tests.factories import make_controller

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="the one-statement attachment is Postgres only (SQLite takes the ordinary path)")

BY = Principal.system("tests")
NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
TEXT = b"Jane Roe, jane@example.org, +49 30 901820, DE89 3704 0044 0532 0130 00"


def _message(session: Session, controller_id: int) -> tuple[Ticket, Message]:
    first = tickets.MessageInput(direction="inbound", body_text="from jane@example.org", sender_email="jane@example.org", raw=b"Subject: x\r\n\r\nx\r\n")
    return tickets.open_ticket(
        session, controller_id=controller_id, requester_name=None, requester_email="jane@example.org", subject="x", first=first, by=BY, now=NOW
    )


def _stored(session: Session, message_pk: int, attachment_pk: int) -> tuple[Any, ...]:
    session.expire_all()
    a = session.get(Attachment, attachment_pk)
    assert a is not None
    blob = session.get(Blob, a.blob_id)
    assert blob is not None
    index = sorted(
        (kind, bytes(digest))
        for kind, digest in session.execute(select(MessageIdentifier.kind, MessageIdentifier.digest).where(MessageIdentifier.message_id == message_pk))
    )
    return (
        (a.message_id, a.key_owner, a.filename, a.content_type, a.size, a.sha256, a.created_at),
        (blob.key_owner, blob.size, blob.sha256, blob.chunk_count, blob.created_at),
        b"".join(tickets.attachment_chunks(session, a)),
        index,
    )


@pytest.mark.parametrize(("filename", "content_type", "content"), [("Jane Roe +49 30 901821.TXT", "text/plain", TEXT), (None, "Application/PDF", b"%PDF-1")])
def test_a_file_in_one_statement_is_stored_as_the_ordinary_path_stores_it(
    session: Session, monkeypatch: pytest.MonkeyPatch, filename: str | None, content_type: str, content: bytes
) -> None:
    # Given two messages of one controller, whose index already holds jane@example.org (the text file names it again)
    controller = make_controller(session)
    held = [_message(session, controller.id), _message(session, controller.id)]  # the tickets held: in the identity map
    message, other = held[0][1], held[1][1]
    seen: list[str] = []

    def listen(*args: Any) -> None:
        seen.append(args[2])

    event.listen(session.get_bind().engine, "before_cursor_execute", listen)
    try:
        # When a file is stored on one of them on this path, in a transaction that kept its key (no key query)
        forget_keys(session)
        fast = tickets.add_attachment(session, message, filename=filename, content_type=content_type, content=content, by=BY, now=NOW)
    finally:
        event.remove(session.get_bind().engine, "before_cursor_execute", listen)
    # Then it was one statement, and the rows equal those the ordinary path writes for the same file on the other message
    assert len(seen) == 1 and seen[0].lstrip().startswith("WITH") and "key_ok" in seen[0], seen
    assert fast.filename == filename and fast.content_type == content_type.lower() and fast.size == len(content) and not session.dirty
    monkeypatch.setattr(tickets, "insert_attachment", lambda *_a, **_k: None)
    ordinary = tickets.add_attachment(session, other, filename=filename, content_type=content_type, content=content, by=BY, now=NOW)
    ours, theirs = _stored(session, message.id, fast.id), _stored(session, other.id, ordinary.id)
    assert ours[0][1:] == theirs[0][1:] and ours[1:] == theirs[1:]
    # and the index gained what the file carries (a text file: its name and contents), the address it had already once
    assert len(set(ours[3])) == len(ours[3]) and (len(ours[3]) > 2) == (content == TEXT)


def test_a_file_over_its_limit_or_in_pieces_takes_the_ordinary_path(session: Session) -> None:
    _ticket, message = _message(session, make_controller(session).id)
    with pytest.raises(tickets.AttachmentTooLarge):
        tickets.add_attachment(session, message, filename="big.bin", content_type="application/zip", content=b"x" * 20, by=BY, now=NOW, max_bytes=10)
    pieces = tickets.add_attachment(session, message, filename="p.bin", content_type="application/zip", content=[b"ab", b"cd"], by=BY, now=NOW)
    assert b"".join(tickets.attachment_chunks(session, pieces)) == b"abcd"
    assert attachment_row.insert_attachment(session, message, filename=None, content_type="x/y", content=b"", text=None, now=NOW, max_bytes=None) is None
