"""Find every ticket, message and attachment of a subject within one controller, by blind index (no decryption).

The subject is recognised by the email on the request: tickets they opened
(requester blind index), messages they sent into other tickets of the same
controller (sender blind index), and the request's own source ticket when it
is that controller's or still in triage. Counts are shown before anything is
done; the ids drive the export and the erasure.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.dsr.models import Dsr
from app.mail.models import OutboxEmail
from app.tickets.models import Attachment, Message, Ticket


class FindError(Exception):
    """Base of the find service's errors."""


class NotConcerned(FindError):
    """The controller is not one the request was routed to."""


@dataclass
class Found:
    """The subject's data at one controller: ids, and the counts shown before acting."""

    controller_id: int
    ticket_ids: list[int] = field(default_factory=list)
    # Messages the subject sent into tickets that are not theirs.
    other_message_ids: list[int] = field(default_factory=list)
    messages: int = 0
    attachments: int = 0
    outbox: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """What the page shows and the audit log keeps."""
        return {"tickets": len(self.ticket_ids), "messages": self.messages, "attachments": self.attachments, "outbox": self.outbox}


def _digest(session: Session, email: str, controller_id: int) -> bytes | None:
    # Requester and sender addresses share the controller's email blind index: one digest serves both lookups.
    return Ticket.requester_email.index_value(session, email, controller_id=controller_id)


def subject_ticket_ids(
    session: Session, email: str | None, controller_id: int, *, source_ticket_id: int | None = None, digest: bytes | None = None
) -> list[int]:
    """The subject's tickets at the controller (requester blind index), plus the request's source ticket when it is theirs."""
    ids: set[int] = set()
    digest = digest or (_digest(session, email, controller_id) if email else None)
    if digest is not None:
        ids.update(session.scalars(select(Ticket.id).where(Ticket.requester_email_bidx == digest, Ticket.key_owner == controller_id)))
    if source_ticket_id is not None:
        source = session.execute(select(Ticket.id, Ticket.controller_id).where(Ticket.id == source_ticket_id)).first()
        if source is not None and source.controller_id in (controller_id, None):
            ids.add(source_ticket_id)
    return sorted(ids)


def other_message_ids(session: Session, email: str | None, controller_id: int, ticket_ids: Collection[int], *, digest: bytes | None = None) -> list[int]:
    """Messages the subject sent into other tickets of the controller (sender blind index)."""
    digest = digest or (_digest(session, email, controller_id) if email else None)
    if digest is None:
        return []
    stmt = select(Message.id).where(Message.sender_email_bidx == digest, Message.key_owner == controller_id)
    if ticket_ids:
        stmt = stmt.where(Message.ticket_id.not_in(list(ticket_ids)))
    return sorted(session.scalars(stmt))


def message_scope(ticket_ids: Collection[int], other_ids: Collection[int]) -> ColumnElement[bool]:
    """A WHERE clause: the messages of the subject's tickets and their messages elsewhere."""
    parts: list[ColumnElement[bool]] = []
    if ticket_ids:
        parts.append(Message.ticket_id.in_(list(ticket_ids)))
    if other_ids:
        parts.append(Message.id.in_(list(other_ids)))
    return or_(*parts) if parts else Message.id.is_(None)


def find(session: Session, dsr: Dsr, controller_id: int, *, exclude_ticket_ids: Collection[int] = ()) -> Found:
    """Every ticket, message and attachment of the request's subject at one controller, with counts."""
    if controller_id not in dsr.controller_ids:
        raise NotConcerned(f"DSR {dsr.id} does not concern controller {controller_id}")
    email = dsr.subject_email
    digest = _digest(session, email, controller_id) if email else None
    excluded = set(exclude_ticket_ids)
    ticket_ids = [t for t in subject_ticket_ids(session, email, controller_id, source_ticket_id=dsr.ticket_id, digest=digest) if t not in excluded]
    others = other_message_ids(session, email, controller_id, ticket_ids, digest=digest)
    found = Found(controller_id=controller_id, ticket_ids=ticket_ids, other_message_ids=others)
    scope = message_scope(ticket_ids, others)
    # Messages and their attachments counted in one statement.
    messages, attachments = session.execute(
        select(func.count(func.distinct(Message.id)), func.count(Attachment.id))
        .select_from(Message)
        .outerjoin(Attachment, Attachment.message_id == Message.id)
        .where(scope)
    ).one()
    found.messages, found.attachments = int(messages or 0), int(attachments or 0)
    related: ColumnElement[bool] = (OutboxEmail.related_type == "dsr") & (OutboxEmail.related_id == dsr.id)
    if ticket_ids:
        related = or_(related, (OutboxEmail.related_type == "ticket") & OutboxEmail.related_id.in_(ticket_ids))
    found.outbox = int(session.scalar(select(func.count()).select_from(OutboxEmail).where(related)) or 0)
    return found
