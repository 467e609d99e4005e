"""Restriction (Art. 18) and objection (Art. 21): the subject's data shown only to privacy officers until lifted.

A restriction covers the subject's tickets at one controller when it is
recorded, and any ticket of that controller whose requester has the same
address later (the controller's blind index). While it is active: agents
cannot open those tickets, privacy officers can and every access is
audit-logged, exports leave them out and replies from the ticket are refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.audit.service import record
from app.dsr.history import add_event
from app.dsr.models import Dsr
from app.principal import Principal
from app.subject_data.authority import instruction_for, request
from app.subject_data.errors import InvalidRequest
from app.subject_data.find import subject_ticket_ids
from app.subject_data.models import RESTRICTION_KINDS, RestrictedTicket, Restriction
from app.tickets.models import Ticket


def restricted_ticket_ids(session: Session, ticket_ids: Collection[int]) -> set[int]:
    """Which of these tickets are under an active restriction or objection (two indexed queries)."""
    ids = [int(t) for t in ticket_ids if t]
    if not ids or session.scalar(select(Restriction.id).where(Restriction.lifted_at.is_(None)).limit(1)) is None:
        return set()  # the usual case: one tiny query for a queue page
    listed = set(
        session.scalars(
            select(RestrictedTicket.ticket_id)
            .join(Restriction, Restriction.id == RestrictedTicket.restriction_id)
            .where(RestrictedTicket.ticket_id.in_(ids), Restriction.lifted_at.is_(None))
        )
    )
    rest = [t for t in ids if t not in listed]
    if rest:
        # Tickets the subject opened after the restriction was recorded: same controller, same blind index.
        later = session.scalars(
            select(Ticket.id)
            .join(Restriction, (Restriction.controller_id == Ticket.controller_id) & (Restriction.email_bidx == Ticket.requester_email_bidx))
            .where(Ticket.id.in_(rest), Restriction.lifted_at.is_(None))
        )
        listed.update(later)
    return listed


def restricted_flag() -> ColumnElement[bool]:
    """Per `Ticket` row of the enclosing query: under an active restriction or objection (the same two rules, as EXISTS).

    Lets a list fold the check into its own statement (the queue page: one statement per page);
    both probes are indexed (restricted tickets by ticket id, restrictions by controller and blind index).
    """
    listed = exists().where(
        RestrictedTicket.ticket_id == Ticket.id,
        Restriction.id == RestrictedTicket.restriction_id,
        Restriction.lifted_at.is_(None),
    )
    later = exists().where(
        Restriction.controller_id == Ticket.controller_id,
        Restriction.email_bidx == Ticket.requester_email_bidx,
        Restriction.lifted_at.is_(None),
    )
    return or_(listed, later)


def is_restricted(session: Session, ticket_id: int) -> bool:
    """Whether one ticket is under an active restriction or objection."""
    return bool(restricted_ticket_ids(session, [ticket_id]))


def log_access(session: Session, ticket_id: int, controller_id: int | None, *, what: str, by: Principal, now: dt.datetime) -> None:
    """Audit one access to restricted data (a privacy officer opened the ticket or a file of it)."""
    record(
        session,
        by=by,
        action="subject_data.restricted_access",
        target_type="ticket",
        target_id=ticket_id,
        controller_id=controller_id,
        details={"what": what},
        now=now,
    )


def _record(session: Session, dsr: Dsr, controller_id: int, kind: str, *, instruction_id: int, by: Principal, now: dt.datetime) -> Restriction:
    """Write a restriction or objection on the subject's data at one controller, with the tickets it covers now (flush only)."""
    if kind not in RESTRICTION_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(RESTRICTION_KINDS)}")
    email = dsr.subject_email
    if not email:
        raise InvalidRequest("the request has no subject email to recognise the subject's data by")
    item = Restriction(
        dsr_id=dsr.id,
        controller_id=controller_id,
        kind=kind,
        email_bidx=Ticket.requester_email.index_value(session, email, controller_id=controller_id),
        instruction_id=instruction_id,
        created_by=by.id,
        created_at=now,
    )
    session.add(item)
    session.flush()
    ticket_ids = subject_ticket_ids(session, email, controller_id, source_ticket_id=dsr.ticket_id)
    session.add_all(RestrictedTicket(restriction_id=item.id, ticket_id=t) for t in ticket_ids)
    session.flush()
    record(
        session,
        by=by,
        action="subject_data.restrict",
        target_type="dsr",
        target_id=dsr.id,
        controller_id=controller_id,
        details={"restriction_id": item.id, "kind": kind, "tickets": len(ticket_ids), "instruction_id": instruction_id},
        now=now,
    )
    return item


def restrict(session: Session, dsr_id: int, controller_id: int, kind: str, *, by: Principal, now: dt.datetime) -> Restriction:
    """Record a restriction or objection under the controller's confirmed `restrict` instruction (flush only)."""
    dsr = request(session, dsr_id)
    if controller_id not in dsr.controller_ids:
        raise InvalidRequest("the request does not concern that controller")
    instruction_id = instruction_for(session, dsr_id, "restrict", controller_id)
    item = _record(session, dsr, controller_id, kind, instruction_id=instruction_id, by=by, now=now)
    add_event(session, dsr, "restricted", by=by, now=now, restriction_id=item.id, controller_id=controller_id, kind=kind)
    return item


def lift(session: Session, dsr_id: int, restriction_id: int, *, by: Principal, now: dt.datetime) -> Restriction:
    """End a restriction of this request (the controller instructed so); audit-logged, noted on the request."""
    dsr = request(session, dsr_id)
    item = session.get(Restriction, restriction_id)
    if item is None or item.lifted_at is not None:
        raise InvalidRequest("no active restriction with that id")
    if item.dsr_id != dsr.id:
        raise InvalidRequest("that restriction belongs to another request")
    item.lifted_at, item.lifted_by = now, by.id
    session.flush()
    record(
        session,
        by=by,
        action="subject_data.lift",
        target_type="dsr",
        target_id=item.dsr_id,
        controller_id=item.controller_id,
        details={"restriction_id": item.id, "kind": item.kind},
        now=now,
    )
    add_event(session, dsr, "restriction_lifted", by=by, now=now, restriction_id=item.id)
    return item


def active_for(session: Session, dsr_id: int) -> list[Restriction]:
    """Restrictions recorded for a request (active and lifted), newest first."""
    return list(session.scalars(select(Restriction).where(Restriction.dsr_id == dsr_id).order_by(Restriction.id.desc())))
