"""DSR services: intake, routing, the forward to the controller, the sweeper, missed deadlines and closing.

Every write flushes and writes its audit entry and history line in the
caller's transaction; the edge (view, actor, CLI) commits. Forwarding is
exactly once per (request, controller): a unique forward row is created
`pending` when the controller becomes known, and the forward claims it with a
conditional UPDATE (pending -> forwarded) in the same transaction as the
outbox rows, so a duplicate doorbell, a second worker or a crash mid-forward
can never produce a second forward. The broker is only a doorbell: the
sweeper finds every pending forward and, once a doorbell is overdue, forwards
it itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.orm import Session, load_only, selectinload

from app.addresses import InvalidAddress, normalise_email
from app.audit.service import record
from app.auth.models import User
from app.controllers.models import Controller
from app.db import utcnow
from app.dsr import deadlines
from app.dsr.models import TYPES, UNFORWARDED, Dsr, DsrEvent, DsrForward, DsrSuggestion
from app.dsr.routing import route
from app.exceptions import DeskError, NotFound, Refused
from app.jobs.doorbell import Doorbell
from app.jobs.service import get_state, save_state
from app.mail.outbound import enqueue_email, msgid_domain_for
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket

log = logging.getLogger(__name__)

FORWARD_ACTOR = "forward_dsr"
SWEEP_BATCH = 500
# A pending forward whose doorbell has not been answered by then is forwarded by the sweeper itself.
FORWARD_INLINE_AFTER = dt.timedelta(minutes=5)
_FORWARD_DOORBELL = Doorbell(
    FORWARD_ACTOR,
    key="dsr_forward_doorbells",
    log=log,
    broker_down="dsr: broker unavailable (%s); the sweeper will forward DSR %s",
    no_actor="dsr: no %s actor declared; the sweeper will forward %d request(s)",
)


class DsrError(DeskError):
    """Base of the DSR service's errors."""


class DsrNotFound(DsrError, NotFound):
    """No request with that id (or not in the caller's scope)."""


class InvalidDsr(DsrError, Refused, ValueError):
    """Input the desk refuses; the message is safe to show (names the field, never the value)."""


@dataclass(frozen=True)
class DsrSettings:
    """Addresses the forward needs (from app.config)."""

    privacy_address: str
    msgid_domain: str

    @property
    def reply_to(self) -> str | None:
        """Where controllers' replies go: the privacy address, unless it is not routable (the embedded default *.localhost)."""
        try:
            return normalise_email(self.privacy_address)
        except InvalidAddress:
            return None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DsrSettings:
        """PRIVACY_ADDRESS (where controllers reply) and the Message-ID domain."""
        return cls(privacy_address=str(config.get("PRIVACY_ADDRESS") or "privacy@desk.localhost"), msgid_domain=msgid_domain_for(config))


@dataclass
class DsrInput:
    """What staff (or the privacy-address intake) know about a request."""

    types: Sequence[str]
    subject_email: str | None = None
    subject_name: str | None = None
    subject_identifiers: str | None = None
    request_text: str | None = None


# --- history and audit ----------------------------------------------------------


def add_event(session: Session, dsr: Dsr, code: str, *, by: Principal, now: dt.datetime, **details: Any) -> None:
    """A history line and its audit event (details: ids, counts, codes only)."""
    session.add(DsrEvent(dsr_id=dsr.id, at=now, code=code, by_label=by.label[:100], details=dict(details)))
    controller = dsr.forwards[0].controller_id if len(dsr.forwards) == 1 else None
    record(session, by=by, action=f"dsr.{code}", target_type="dsr", target_id=dsr.id, controller_id=controller, details=details, now=now)


def format_reference(received_at: dt.datetime, dsr_id: int) -> str:
    """DSR-<year>-<id, at least 6 digits>: the tag used in email subjects."""
    return f"DSR-{received_at.year:04d}-{dsr_id:06d}"


def _clean_types(types: Sequence[str]) -> list[str]:
    unknown = [t for t in types if t not in TYPES]
    if unknown:
        raise InvalidDsr(f"types must be among {', '.join(TYPES)}")
    return [t for t in TYPES if t in types]


# --- intake -----------------------------------------------------------------------


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
    types = _clean_types(data.types)
    email = (data.subject_email or "").strip() or None
    if email is not None and ("@" not in email or len(email) > 320):
        raise InvalidDsr("subject email is not an email address")
    dsr = Dsr(
        types=types,
        state="triage",
        is_open=True,
        source=source,
        ticket_id=ticket.id if ticket is not None else None,
        message_pk=message_pk,
        subject_email=email,
        subject_name=(data.subject_name or "").strip() or None,
        subject_identifiers=(data.subject_identifiers or "").strip() or None,
        request_text=(data.request_text or "").strip() or None,
        received_at=received_at,
        due_at=deadlines.due_at(received_at),
        created_at=now,
        updated_at=now,
    )
    session.add(dsr)
    session.flush()
    dsr.reference = format_reference(received_at, dsr.id)
    session.flush()
    if controller_ids is None:
        routing = route(session, ticket=ticket, subject_email=email)
        chosen = [routing.controller_id] if routing.controller_id is not None else []
        how = routing.how
        candidates = len(routing.controller_ids)
    else:
        chosen, how, candidates = sorted(set(controller_ids)), ["staff"], len(set(controller_ids))
    add_event(session, dsr, "create", by=by, now=now, source=source, types=types, ticket_id=dsr.ticket_id, candidates=candidates, how=how)
    if chosen:
        assign_controllers(session, dsr.id, chosen, by=by, now=now)
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
    """Staff mark a ticket as a DSR: the clock runs from the subject's first message, not from now."""
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
        _FORWARD_DOORBELL.ring_after_commit(session, [dsr.id])
    return dsr


def acknowledge(session: Session, dsr: Dsr, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> bool:
    """Send the subject the neutral acknowledgement a controller's standing instruction allows; off without one (WECO §12.2)."""
    from app.dsr.gate import ACKNOWLEDGEMENT
    from app.dsr.models import StandingInstruction

    if not dsr.subject_email or not dsr.forwards:
        return False
    templates = []
    for cid in dsr.controller_ids:
        standing = session.scalar(
            select(StandingInstruction)
            .where(StandingInstruction.controller_id == cid, StandingInstruction.kind == ACKNOWLEDGEMENT, StandingInstruction.revoked_at.is_(None))
            .order_by(StandingInstruction.id.desc())
            .limit(1)
        )
        if standing is None:
            return False
        templates.append(standing.template)
    enqueue_email(
        session,
        to=dsr.subject_email,
        subject=f"Your request {dsr.reference}",
        body_text=templates[0] or "",
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


# --- forward ----------------------------------------------------------------------


def forward_text(dsr: Dsr, controller: Controller) -> str:
    """The forward's body: what the controller needs and no more (data-minimised)."""
    lines = [
        f"Dear {controller.name},",
        "",
        f"We received a data subject request that concerns you. Reference: {dsr.reference}",
        f"Received: {dsr.received_at:%Y-%m-%d %H:%M} UTC",
        f"Request type(s): {', '.join(dsr.types) or 'not stated; see the request below'}",
        "",
        "The data subject:",
        f"  Name: {dsr.subject_name or '-'}",
        f"  Email: {dsr.subject_email or '-'}",
    ]
    if dsr.subject_identifiers:
        lines.append(f"  Other identifiers: {dsr.subject_identifiers}")
    lines += ["", "What the subject asked:", dsr.request_text or "(see the request as received; no further detail)", ""]
    lines += [
        "How to reply: answer this email (keep the reference in the subject) with your written instruction,",
        "for example: respond to the subject with a text you provide, provide the data to you, erase, rectify,",
        "restrict, or take no action. We do not answer the subject without your instruction.",
        "Only replies from your registered DSR contact addresses can be acted upon.",
    ]
    return "\n".join(lines)


def _claim_forward(session: Session, forward: DsrForward, *, now: dt.datetime) -> bool:
    # The exactly-once point: only the transaction whose UPDATE moved the row from pending forwards it.
    result = session.execute(
        update(DsrForward)
        .where(DsrForward.id == forward.id, DsrForward.state == "pending")
        .values(state="forwarded", forwarded_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def forward(session: Session, dsr_id: int, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> int:
    """Forward the request to each controller not yet forwarded to; returns how many controllers were forwarded now."""
    dsr = session.get(Dsr, dsr_id, populate_existing=True)
    if dsr is None or not dsr.is_open:
        return 0
    done = 0
    for fwd in list(dsr.forwards):
        session.refresh(fwd)
        if fwd.state != "pending" or not _claim_forward(session, fwd, now=now):
            continue
        controller = session.get(Controller, fwd.controller_id)
        assert controller is not None
        contacts = controller.contact_emails("dsr")
        if not contacts:
            raise InvalidDsr(f"controller {controller.id} has no DSR contact")
        body = forward_text(dsr, controller)
        outbox_ids: list[int] = []
        first_msgid: str | None = None
        for address in contacts:
            row = enqueue_email(
                session,
                to=address,
                subject=f"Data subject request {dsr.reference}",
                body_text=body,
                reply_to=settings.reply_to,
                controller_id=controller.id,
                related_type="dsr",
                related_id=dsr.id,
                kind="dsr_forward",
                msgid_domain=settings.msgid_domain,
                by=by,
                now=now,
            )
            outbox_ids.append(row.id)
            msgid = row.message_id.strip("<>")
            first_msgid = first_msgid or msgid
            _thread_note(session, dsr, msgid, body, controller.id, by=by, now=now)
        session.execute(
            update(DsrForward).where(DsrForward.id == fwd.id).values(message_id=first_msgid, outbox_ids=outbox_ids).execution_options(synchronize_session=False)
        )
        session.refresh(fwd)
        done += 1
        add_event(session, dsr, "forward", by=by, now=now, controller_id=controller.id, outbox_ids=outbox_ids, late=now > dsr.due_at)
    if done:
        _mark_forwarded_if_complete(session, dsr, now=now)
    return done


def _thread_note(session: Session, dsr: Dsr, msgid: str, body: str, controller_id: int, *, by: Principal, now: dt.datetime) -> None:
    # The forward's Message-ID on the source ticket, so the controller's reply threads onto it.
    if dsr.ticket_id is None:
        return
    ticket = session.get(Ticket, dsr.ticket_id)
    if ticket is None:
        return
    tickets.add_message(
        session,
        ticket,
        tickets.MessageInput(
            direction="note",
            body_text=body,
            subject=f"Data subject request {dsr.reference}",
            message_id=msgid,
            notes=[{"code": "dsr_forward", "dsr_id": dsr.id, "controller_id": controller_id}],
        ),
        by=by,
        now=now,
    )


def _mark_forwarded_if_complete(session: Session, dsr: Dsr, *, now: dt.datetime) -> None:
    session.refresh(dsr)
    if any(f.state != "forwarded" for f in dsr.forwards) or not dsr.forwards:
        return
    last = max(f.forwarded_at or now for f in dsr.forwards)
    dsr.forwarded_at = last
    dsr.forward_seconds = int((last - dsr.received_at).total_seconds())
    if dsr.state == "awaiting_forward":
        dsr.state = "forwarded"
    dsr.updated_at = now
    session.flush()


def ring_forward(dsr_ids: Collection[int]) -> int:
    """Ask a worker to forward these requests; a broker failure is logged and left to the sweeper."""
    return _FORWARD_DOORBELL.ring(sorted(dsr_ids))


# --- sweeper ----------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one sweeper pass did (counts)."""

    rung: int = 0
    forwarded: int = 0
    escalated: int = 0
    missed: int = 0
    failed: list[int] = field(default_factory=list)


def _privacy_officers(session: Session) -> list[User]:
    return list(session.scalars(select(User).where(User.role == "privacy_officer", User.disabled_at.is_(None)).order_by(User.id)))


def escalate(session: Session, dsr: Dsr, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> bool:
    """Alert privacy officers (email + the UI banner) once, 4 h before an unforwarded request is due."""
    claimed = session.execute(
        update(Dsr)
        .where(Dsr.id == dsr.id, Dsr.escalated_at.is_(None), Dsr.forwarded_at.is_(None))
        .values(escalated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    session.refresh(dsr)
    left = deadlines.format_left(deadlines.time_left(dsr.due_at, now))
    officers = _privacy_officers(session)
    for officer in officers:
        enqueue_email(
            session,
            to=officer.email,
            subject=f"Escalation: {dsr.reference} not yet forwarded",
            body_text=(
                f"{dsr.reference} has not been forwarded to its controller and is due at {dsr.due_at:%Y-%m-%d %H:%M} UTC ({left} left).\n"
                f"State: {dsr.state}. Open /dsr/{dsr.id} to route or forward it.\n"
            ),
            related_type="dsr",
            related_id=dsr.id,
            kind="dsr_escalation",
            msgid_domain=settings.msgid_domain,
            by=by,
            now=now,
        )
    add_event(session, dsr, "escalate", by=by, now=now, officers=len(officers), state=dsr.state)
    return True


def mark_missed(session: Session, dsr: Dsr, *, by: Principal, now: dt.datetime) -> bool:
    """Record that the 24 h forward was missed (no extension exists); a reason must be recorded later."""
    claimed = session.execute(
        update(Dsr)
        .where(Dsr.id == dsr.id, Dsr.missed_at.is_(None), Dsr.forwarded_at.is_(None))
        .values(missed_at=now, missed_reason_missing=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    session.refresh(dsr)
    add_event(session, dsr, "missed", by=by, now=now, state=dsr.state)
    return True


def sweep(session: Session, *, settings: DsrSettings, by: Principal, now: dt.datetime, inline_after: dt.timedelta = FORWARD_INLINE_AFTER) -> SweepResult:
    """One pass: forward what is pending (ring, or forward here once the doorbell is overdue), escalate at 4 h, mark missed deadlines."""
    result = SweepResult()
    pending = session.execute(
        select(DsrForward.dsr_id, func.min(DsrForward.created_at)).where(DsrForward.state == "pending").group_by(DsrForward.dsr_id).limit(SWEEP_BATCH)
    ).all()
    ring: list[int] = []
    for dsr_id, created_at in pending:
        created = created_at if created_at.tzinfo else created_at.replace(tzinfo=dt.UTC)
        if now - created < inline_after:
            ring.append(dsr_id)
            continue
        # Overdue doorbell (broker down, worker crashed): forward here, in a savepoint so one failure spoils nothing else.
        try:
            with session.begin_nested():
                result.forwarded += 1 if forward(session, dsr_id, settings=settings, by=by, now=now) else 0
        except InvalidDsr:
            result.failed.append(dsr_id)
    _FORWARD_DOORBELL.ring_after_commit(session, ring)
    result.rung = len(ring)
    horizon = now + deadlines.ESCALATE_BEFORE
    for state in UNFORWARDED:
        to_escalate = session.scalars(
            select(Dsr).where(Dsr.state == state, Dsr.due_at <= horizon, Dsr.escalated_at.is_(None)).order_by(Dsr.due_at).limit(SWEEP_BATCH)
        ).all()
        for dsr in to_escalate:
            result.escalated += escalate(session, dsr, settings=settings, by=by, now=now)
        late = session.scalars(select(Dsr).where(Dsr.state == state, Dsr.due_at <= now, Dsr.missed_at.is_(None)).order_by(Dsr.due_at).limit(SWEEP_BATCH)).all()
        for dsr in late:
            result.missed += mark_missed(session, dsr, by=by, now=now)
    session.flush()
    return result


def record_missed_reason(session: Session, dsr_id: int, reason: str, *, by: Principal, now: dt.datetime) -> Dsr:
    """Why a forward was late (required for every missed deadline; kept encrypted, never in the audit log)."""
    dsr = get_dsr(session, dsr_id)
    if dsr.missed_at is None:
        raise InvalidDsr("the request has not missed its deadline")
    text = (reason or "").strip()
    if len(text) < 10 or len(text) > 4000:
        raise InvalidDsr("reason must be 10 to 4000 characters")
    dsr.missed_reason = text
    dsr.missed_reason_missing = False
    dsr.updated_at = now
    session.flush()
    add_event(session, dsr, "missed_reason", by=by, now=now)
    return dsr


def close_dsr(session: Session, dsr_id: int, outcome: str, *, by: Principal, now: dt.datetime) -> Dsr:
    """Close a request with its outcome code (the executing service notifies the controller)."""
    if not outcome or len(outcome) > 40 or not outcome.replace("_", "").isalnum():
        raise InvalidDsr("outcome must be a short code (letters, digits, underscore)")
    dsr = get_dsr(session, dsr_id)
    if not dsr.is_open:
        raise InvalidDsr("the request is already closed")
    dsr.state, dsr.is_open, dsr.closed_at, dsr.outcome, dsr.updated_at = "closed", False, now, outcome, now
    session.flush()
    add_event(session, dsr, "close", by=by, now=now, outcome=outcome)
    return dsr


# --- reading ----------------------------------------------------------------------


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
    from app.dsr.models import Instruction

    if not dsr_ids:
        return {}
    rows = session.execute(
        select(Instruction.dsr_id, func.count()).where(Instruction.dsr_id.in_(list(dsr_ids)), Instruction.state == "pending").group_by(Instruction.dsr_id)
    )
    return {dsr_id: int(n) for dsr_id, n in rows}


@dataclass
class Dashboard:
    """The privacy officers' view: unforwarded requests by time left, the rest of the open ones, triage, the chart."""

    unforwarded: list[Dsr]
    forwarded_open: list[Dsr]
    triage: list[Dsr]
    escalated: int
    missed_without_reason: int
    suggestions: list[DsrSuggestion]
    weeks: list[deadlines.Week]


# What a dashboard row shows: no ciphertext is read for a list of references.
_ROW = (
    load_only(
        Dsr.id, Dsr.reference, Dsr.types, Dsr.state, Dsr.is_open, Dsr.received_at, Dsr.due_at, Dsr.forwarded_at,
        Dsr.escalated_at, Dsr.missed_at, Dsr.missed_reason_missing,
    ),
    selectinload(Dsr.forwards).load_only(DsrForward.dsr_id, DsrForward.controller_id),
)  # fmt: skip


def dashboard(session: Session, *, now: dt.datetime, limit: int = 50) -> Dashboard:
    """Everything the dashboard shows, in a handful of indexed queries."""
    unforwarded: list[Dsr] = []
    for state in ("awaiting_forward", "triage"):
        unforwarded += session.scalars(select(Dsr).options(*_ROW).where(Dsr.state == state).order_by(Dsr.due_at, Dsr.id).limit(limit)).all()
    unforwarded.sort(key=lambda d: (d.due_at, d.id))
    triage = [d for d in unforwarded if d.state == "triage"]
    forwarded_open = list(
        session.scalars(
            select(Dsr)
            .options(*_ROW)
            .where(Dsr.is_open.is_(True), Dsr.state.in_(("forwarded", "instructed")))
            .order_by(Dsr.due_at.desc(), Dsr.id.desc())
            .limit(limit)
        )
    )
    escalated = session.scalar(select(func.count()).select_from(Dsr).where(Dsr.state.in_(UNFORWARDED), Dsr.due_at <= now + deadlines.ESCALATE_BEFORE))
    without_reason = session.scalar(select(func.count()).select_from(Dsr).where(Dsr.missed_reason_missing.is_(True)))
    suggestions = list(session.scalars(select(DsrSuggestion).where(DsrSuggestion.state == "open").order_by(DsrSuggestion.id.desc()).limit(limit)))
    return Dashboard(unforwarded[:limit], forwarded_open, triage, int(escalated or 0), int(without_reason or 0), suggestions, cached_chart(session, now=now))


CHART_STATE = "dsr.chart"
# The chart has weekly resolution: the job refreshes it every 10 minutes; older than this, the page computes it itself.
CHART_MAX_AGE = dt.timedelta(minutes=15)


def refresh_chart(session: Session, *, now: dt.datetime) -> list[deadlines.Week]:
    """Compute the 12-week chart and keep it for the dashboard (the `dsr-chart` job, every 10 minutes)."""
    weeks = chart(session, now=now)
    state = {
        "computed_at": now.isoformat(),
        "weeks": [[w.start.isoformat(), w.received, w.forwarded_in_time, w.median_seconds] for w in weeks],
    }
    save_state(session, CHART_STATE, state, now=now)
    return weeks


def cached_chart(session: Session, *, now: dt.datetime) -> list[deadlines.Week]:
    """The kept chart when it is fresh and of the current 12 weeks, else computed now (one aggregate over the window)."""
    state = get_state(session, CHART_STATE)
    if state:
        computed = dt.datetime.fromisoformat(state["computed_at"])
        weeks = [deadlines.Week(dt.datetime.fromisoformat(start), received, in_time, median) for start, received, in_time, median in state["weeks"]]
        if dt.timedelta(0) <= now - computed <= CHART_MAX_AGE and [w.start for w in weeks] == deadlines.week_starts(now):
            return weeks
    return chart(session, now=now)


def chart(session: Session, *, now: dt.datetime, weeks: int = 12) -> list[deadlines.Week]:
    """Per week of the last 12: requests received, forwarded within 24 h, median time to forward."""
    starts = deadlines.week_starts(now, weeks)
    window_end = starts[-1] + dt.timedelta(weeks=1)
    within = int(deadlines.FORWARD_WITHIN.total_seconds())
    if session.get_bind().dialect.name == "postgresql":
        return _chart_postgres(session, starts, window_end, within)
    received = [0] * weeks
    in_time = [0] * weeks
    times: list[list[int]] = [[] for _ in range(weeks)]
    rows = session.execute(select(Dsr.received_at, Dsr.forward_seconds).where(and_(Dsr.received_at >= starts[0], Dsr.received_at < window_end)))
    for received_at, seconds in rows:
        at = received_at if received_at.tzinfo else received_at.replace(tzinfo=dt.UTC)
        i = min(int((at - starts[0]) / dt.timedelta(weeks=1)), weeks - 1)
        received[i] += 1
        if seconds is not None:
            times[i].append(int(seconds))
            in_time[i] += seconds <= within
    return [deadlines.Week(starts[i], received[i], in_time[i], deadlines.median(times[i])) for i in range(weeks)]


def _chart_postgres(session: Session, starts: list[dt.datetime], window_end: dt.datetime, within: int) -> list[deadlines.Week]:
    # Aggregated in the database: one index-only scan over the window, 12 rows back.
    rows = session.execute(
        text(
            "SELECT date_bin('7 days', received_at, :start) AS week, count(*) AS received,"
            " count(*) FILTER (WHERE forward_seconds <= :within) AS in_time,"
            " percentile_disc(0.5) WITHIN GROUP (ORDER BY forward_seconds) AS median"
            " FROM dsrs WHERE received_at >= :start AND received_at < :end GROUP BY 1"
        ),
        {"start": starts[0], "end": window_end, "within": within},
    ).all()
    by_week = {int((r.week - starts[0]) / dt.timedelta(weeks=1)): r for r in rows}
    out = []
    for i, start in enumerate(starts):
        r = by_week.get(i)
        out.append(deadlines.Week(start, int(r.received) if r else 0, int(r.in_time) if r else 0, int(r.median) if r and r.median is not None else None))
    return out


def now_utc() -> dt.datetime:
    """The edges' clock (tests move it with time-machine)."""
    return utcnow()
