"""Ticket services: create, add messages and attachments, get, assign, change status, move.

API for the web views and the mail paths (every write only flushes and writes
its audit event; the caller commits):

- `create_ticket(session, controller_id=, requester_name=, requester_email=, subject=, by=, now=) -> Ticket`
- `add_message(session, ticket, MessageInput(...), by=, now=) -> Message` (inbound, outbound or note)
- `open_ticket(session, ..., first=MessageInput(...), by=, now=) -> (Ticket, Message)`: both of the above, one audit INSERT
- `add_attachment(session, message, filename=, content_type=, content=bytes|file|chunks, by=, now=) -> Attachment`
- `attachment_chunks(session, attachment) -> Iterator[bytes]` streams a download; `inline_allowed(content_type)`
- `get_ticket(session, ticket_id, controller_ids=None) -> Ticket` (TicketNotFound, also outside the scope)
- `change_status`, `assign`, `move_to_controller` (triage -> controller)
- `reply_address(ticket, support_address)` -> `support+<token>@domain`

Finding tickets (by reference, requester, Message-ID, reply token) is app.tickets.lookup;
the staff queue page is app.tickets.queue.

`controller_ids=None` means every controller (an unscoped role); a set limits the
lookup to those controllers, so a guessed id of another controller's ticket is
"not found". Triage tickets (controller NULL) are visible only when None or when
`include_triage=True` is passed where offered.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.service import Entry, record, record_all
from app.blobs.store import BlobTooLarge, iter_blob, move_blob, store_blob
from app.crypto import message_ids
from app.exceptions import DeskError, NotFound, Refused
from app.principal import Principal
from app.tickets.attachment_row import insert_attachment
from app.tickets.identifiers import index_file, index_message
from app.tickets.inbound_row import insert_ticket_with_raw, insert_with_raw
from app.tickets.lookup import format_reference, scoped
from app.tickets.models import DIRECTIONS, STATUSES, Attachment, Message, Ticket, key_owner_for
from app.tickets.referenced import digests_of, index_references

# Shown in the browser; everything else is offered as a download (never rendered).
INLINE_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "application/pdf"})


class TicketError(DeskError):
    """Base of the ticket service's errors."""


class TicketNotFound(TicketError, NotFound):
    """No ticket with that id (or not in the caller's scope)."""


class InvalidTicketChange(TicketError, Refused, ValueError):
    """A status, direction or assignee the desk refuses; the message is safe to show."""


class AttachmentTooLarge(TicketError, Refused):
    """An attachment would exceed the size limit; nothing was stored."""


@dataclass
class MessageInput:
    """What a message carries; personal fields are encrypted when stored."""

    direction: str
    body_text: str | None = None
    body_html: str | None = None
    reply_text: str | None = None
    sender_name: str | None = None
    sender_email: str | None = None
    subject: str | None = None
    message_id: str | None = None
    author_id: int | None = None
    raw: bytes | None = None
    is_auto_reply: bool = False
    flags: Sequence[str] = ()
    notes: Sequence[dict[str, Any]] = field(default_factory=list)
    # The addresses on its To/Cc lines (indexed with the message's other identifiers, app.tickets.identifiers).
    recipients: Sequence[str] = ()
    # The Message-IDs it names (In-Reply-To, References; bounded): the reverse index of app.tickets.referenced.
    references: Sequence[str] = ()


def _audit(session: Session, ticket: Ticket, action: str, *, by: Principal, now: dt.datetime, **details: Any) -> None:
    record(session, by=by, action=action, target_type="ticket", target_id=ticket.id, controller_id=ticket.controller_id, details=details, now=now)


def create_ticket(
    session: Session,
    *,
    controller_id: int | None,
    requester_name: str | None,
    requester_email: str | None,
    subject: str | None,
    by: Principal,
    now: dt.datetime,
    status: str = "new",
) -> Ticket:
    """A new ticket of a controller (or in triage when controller_id is None), with its reference."""
    ticket = _new_ticket(session, controller_id, requester_name, requester_email, subject, now=now, status=status)
    _audit(session, ticket, "ticket.create", by=by, now=now, status=status, triage=controller_id is None)
    return ticket


def _new_ticket(
    session: Session, controller_id: int | None, requester_name: str | None, requester_email: str | None, subject: str | None, *, now: dt.datetime, status: str
) -> Ticket:
    if status not in STATUSES:
        raise InvalidTicketChange(f"unknown status {status!r}")
    ticket = Ticket(
        controller_id=controller_id,
        key_owner=key_owner_for(controller_id),
        status=status,
        requester_name=requester_name,
        requester_email=requester_email,
        subject=subject,
        reply_token=secrets.token_hex(10),
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    if ticket.reference is None:
        # The id is unique on both databases without a lock, so the reference is too. Postgres sets it
        # in the INSERT itself (migration 0024: one statement fewer); SQLite knows the id only now.
        ticket.reference = format_reference(now, ticket.id)
        session.flush()
    return ticket


def open_ticket(
    session: Session,
    *,
    controller_id: int | None,
    requester_name: str | None,
    requester_email: str | None,
    subject: str | None,
    first: MessageInput,
    by: Principal,
    now: dt.datetime,
) -> tuple[Ticket, Message]:
    """`create_ticket` then `add_message` (the inbound path's new ticket): the same rows and the same two audit events,
    in the same order, appended with one INSERT after the message."""
    inserted = insert_ticket_with_raw(
        session, controller_id=controller_id, requester_name=requester_name, requester_email=requester_email, subject=subject, first=first, now=now
    )  # Postgres, a one-chunk original: one statement
    if inserted is not None:
        ticket, message = inserted
    else:
        ticket = _new_ticket(session, controller_id, requester_name, requester_email, subject, now=now, status="new")
        message = _new_message(session, ticket, first, now=now, raw_max_bytes=None, touch=False)  # updated_at is `now` already
    created = Entry("ticket.create", "ticket", ticket.id, ticket.controller_id, {"status": "new", "triage": controller_id is None})
    added = Entry("ticket.message", "ticket", ticket.id, ticket.controller_id, {"message_id": message.id, "direction": first.direction})
    record_all(session, [created, added], by=by, now=now)
    return ticket, message


def add_message(session: Session, ticket: Ticket, data: MessageInput, *, by: Principal, now: dt.datetime, raw_max_bytes: int | None = None) -> Message:
    """Append a message to the ticket; the raw original (if any) is kept encrypted with its SHA-256."""
    message = _new_message(session, ticket, data, now=now, raw_max_bytes=raw_max_bytes)
    _audit(session, ticket, "ticket.message", by=by, now=now, message_id=message.id, direction=data.direction)
    return message


def _new_message(session: Session, ticket: Ticket, data: MessageInput, *, now: dt.datetime, raw_max_bytes: int | None, touch: bool = True) -> Message:
    if data.direction not in DIRECTIONS:
        raise InvalidTicketChange(f"unknown message direction {data.direction!r}")
    inserted = insert_with_raw(session, ticket, data, now=now, raw_max_bytes=raw_max_bytes, touch=touch)  # Postgres, a one-chunk original
    if inserted is not None:
        return inserted
    message = Message(
        ticket_id=ticket.id,
        key_owner=ticket.key_owner,
        direction=data.direction,
        message_id=data.message_id,
        message_id_bidx=message_ids.digest(session, data.message_id) if data.message_id else None,
        author_id=data.author_id,
        sender_name=data.sender_name,
        sender_email=data.sender_email,
        subject=data.subject,
        body_text=data.body_text,
        reply_text=data.reply_text,
        body_html=data.body_html,
        is_auto_reply=data.is_auto_reply,
        flags=list(data.flags),
        notes=list(data.notes),
        created_at=now,
    )
    if data.raw is not None:
        blob = store_blob(session, data.raw, key_owner=ticket.key_owner, now=now, max_bytes=raw_max_bytes)
        message.raw_blob_id, message.raw_sha256 = blob.id, blob.sha256
    session.add(message)
    if touch:
        ticket.updated_at = now
    session.flush()
    index_message(session, message, recipients=data.recipients, new=True)
    index_references(session, message.id, digests_of(session, data.references))
    return message


def add_attachment(
    session: Session,
    message: Message,
    *,
    filename: str | None,
    content_type: str,
    content: bytes | BinaryIO | Iterable[bytes],
    by: Principal,
    now: dt.datetime,
    max_bytes: int | None = None,
) -> Attachment:
    """Store a file of a message encrypted in chunks; AttachmentTooLarge past `max_bytes` (nothing kept)."""
    ticket = message.ticket
    stored_type = (content_type or "application/octet-stream").lower()[:127]
    text = content if isinstance(content, bytes) and content_type.startswith("text/") else None
    attachment = insert_attachment(session, message, filename=filename, content_type=stored_type, content=content, text=text, now=now, max_bytes=max_bytes)
    if attachment is None:  # not Postgres, or content in pieces or of more than one chunk: blob, row and index one by one
        try:
            blob = store_blob(session, content, key_owner=ticket.key_owner, now=now, max_bytes=max_bytes)
        except BlobTooLarge:
            limit = f"{max_bytes // (1024 * 1024)} MiB" if max_bytes and max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
            raise AttachmentTooLarge(f"The file is larger than the limit of {limit}; nothing was stored.") from None
        attachment = Attachment(
            message_id=message.id,
            key_owner=ticket.key_owner,
            filename=filename,
            content_type=stored_type,
            size=blob.size,
            sha256=blob.sha256,
            blob_id=blob.id,
            created_at=now,
        )
        session.add(attachment)
        session.flush()
        index_file(session, message, filename, text)
    if by.kind == "staff":
        # Staff uploads are a change a person made; inbound attachments are covered by ticket.message.
        _audit(session, ticket, "ticket.attachment", by=by, now=now, message_id=message.id, attachment_id=attachment.id, size=attachment.size)
    return attachment


def get_attachment(session: Session, ticket: Ticket, attachment_id: int) -> Attachment:
    """An attachment of this ticket (the caller has the ticket in scope), or TicketNotFound."""
    attachment = session.get(Attachment, attachment_id)
    if attachment is None or attachment.message.ticket_id != ticket.id:
        raise TicketNotFound(f"no attachment {attachment_id} on ticket {ticket.id}")
    return attachment


def inline_allowed(content_type: str | None) -> bool:
    """Whether the UI may show the file inline; everything else is a download."""
    return (content_type or "").split(";")[0].strip().lower() in INLINE_CONTENT_TYPES


def attachment_chunks(session: Session, attachment: Attachment) -> Iterator[bytes]:
    """The decrypted bytes of an attachment, one chunk at a time (for a streamed response)."""
    return iter_blob(session, attachment.blob_id)


def raw_original_chunks(session: Session, message: Message) -> Iterator[bytes]:
    """The decrypted raw original of an inbound message, one chunk at a time (empty when none)."""
    return iter_blob(session, message.raw_blob_id) if message.raw_blob_id else iter(())


# Fields each hop adds or rewrites on its way (RFC 5321 §4.4 trace fields and their vendor kin): a copy of one message
# delivered by another path, or to another of our addresses, differs only in these.
_TRACE_FIELDS = (
    b"received:", b"return-path:", b"delivered-to:", b"x-original-to:", b"envelope-to:", b"x-envelope-to:", b"x-envelope-from:",
    b"x-delivered-to:", b"authentication-results:", b"arc-", b"received-spf:", b"x-received:", b"x-spam-", b"x-virus-", b"x-rspamd-",
)  # fmt: skip


def _comparable(data: bytes) -> bytes:
    """`data` with LF line endings, no trailing newlines and its header section's trace fields dropped (folded lines too)."""
    text = data.replace(b"\r\n", b"\n").rstrip(b"\n")
    head, sep, body = text.partition(b"\n\n")
    kept, skipping = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation belongs to the field before it
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(_TRACE_FIELDS)
        if not skipping:
            kept.append(line)
    return b"\n".join(kept) + sep + body


def same_original(session: Session, message_pk: int, raw: bytes) -> bool:
    """Whether `raw` is message `message_pk`'s stored raw original but for its line endings (CRLF or LF, a final newline)
    and its trace fields (Received, Delivered-To, …): the same message delivered again by another path or for another of
    our addresses. RFC 5322 lines end in CRLF; local delivery often hands them over with LF. Read only when a
    Message-ID is held with other bytes.
    """
    message = session.get(Message, message_pk)
    if message is None or message.raw_blob_id is None or message.direction != "inbound":
        return False
    return _comparable(b"".join(iter_blob(session, message.raw_blob_id))) == _comparable(raw)


def get_ticket(session: Session, ticket_id: int, *, controller_ids: Collection[int] | None = None, include_triage: bool = False) -> Ticket:
    """The ticket, or TicketNotFound (also when it belongs to a controller outside `controller_ids`)."""
    ticket = session.scalar(scoped(select(Ticket).where(Ticket.id == ticket_id), controller_ids, include_triage))
    if ticket is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    return ticket


def reply_address(ticket: Ticket, support_address: str) -> str:
    """The per-ticket reply address: support+<token>@domain."""
    local, _, domain = support_address.partition("@")
    return f"{local.split('+', 1)[0]}+{ticket.reply_token}@{domain}"


def change_status(session: Session, ticket_id: int, status: str, *, by: Principal, now: dt.datetime, controller_ids: Collection[int] | None = None) -> Ticket:
    """Set new / open / waiting / closed; audit-logged. Setting the same status is a no-op."""
    if status not in STATUSES:
        raise InvalidTicketChange(f"unknown status {status!r}")
    ticket = get_ticket(session, ticket_id, controller_ids=controller_ids, include_triage=True)
    if ticket.status == status:
        return ticket
    previous = ticket.status
    ticket.status = status
    ticket.closed_at = now if status == "closed" else None
    ticket.updated_at = now
    session.flush()
    _audit(session, ticket, "ticket.status", by=by, now=now, status_from=previous, status_to=status)
    return ticket


def assign(
    session: Session, ticket_id: int, assignee_id: int | None, *, by: Principal, now: dt.datetime, controller_ids: Collection[int] | None = None
) -> Ticket:
    """Assign the ticket to a staff user (None: unassign); audit-logged."""
    ticket = get_ticket(session, ticket_id, controller_ids=controller_ids, include_triage=True)
    if ticket.assignee_id == assignee_id:
        return ticket
    previous = ticket.assignee_id
    ticket.assignee_id = assignee_id
    ticket.updated_at = now
    session.flush()
    _audit(session, ticket, "ticket.assign", by=by, now=now, assignee_from=previous, assignee_to=assignee_id)
    return ticket


def _rewrite(row: Any, names: Sequence[str], controller_id: int | None) -> None:
    # An encrypted value is bound to its owner's key: read every value, change the owner, write them again.
    values = {name: getattr(row, name) for name in names}
    row.key_owner = key_owner_for(controller_id)
    for name, value in values.items():
        setattr(row, name, value)


def move_to_controller(session: Session, ticket_id: int, controller_id: int | None, *, by: Principal, now: dt.datetime) -> Ticket:
    """Route a ticket (typically out of triage) to a controller: every value is re-encrypted under its key; audit-logged."""
    ticket = get_ticket(session, ticket_id)
    if ticket.controller_id == controller_id:
        return ticket
    previous = ticket.controller_id
    ticket.controller_id = controller_id
    _rewrite(ticket, ("requester_name", "requester_email", "subject"), controller_id)
    for message in ticket.messages:
        _rewrite(message, ("sender_name", "sender_email", "subject", "body_text", "reply_text", "body_html"), controller_id)
        if message.raw_blob_id is not None:
            move_blob(session, message.raw_blob_id, key_owner_for(controller_id))
        for attachment in message.attachments:
            _rewrite(attachment, ("filename",), controller_id)
            move_blob(session, attachment.blob_id, key_owner_for(controller_id))
    ticket.updated_at = now
    session.flush()
    for message in ticket.messages:
        index_message(session, message)  # under the new owner's index key
    _audit(session, ticket, "ticket.move", by=by, now=now, controller_from=previous, controller_to=controller_id)
    return ticket
