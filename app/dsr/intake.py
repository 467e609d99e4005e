"""What inbound mail does to DSRs (called by `app.mail.inbound.ingest_message` after a message is stored).

- A reply threaded (In-Reply-To / References) to a forward becomes an
  instruction of the forward's controller: pending if the sender is one of
  its registered addresses, unverified otherwise.
- A new message addressed to PRIVACY_ADDRESS opens a DSR, its clock running
  from the moment the message reached the desk.
- Any other new ticket is run through the keyword classifier; a hit is kept
  as a suggestion for staff to confirm.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dsr import classifier
from app.dsr import instructions as dsr_instructions
from app.dsr.gate import InstructionRequired
from app.dsr.models import Dsr, DsrForward
from app.dsr.service import DsrInput, DsrSettings, acknowledge, create_dsr, suggest
from app.principal import Principal
from app.tickets.models import Message, Ticket

REQUEST_TEXT_CHARS = 4000


def addressed_to(recipients: Sequence[str], privacy_address: str) -> bool:
    """True when the privacy address itself (not a per-ticket +token reply address) is a recipient."""
    target = privacy_address.strip().lower()
    return any(r.strip().lower() == target for r in recipients)


def forward_of(session: Session, message_ids: Sequence[str]) -> tuple[int, int] | None:
    """The (dsr_id, controller_id) of the forward these Message-IDs answer, or None."""
    ids = [m.strip("<>") for m in message_ids if m][-100:]
    if not ids:
        return None
    notes = session.scalars(select(Message).where(Message.message_id.in_(ids), Message.direction == "note").order_by(Message.id.desc()))
    for note in notes:
        for item in note.notes or []:
            if item.get("code") == "dsr_forward":
                return int(item["dsr_id"]), int(item["controller_id"])
    row = session.execute(select(DsrForward.dsr_id, DsrForward.controller_id).where(DsrForward.message_id.in_(ids)).limit(1)).first()
    return (row.dsr_id, row.controller_id) if row is not None else None


def after_inbound(
    session: Session,
    *,
    ticket: Ticket,
    message: Message,
    mail: Any,
    raw: bytes,
    new_ticket: bool,
    privacy_address: str,
    by: Principal,
    now: dt.datetime,
) -> str | None:
    """Turn a stored inbound message into an instruction, a DSR or a suggestion; returns what it did (a code) or None."""
    if mail.is_auto_reply:
        return None  # out-of-office and bounces are neither requests nor instructions
    thread = forward_of(session, [*mail.in_reply_to, *mail.references])
    if thread is not None:
        dsr = session.get(Dsr, thread[0])
        if dsr is not None:
            dsr_instructions.receive(
                session,
                dsr,
                controller_id=thread[1],
                sender_email=mail.from_email,
                reply_text=mail.reply_text or mail.body_text,
                raw=raw,
                raw_sha256=message.raw_sha256 or hashlib.sha256(raw).hexdigest(),
                message_pk=message.id,
                by=by,
                now=now,
            )
            return "instruction"
    if not new_ticket:
        return None
    text = f"{mail.subject}\n{mail.body_text}"
    hint = classifier.classify(text)
    from_controller = ticket.controller_id is not None and dsr_instructions.is_registered_contact(session, ticket.controller_id, mail.from_email)
    if addressed_to(mail.recipients, privacy_address) and not from_controller:
        dsr = create_dsr(
            session,
            DsrInput(
                types=hint.types,
                subject_email=mail.from_email or None,
                subject_name=mail.from_name or None,
                request_text=(mail.reply_text or mail.body_text or "")[:REQUEST_TEXT_CHARS],
            ),
            source="privacy_address",
            received_at=message.created_at,
            ticket=ticket,
            message_pk=message.id,
            by=by,
            now=now,
        )
        domain = privacy_address.rpartition("@")[2]
        try:
            acknowledge(session, dsr, settings=DsrSettings(privacy_address, domain), by=by, now=now)
        except InstructionRequired:
            pass  # templates of several controllers disagree: no acknowledgement (the refusal is audit-logged)
        return "dsr"
    if hint.looks_like_dsr:
        suggest(session, ticket, hint.types, hint.languages, hint.score, now=now)
        return "suggestion"
    return None
