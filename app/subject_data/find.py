"""Find every ticket, message and attachment of a request's subject within one controller (counts before acting).

The lookups themselves are the deletion engine's (`app.deletion.scope`: by
blind index, no decryption); a request adds its own source ticket when it is
that controller's or still in triage. Counts are shown before anything is
done; the ids drive the export (an erasure's run fixes its own plan).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.deletion.scope import digests, message_ids_by, message_scope, ticket_ids_of
from app.dsr.models import Dsr
from app.mail.models import OutboxEmail
from app.subject_data.errors import InvalidRequest
from app.tickets.models import Attachment, Message, Ticket


class NotConcerned(InvalidRequest):
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


def source_ticket(session: Session, source_ticket_id: int | None, controller_id: int) -> int | None:
    """The request's source ticket when it belongs to this controller or is still in triage (then it is the subject's too)."""
    if source_ticket_id is None:
        return None
    source = session.execute(select(Ticket.id, Ticket.controller_id).where(Ticket.id == source_ticket_id)).first()
    return source_ticket_id if source is not None and source.controller_id in (controller_id, None) else None


def subject_ticket_ids(
    session: Session, email: str | None, controller_id: int, *, source_ticket_id: int | None = None, found: list[bytes] | None = None
) -> list[int]:
    """The subject's tickets at the controller (requester blind index), plus the request's source ticket when it is theirs.

    `found`: the address's blind index digests when the caller has them already.
    """
    found = digests(session, [email], controller_id) if found is None else found
    ids = set(ticket_ids_of(session, found, controller_id))
    source = source_ticket(session, source_ticket_id, controller_id)
    if source is not None:
        ids.add(source)
    return sorted(ids)


def other_message_ids(session: Session, email: str | None, controller_id: int, ticket_ids: Collection[int], *, found: list[bytes] | None = None) -> list[int]:
    """Messages the subject sent into other tickets of the controller (sender blind index)."""
    found = digests(session, [email], controller_id) if found is None else found
    return message_ids_by(session, found, controller_id, ticket_ids)


def find(session: Session, dsr: Dsr, controller_id: int, *, exclude_ticket_ids: Collection[int] = ()) -> Found:
    """Every ticket, message and attachment of the request's subject at one controller, with counts."""
    if controller_id not in dsr.controller_ids:
        raise NotConcerned(f"DSR {dsr.id} does not concern controller {controller_id}")
    email = dsr.subject_email
    digests_ = digests(session, [email], controller_id)
    excluded = set(exclude_ticket_ids)
    ticket_ids = [t for t in subject_ticket_ids(session, email, controller_id, source_ticket_id=dsr.ticket_id, found=digests_) if t not in excluded]
    others = other_message_ids(session, email, controller_id, ticket_ids, found=digests_)
    result = Found(controller_id=controller_id, ticket_ids=ticket_ids, other_message_ids=others)
    scope = message_scope(ticket_ids, others)
    # Messages and their attachments counted in one statement.
    messages, attachments = session.execute(
        select(func.count(func.distinct(Message.id)), func.count(Attachment.id))
        .select_from(Message)
        .outerjoin(Attachment, Attachment.message_id == Message.id)
        .where(scope)
    ).one()
    result.messages, result.attachments = int(messages or 0), int(attachments or 0)
    related: ColumnElement[bool] = (OutboxEmail.related_type == "dsr") & (OutboxEmail.related_id == dsr.id)
    if ticket_ids:
        related = or_(related, (OutboxEmail.related_type == "ticket") & OutboxEmail.related_id.in_(ticket_ids))
    result.outbox = int(session.scalar(select(func.count()).select_from(OutboxEmail).where(related)) or 0)
    return result
