"""Find a subject's tickets and messages within one controller by blind index (no decryption).

The subject is recognised by their email addresses: tickets they opened
(requester blind index) and messages they sent into other tickets of the
same controller (sender blind index). Requester and sender addresses share
the controller's email blind index, so one digest per address serves both.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.tickets.models import Message, Ticket


def digests(session: Session, emails: Iterable[str | None], controller_id: int) -> list[bytes]:
    """The controller's blind index of each address (addresses it cannot have seen give none)."""
    found = [Ticket.requester_email.index_value(session, e, controller_id=controller_id) for e in emails if e]
    return sorted({d for d in found if d is not None})


def ticket_ids_of(session: Session, digests_: Collection[bytes], controller_id: int) -> list[int]:
    """The tickets the subject opened at the controller (requester blind index)."""
    if not digests_:
        return []
    stmt = select(Ticket.id).where(Ticket.requester_email_bidx.in_(list(digests_)), Ticket.key_owner == controller_id)
    return sorted(set(session.scalars(stmt)))


def message_ids_by(session: Session, digests_: Collection[bytes], controller_id: int, ticket_ids: Collection[int]) -> list[int]:
    """Messages the subject sent into other tickets of the controller (sender blind index)."""
    if not digests_:
        return []
    stmt = select(Message.id).where(Message.sender_email_bidx.in_(list(digests_)), Message.key_owner == controller_id)
    if ticket_ids:
        stmt = stmt.where(Message.ticket_id.not_in(list(ticket_ids)))
    return sorted(set(session.scalars(stmt)))


def message_scope(ticket_ids: Collection[int], other_ids: Collection[int]) -> ColumnElement[bool]:
    """A WHERE clause: the messages of the subject's tickets and their messages elsewhere."""
    parts: list[ColumnElement[bool]] = []
    if ticket_ids:
        parts.append(Message.ticket_id.in_(list(ticket_ids)))
    if other_ids:
        parts.append(Message.id.in_(list(other_ids)))
    return or_(*parts) if parts else Message.id.is_(None)
