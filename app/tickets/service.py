"""Ticket services: create, add messages and attachments, find, queue, assign, change status.

API for the web views and the mail paths (every write only flushes and writes
its audit event; the caller commits):

- `create_ticket(session, controller_id=, requester_name=, requester_email=, subject=, by=, now=) -> Ticket`
- `add_message(session, ticket, MessageInput(...), by=, now=) -> Message` (inbound, outbound or note)
- `add_attachment(session, message, filename=, content_type=, content=bytes|file|chunks, by=, now=) -> Attachment`
- `attachment_chunks(session, attachment) -> Iterator[bytes]` streams a download; `inline_allowed(content_type)`
- `get_ticket(session, ticket_id, controller_ids=None) -> Ticket` (TicketNotFound, also outside the scope)
- `find_by_reference(session, "T-2026-000123", controller_ids=None) -> Ticket | None`
- `find_by_requester_email(session, email, controller_ids=None) -> list[Ticket]` (blind index, one query)
- `find_by_message_ids`, `find_by_reply_token` (threading)
- `queue(session, controller_id=, triage=, status=, assignee_id=, unassigned=, older_than=, after=, limit=) -> QueuePage`
- `change_status`, `assign`, `move_to_controller` (triage -> controller)
- `reply_address(ticket, support_address)` -> `support+<token>@domain`

`controller_ids=None` means every controller (an unscoped role); a set limits the
lookup to those controllers, so a guessed id of another controller's ticket is
"not found". Triage tickets (controller NULL) are visible only when None or when
`include_triage=True` is passed where offered.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

from sqlalchemy import Select, literal, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.audit.service import record
from app.blobs.store import BlobTooLarge, iter_blob, move_blob, store_blob
from app.crypto.keys import adopt_remembered, live_remembered, owner_of, remember_keys, remembered
from app.exceptions import DeskError, NotFound, Refused
from app.principal import Principal
from app.tickets.models import DIRECTIONS, STATUSES, Attachment, Message, Ticket, key_owner_for

REFERENCE = re.compile(r"\bT-(\d{4})-(\d{6,})\b")
MAX_PAGE = 200
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


class QueueRow(NamedTuple):
    """One line of a queue page: the columns a list shows, the personal ones decrypted (None when restricted)."""

    id: int
    reference: str | None
    status: str
    assignee_id: int | None
    created_at: dt.datetime
    subject: str | None
    requester_email: str | None


@dataclass
class QueuePage:
    """One page of a queue; `next_after` is the keyset cursor of the next page (None at the end)."""

    rows: list[QueueRow]
    next_after: tuple[dt.datetime, int] | None
    # Ids of the page's tickets the caller's `restricted` flag marked; None when no flag was asked for.
    restricted: set[int] | None = None


def format_reference(created_at: dt.datetime, ticket_id: int) -> str:
    """T-<year>-<id, at least 6 digits>."""
    return f"T-{created_at.year:04d}-{ticket_id:06d}"


def parse_reference(text: str | None) -> tuple[int, int] | None:
    """The (year, id) of the first ticket reference in `text`, or None."""
    match = REFERENCE.search(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


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
    # The id is unique on both databases without a lock, so the reference is too.
    ticket.reference = format_reference(now, ticket.id)
    session.flush()
    _audit(session, ticket, "ticket.create", by=by, now=now, status=status, triage=controller_id is None)
    return ticket


def add_message(session: Session, ticket: Ticket, data: MessageInput, *, by: Principal, now: dt.datetime, raw_max_bytes: int | None = None) -> Message:
    """Append a message to the ticket; the raw original (if any) is kept encrypted with its SHA-256."""
    if data.direction not in DIRECTIONS:
        raise InvalidTicketChange(f"unknown message direction {data.direction!r}")
    message = Message(
        ticket_id=ticket.id,
        key_owner=ticket.key_owner,
        direction=data.direction,
        message_id=data.message_id,
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
    ticket.updated_at = now
    session.flush()
    _audit(session, ticket, "ticket.message", by=by, now=now, message_id=message.id, direction=data.direction)
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
    try:
        blob = store_blob(session, content, key_owner=ticket.key_owner, now=now, max_bytes=max_bytes)
    except BlobTooLarge:
        raise AttachmentTooLarge(f"the attachment is larger than {max_bytes} bytes") from None
    attachment = Attachment(
        message_id=message.id,
        key_owner=ticket.key_owner,
        filename=filename,
        content_type=(content_type or "application/octet-stream").lower()[:127],
        size=blob.size,
        sha256=blob.sha256,
        blob_id=blob.id,
        created_at=now,
    )
    session.add(attachment)
    session.flush()
    if by.kind == "staff":
        # Staff uploads are a change a person made; inbound attachments are covered by ticket.message.
        _audit(session, ticket, "ticket.attachment", by=by, now=now, message_id=message.id, attachment_id=attachment.id, size=blob.size)
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


def _scoped(stmt: Select[Any], controller_ids: Collection[int] | None, include_triage: bool = False) -> Select[Any]:
    if controller_ids is None:
        return stmt
    condition = Ticket.controller_id.in_(list(controller_ids))
    return stmt.where(or_(condition, Ticket.controller_id.is_(None)) if include_triage else condition)


def get_ticket(session: Session, ticket_id: int, *, controller_ids: Collection[int] | None = None, include_triage: bool = False) -> Ticket:
    """The ticket, or TicketNotFound (also when it belongs to a controller outside `controller_ids`)."""
    ticket = session.scalar(_scoped(select(Ticket).where(Ticket.id == ticket_id), controller_ids, include_triage))
    if ticket is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    return ticket


def find_by_reference(session: Session, reference: str, *, controller_ids: Collection[int] | None = None, include_triage: bool = False) -> Ticket | None:
    """The ticket with this reference (T-2026-000123), or None."""
    parsed = parse_reference(reference)
    if parsed is None:
        return None
    year, ticket_id = parsed
    stmt = select(Ticket).where(Ticket.reference == format_reference(dt.datetime(year, 1, 1, tzinfo=dt.UTC), ticket_id))
    return session.scalar(_scoped(stmt, controller_ids, include_triage))


def find_by_requester_email(
    session: Session, email: str, *, controller_ids: Collection[int] | None = None, include_triage: bool = False, limit: int = MAX_PAGE
) -> list[Ticket]:
    """Every ticket of a requester, newest first, through the per-controller blind index (one query)."""
    if not email or not email.strip():
        return []
    if controller_ids is None:
        from app.controllers.models import Controller

        scope: list[int | None] = [*session.scalars(select(Controller.id)), None]
    else:
        scope = [*controller_ids, *([None] if include_triage else [])]
    conditions = [Ticket.requester_email.matches(session, email, controller_id=key_owner_for(cid)) for cid in scope]
    if not conditions:
        return []
    stmt = select(Ticket).where(or_(*conditions)).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def find_by_message_ids(session: Session, message_ids: Sequence[str]) -> Ticket | None:
    """The ticket holding any of these Message-IDs (latest first), or None."""
    ids = [m for m in message_ids if m][-100:]
    if not ids:
        return None
    return session.scalar(select(Ticket).join(Message, Message.ticket_id == Ticket.id).where(Message.message_id.in_(ids)).order_by(Message.id.desc()).limit(1))


def find_by_reply_token(session: Session, token: str) -> Ticket | None:
    """The ticket whose reply address carries this token, or None."""
    if not token or len(token) > 32:
        return None
    return session.scalar(select(Ticket).where(Ticket.reply_token == token))


def message_exists(session: Session, message_id: str) -> bool:
    """Whether a message with this Message-ID is stored already."""
    return session.scalar(select(Message.id).where(Message.message_id == message_id)) is not None


def reply_address(ticket: Ticket, support_address: str) -> str:
    """The per-ticket reply address: support+<token>@domain."""
    local, _, domain = support_address.partition("@")
    return f"{local.split('+', 1)[0]}+{ticket.reply_token}@{domain}"


def queue(
    session: Session,
    *,
    controller_id: int | None,
    status: str | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    older_than: dt.datetime | None = None,
    after: tuple[dt.datetime, int] | None = None,
    limit: int = 50,
    restricted: ColumnElement[bool] | None = None,
) -> QueuePage:
    """A page of a controller's queue (controller_id None = triage), newest first, in one query.

    `older_than` filters by age (created before that time); `after` is the keyset
    cursor returned as `next_after` by the previous page. `restricted` is a boolean
    per ticket computed in the same statement (e.g. app.subject_data.restrict.restricted_flag()):
    the ids where it holds come back as `restricted`.
    """
    limit = max(1, min(limit, MAX_PAGE))
    flag = restricted if restricted is not None else literal(False)
    # The data keys this process already unwrapped for the owner ride along as a liveness check
    # (app.crypto.keys: a key shredded elsewhere is never used), so decrypting the page needs no key query.
    owner = owner_of(key_owner_for(controller_id))
    known = remembered(session, owner)
    live = live_remembered(known, owner) if known else literal(None)
    # The listed columns, not entities: a page of 50 skips the identity map and hydration of every column.
    columns = (Ticket.id, Ticket.reference, Ticket.status, Ticket.assignee_id, Ticket.created_at, Ticket.row_uid, Ticket.subject_ct, Ticket.requester_email_ct)
    owned = Ticket.controller_id.is_(None) if controller_id is None else Ticket.controller_id == controller_id
    stmt = select(*columns, flag.label("restricted"), live.label("live")).where(owned)
    if status is not None:
        if status not in STATUSES:
            raise InvalidTicketChange(f"unknown status {status!r}")
        stmt = stmt.where(Ticket.status == status)
    if unassigned:
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    elif assignee_id is not None:
        stmt = stmt.where(Ticket.assignee_id == assignee_id)
    if older_than is not None:
        stmt = stmt.where(Ticket.created_at < older_than)
    if after is not None:
        at, last_id = after
        # A row-value comparison is an index condition (Postgres starts the scan at the
        # cursor); the equivalent OR is only a filter, which made page N cost O(N) rows.
        stmt = stmt.where(tuple_(Ticket.created_at, Ticket.id) < tuple_(at, last_id))
    result = session.execute(stmt.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit + 1)).all()
    if result:
        adopt_remembered(session, owner, known, result[0].live)
    more = len(result) > limit
    hidden = {row.id for row in result[:limit] if row.restricted} if restricted is not None else None
    subject, email = Ticket.subject, Ticket.requester_email

    def shown(row: Any) -> QueueRow:
        # A restricted ticket's personal data is not even decrypted for the list (it is shown masked).
        masked = hidden is not None and row.id in hidden
        return QueueRow(
            row.id,
            row.reference,
            row.status,
            row.assignee_id,
            row.created_at,
            None if masked or row.subject_ct is None else subject.decrypt(session, row.subject_ct, row_uid=row.row_uid),
            None if masked or row.requester_email_ct is None else email.decrypt(session, row.requester_email_ct, row_uid=row.row_uid),
        )

    rows = [shown(row) for row in result[:limit]]
    return QueuePage(rows=rows, next_after=(rows[-1].created_at, rows[-1].id) if more else None, restricted=hidden)


def remember_queue_keys(session: Session, controller_id: int | None) -> None:
    """After a queue page was shown: keep its owner's unwrapped keys for this process's next pages (checked before each use)."""
    remember_keys(session, owner_of(key_owner_for(controller_id)))


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
    _audit(session, ticket, "ticket.move", by=by, now=now, controller_from=previous, controller_to=controller_id)
    return ticket
