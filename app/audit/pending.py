"""The queue of `app.audit.service.appended_at_end`: a session's events checked but not yet appended, per transaction.

Kept in `session.info`, tagged with the session's root transaction. A commit appends the queue first (the
service's before_commit listener), so a queue found tagged with a transaction that has ended belonged to one
rolled back: it is dropped with it, never appended to a later transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, SessionTransaction

from app.audit.chain import Link
from app.audit.models import AuditEvent

_KEY = "dsr_desk_audit_pending"


@dataclass
class Queue:
    """The events queued in one root transaction, in call order: their links and personal parts, and the instances
    handed out for them (filled when they are appended)."""

    transaction: SessionTransaction | None
    links: list[tuple[Link, dict[str, Any]]] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)
    open: bool = True  # an `appended_at_end` block is collecting


def current(session: Session) -> Queue | None:
    """The session's queue for its current transaction (begun if it was not), or None; a queue of an ended transaction
    is emptied (and dropped unless a block is still collecting)."""
    queue: Queue | None = session.info.get(_KEY)
    if queue is None:
        return None
    session.connection()  # the transaction begun, as the append would
    transaction = session.get_transaction()
    if queue.transaction is not transaction:
        queue.links.clear()
        queue.events.clear()
        if not queue.open:
            del session.info[_KEY]
            return None
        queue.transaction = transaction
    return queue


def queued(session: Session) -> bool:
    """True when the session holds queued events (of its current transaction or not: `take` tells)."""
    queue: Queue | None = session.info.get(_KEY)
    return queue is not None and bool(queue.links)


def take(session: Session) -> tuple[list[tuple[Link, dict[str, Any]]], list[AuditEvent]] | None:
    """The current transaction's queued events (links and instances), emptied from the queue; None when there are none."""
    if not queued(session):
        return None
    queue = current(session)
    if queue is None or not queue.links:
        return None
    taken = list(queue.links), list(queue.events)
    queue.links.clear()
    queue.events.clear()
    return taken


def collecting(session: Session) -> bool:
    """True inside an `appended_at_end` block of this session."""
    queue: Queue | None = session.info.get(_KEY)
    return queue is not None and queue.open


def start(session: Session) -> Queue:
    """A new, collecting queue for the session (its transaction tagged at the first event)."""
    queue = session.info[_KEY] = Queue(transaction=None)
    return queue


def end(session: Session, queue: Queue) -> None:
    """Forget `queue` (its block ended and its events were appended)."""
    if session.info.get(_KEY) is queue:
        del session.info[_KEY]
