"""The forward of a request to each controller it concerns: exactly once per (request, controller).

A unique forward row is created `pending` when the controller becomes known
(app.dsr.requests), and the forward claims it with a conditional UPDATE
(pending -> queued) in the same transaction as the outbox rows, so a
duplicate doorbell, a second worker or a crash mid-forward can never produce
a second forward. It is *forwarded* only when the controller's relay accepts
it for a DSR contact (app.dsr.delivery, told by the outbox's delivery hooks);
until then the request's clock runs. The broker is only a doorbell: the sweeper (app.dsr.sweeper)
finds every pending forward and, once a doorbell is overdue, forwards it
itself. The caller commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.crypto import message_ids
from app.dsr.contacts import email_dsr_contacts
from app.dsr.errors import InvalidDsr
from app.dsr.history import add_event
from app.dsr.models import Dsr, DsrForward
from app.dsr.settings import DsrSettings
from app.jobs.doorbell import Doorbell
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Ticket

log = logging.getLogger(__name__)

FORWARD_ACTOR = "forward_dsr"
FORWARD_DOORBELL = Doorbell(
    FORWARD_ACTOR,
    key="dsr_forward_doorbells",
    log=log,
    broker_down="dsr: broker unavailable (%s); the sweeper will forward DSR %s",
    no_actor="dsr: no %s actor declared; the sweeper will forward %d request(s)",
)


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
        update(DsrForward).where(DsrForward.id == forward.id, DsrForward.state == "pending").values(state="queued").execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def forward(session: Session, dsr_id: int, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> int:
    """Queue the forward to each controller not yet forwarded to (one outbox row per DSR contact); returns how many were queued now."""
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
        rows = email_dsr_contacts(
            session, dsr, controller, subject=f"Data subject request {dsr.reference}", body=body, kind="dsr_forward", settings=settings, by=by, now=now
        )
        for row in rows:
            outbox_ids.append(row.id)
            msgid = message_ids.bare(row.message_id or "")
            first_msgid = first_msgid or msgid
            _thread_note(session, dsr, msgid, body, controller.id, by=by, now=now)
        first_bidx = message_ids.digest(session, first_msgid) if first_msgid else None
        session.execute(
            update(DsrForward)
            .where(DsrForward.id == fwd.id)
            .values(message_id_bidx=first_bidx, outbox_ids=outbox_ids)
            .execution_options(synchronize_session=False)
        )
        session.refresh(fwd)
        done += 1
        add_event(session, dsr, "forward", by=by, now=now, controller_id=controller.id, outbox_ids=outbox_ids, late=now > dsr.due_at)
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


def ring_forward(dsr_ids: Collection[int]) -> int:
    """Ask a worker to forward these requests; a broker failure is logged and left to the sweeper."""
    return FORWARD_DOORBELL.ring(sorted(dsr_ids))
