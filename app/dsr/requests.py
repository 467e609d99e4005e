"""Requests: record one (from the privacy address or a ticket staff mark), route it, acknowledge it, read them.

Every write flushes and writes its history line and audit event in the
caller's transaction; the edge (view, actor, CLI, mail intake handler)
commits. The 24 h clock runs from the subject's first message, not from when
staff noticed. A request gets one pending forward per controller it concerns
and the forward's doorbell rings after the commit (app.dsr.forward).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from app import typed_text
from app.audit.service import record
from app.controllers.models import Controller
from app.dsr import deadlines
from app.dsr.errors import DsrNotFound, InvalidDsr
from app.dsr.forward import FORWARD_DOORBELL
from app.dsr.gate import ACKNOWLEDGEMENT, acknowledgement_body
from app.dsr.history import Step, add_event, add_lines, audit_steps, by_label
from app.dsr.models import TYPES, Dsr, DsrForward, DsrSuggestion, Instruction, StandingInstruction
from app.dsr.request_row import insert_request, standing_read
from app.dsr.routing import route
from app.dsr.settings import DsrSettings
from app.mail.outbox import enqueue_email
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket


@dataclass
class DsrInput:
    """What staff (or the privacy-address intake) know about a request."""

    types: Sequence[str]
    subject_email: str | None = None
    subject_name: str | None = None
    subject_identifiers: str | None = None
    request_text: str | None = None


def format_reference(received_at: dt.datetime, dsr_id: int) -> str:
    """DSR-<year>-<id, at least 6 digits>: the tag used in email subjects."""
    return f"DSR-{received_at.year:04d}-{dsr_id:06d}"


def _clean_types(types: Sequence[str]) -> list[str]:
    unknown = [t for t in types if t not in TYPES]
    if unknown:
        raise InvalidDsr(f"types must be among {', '.join(TYPES)}")
    return [t for t in TYPES if t in types]


def create_dsr(
    session: Session,
    data: DsrInput,
    *,
    source: str,
    received_at: dt.datetime,
    ticket: Ticket | None,
    message_pk: int | None = None,
    controller_ids: Collection[int] | None = None,
    by: Principal,
    now: dt.datetime,
) -> Dsr:
    """Record a request with its 24 h clock from `received_at`; route it (or leave it in triage) and ring for the forward."""
    # Every problem of the input at once (the form shows them together), not the first.
    problems: list[str] = []
    try:
        types = _clean_types(data.types)
    except InvalidDsr as exc:
        problems.append(str(exc))
    email = (data.subject_email or "").strip() or None
    if email is not None and ("@" not in email or len(email) > 320):
        problems.append("subject email is not an email address")
    if problems:
        raise InvalidDsr("; ".join(problems))
    if controller_ids is None:
        # Routed before the row exists (routing reads tickets, domains and keys, never this request), so the
        # request is inserted with its forward and state in one flush; the controllers come from rows of the
        # database (the ticket, a domain, an active controller's tickets), so they are not looked up again.
        routing = route(session, ticket=ticket, subject_email=email)
        chosen = [routing.controller_id] if routing.controller_id is not None else []
        how, candidates = routing.how, len(routing.controller_ids)
    else:
        chosen, how, candidates = [], ["staff"], len(set(controller_ids))
    fields: dict[str, Any] = {
        "types": types,
        "state": "awaiting_forward" if chosen else "triage",
        "is_open": True,
        "source": source,
        "ticket_id": ticket.id if ticket is not None else None,
        "message_pk": message_pk,
        "received_at": received_at,
        "due_at": deadlines.due_at(received_at),
        "created_at": now,
        "updated_at": now,
    }
    plain = {
        "subject_email": email,
        "subject_name": (data.subject_name or "").strip() or None,
        "subject_identifiers": (data.subject_identifiers or "").strip() or None,
        "request_text": (data.request_text or "").strip() or None,
    }
    # The creation's audit event names no controller (the request had none when it was recorded), as before; the
    # route's names the one it was routed to. Both lines and both events are written together.
    steps = [Step("create", None, {"source": source, "types": types, "ticket_id": fields["ticket_id"], "candidates": candidates, "how": how})]
    if chosen:
        steps.append(Step("route", chosen[0], {"controller_ids": chosen}))
    # Postgres: the request, its forward and its history lines in one statement (app.dsr.request_row).
    lines = [(step.code, step.details) for step in steps]
    dsr = insert_request(session, fields, plain, forward_to=chosen[0] if chosen else None, events=lines, by_label=by_label(by), now=now)
    if dsr is None:
        dsr = Dsr(
            **fields,
            **plain,
            # Known from the start (an empty list is not read back from the database when the history asks).
            forwards=[DsrForward(controller_id=cid, state="pending", outbox_ids=[], created_at=now) for cid in chosen],
        )
        session.add(dsr)
        session.flush()
        add_lines(session, dsr.id, steps, by=by, now=now)
    reference = format_reference(received_at, dsr.id)
    if dsr.reference != reference:
        # SQLite (Postgres fills it in the INSERT, migration 0026), or a time not in UTC whose year differs there:
        # written by the next flush (the audit events').
        dsr.reference = reference
    audit_steps(session, dsr.id, steps, by=by, now=now)
    if chosen:
        FORWARD_DOORBELL.ring_after_commit(session, [dsr.id])
    elif controller_ids:
        assign_controllers(session, dsr.id, controller_ids, by=by, now=now)
    return dsr


def first_inbound_at(session: Session, ticket: Ticket) -> dt.datetime:
    """When the ticket's first inbound message reached the desk (the ticket's creation if it has none)."""
    first = session.scalar(select(func.min(Message.created_at)).where(Message.ticket_id == ticket.id, Message.direction == "inbound"))
    if first is None:
        return ticket.created_at
    return first if first.tzinfo else first.replace(tzinfo=dt.UTC)


def create_from_ticket(
    session: Session, ticket_id: int, data: DsrInput, *, controller_ids: Collection[int] | None = None, by: Principal, now: dt.datetime
) -> Dsr:
    """Staff mark a ticket as a DSR: the clock runs from the subject's first message, not from now.

    InvalidDsr without a type or without the subject's email or name: a bare POST must not
    record (and forward) an empty request (issue 12 item 12); nor with a control character, or nothing visible, in
    what staff typed (`app.typed_text`; a request made from mail takes its text as the mail had it).
    """
    if not data.types:
        raise InvalidDsr("choose at least one type of request")
    if not ((data.subject_email or "").strip() or (data.subject_name or "").strip()):
        raise InvalidDsr("give the subject's email address or name")
    typed = {"subject name": data.subject_name, "other identifiers": data.subject_identifiers, "request text": data.request_text}
    problems = [f"{label}: the text {found}" for label, value in typed.items() if value and value.strip() and (found := typed_text.problem(value.strip()))]
    if problems:
        raise InvalidDsr("; ".join(problems))
    ticket = tickets.get_ticket(session, ticket_id)
    first = session.scalar(select(Message.id).where(Message.ticket_id == ticket.id, Message.direction == "inbound").order_by(Message.id).limit(1))
    dsr = create_dsr(
        session,
        data,
        source="staff",
        received_at=first_inbound_at(session, ticket),
        ticket=ticket,
        message_pk=first,
        controller_ids=controller_ids,
        by=by,
        now=now,
    )
    session.execute(update(DsrSuggestion).where(DsrSuggestion.ticket_id == ticket.id, DsrSuggestion.state == "open").values(state="accepted"))
    return dsr


def suggest(session: Session, ticket: Ticket, types: Sequence[str], languages: Sequence[str], score: int, *, now: dt.datetime) -> DsrSuggestion:
    """Keep the classifier's hint on a ticket for staff to confirm or dismiss (one per ticket)."""
    existing = session.scalar(select(DsrSuggestion).where(DsrSuggestion.ticket_id == ticket.id))
    if existing is not None:
        return existing
    item = DsrSuggestion(ticket_id=ticket.id, types=list(types), languages=list(languages), score=score, state="open", created_at=now)
    session.add(item)
    session.flush()
    return item


def dismiss_suggestion(session: Session, suggestion_id: int, *, by: Principal, now: dt.datetime) -> None:
    """Staff decided the ticket is not a DSR."""
    item = session.get(DsrSuggestion, suggestion_id)
    if item is None or item.state != "open":
        raise DsrNotFound("no open suggestion with that id")
    item.state = "dismissed"
    session.flush()
    record(session, by=by, action="dsr.suggestion_dismissed", target_type="ticket", target_id=item.ticket_id, now=now)


def assign_controllers(session: Session, dsr_id: int, controller_ids: Collection[int], *, by: Principal, now: dt.datetime) -> Dsr:
    """The controllers a request concerns (from routing or triage): one pending forward each, and a doorbell."""
    dsr = get_dsr(session, dsr_id)
    if not dsr.is_open:
        raise InvalidDsr("the request is closed")
    wanted = sorted(set(controller_ids))
    if not wanted:
        raise InvalidDsr("choose at least one controller")
    known = set(session.scalars(select(Controller.id).where(Controller.id.in_(wanted))))
    if known != set(wanted):
        raise InvalidDsr("unknown controller")
    have = set(dsr.controller_ids)
    added = [cid for cid in wanted if cid not in have]
    for cid in added:
        dsr.forwards.append(DsrForward(controller_id=cid, state="pending", outbox_ids=[], created_at=now))
    if added and dsr.state in ("triage", "forwarded"):
        dsr.state = "awaiting_forward"
        dsr.forwarded_at = None
        dsr.forward_seconds = None
    dsr.updated_at = now
    session.flush()
    if added:
        add_event(session, dsr, "route", by=by, now=now, controller_ids=added)
        FORWARD_DOORBELL.ring_after_commit(session, [dsr.id])
    return dsr


def acknowledge(session: Session, dsr: Dsr, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> bool:
    """Send the subject the neutral acknowledgement a controller's standing instruction allows; off without one (WECO §12.2)."""
    if not dsr.subject_email or not dsr.forwards:
        return False
    for cid in dsr.controller_ids:
        standing = standing_read(session, dsr.id, cid)  # read by the statement that wrote the request (Postgres), if so
        if standing is None:
            rule = (StandingInstruction.controller_id == cid, StandingInstruction.kind == ACKNOWLEDGEMENT, StandingInstruction.revoked_at.is_(None))
            standing = session.scalar(select(StandingInstruction.id).where(*rule).limit(1)) is not None
        if not standing:
            return False
    enqueue_email(
        session,
        to=dsr.subject_email,
        subject=f"Your request {dsr.reference}",
        # Always the neutral text (receipt and reference): a stored template is never sent (issue 12 item 2).
        body_text=acknowledgement_body(dsr.reference or ""),
        reply_to=settings.reply_to,
        related_type="ticket" if dsr.ticket_id else "dsr",
        related_id=dsr.ticket_id or dsr.id,
        kind=ACKNOWLEDGEMENT,
        msgid_domain=settings.msgid_domain,
        by=by,
        now=now,
    )
    add_event(session, dsr, "acknowledged", by=by, now=now)
    return True


def get_dsr(session: Session, dsr_id: int, *, controller_ids: Collection[int] | None = None) -> Dsr:
    """One request (DsrNotFound when missing or none of its controllers is in scope)."""
    dsr = session.get(Dsr, dsr_id)
    if dsr is None:
        raise DsrNotFound(f"no DSR {dsr_id}")
    if controller_ids is not None and not set(dsr.controller_ids) & set(controller_ids):
        raise DsrNotFound(f"no DSR {dsr_id}")
    return dsr


def list_dsrs(session: Session, *, open_only: bool = False, state: str | None = None, limit: int = 200) -> list[Dsr]:
    """Requests by deadline (open ones first when not filtered)."""
    stmt = select(Dsr).options(selectinload(Dsr.forwards))
    if open_only:
        stmt = stmt.where(Dsr.is_open.is_(True))
    if state is not None:
        stmt = stmt.where(Dsr.state == state)
    return list(session.scalars(stmt.order_by(Dsr.due_at, Dsr.id).limit(limit)))


def pending_instruction_counts(session: Session, dsr_ids: Collection[int]) -> dict[int, int]:
    """Pending (confirmable) instructions per request."""
    if not dsr_ids:
        return {}
    rows = session.execute(
        select(Instruction.dsr_id, func.count()).where(Instruction.dsr_id.in_(list(dsr_ids)), Instruction.state == "pending").group_by(Instruction.dsr_id)
    )
    return {dsr_id: int(n) for dsr_id, n in rows}
