"""What inbound mail does to DSRs: the DSR domain's intake handlers (`app.mail.intake`, registered by `app.dsr.setup`).

`app.mail.inbound.ingest_message` offers each stored message to them, in this order:

- `claim_instruction`: a reply (In-Reply-To / References) to a forward becomes an
  instruction of the forward's controller: pending if the sender is one of
  its registered addresses, unverified otherwise.
- `claim_request`: a new message addressed to PRIVACY_ADDRESS opens a DSR, its
  clock running from the moment the message reached the desk; in single-address
  mode (SUPPORT_ADDRESS unset) only when the classifier recognises a request.
- `suggest_request` (a fallback, asked after every other domain's handlers): any
  other new ticket is run through the keyword classifier; a hit is kept as a
  suggestion for staff to confirm.

Auto-replies (out-of-office, bounces) are neither requests nor instructions: every handler passes them.
`ticket_of_dsr` tells mail threading which ticket a request's outbox rows (forwards, notices) belong to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence

from sqlalchemy import JSON, Integer, exists, null, select, type_coerce, union_all
from sqlalchemy.orm import Session

from app.crypto.message_ids import digests as message_id_digests
from app.dsr import classifier
from app.dsr import instructions as dsr_instructions
from app.dsr.models import Dsr, DsrForward
from app.dsr.requests import DsrInput, acknowledge, create_dsr, suggest
from app.dsr.settings import DsrSettings
from app.mail.intake import Inbound
from app.mail.policies import OutboundRefused
from app.principal import Principal
from app.tickets import lookup as tickets_lookup
from app.tickets.lookup import REFERENCE as TICKET_REFERENCE
from app.tickets.models import Message

REQUEST_TEXT_CHARS = 4000
# A request's reference as the desk writes it in subjects (app.dsr.requests.format_reference).
DSR_REFERENCE = re.compile(r"\bDSR-(\d{4})-(\d{6,9})\b")


def addressed_to(recipients: Sequence[str], privacy_address: str) -> bool:
    """True when the privacy address itself (not a per-ticket +token reply address) is a recipient."""
    target = privacy_address.strip().lower()
    return any(r.strip().lower() == target for r in recipients)


def single_address(inbound: Inbound) -> bool:
    """Whether the desk runs on one address (support and privacy mail alike), as when SUPPORT_ADDRESS is unset."""
    return inbound.support_address.strip().lower() == inbound.privacy_address.strip().lower()


def forward_of(session: Session, message_ids: Sequence[str]) -> tuple[int, int] | None:
    """The (dsr_id, controller_id) of the forward these Message-IDs answer, or None."""
    hashes = message_id_digests(session, [m for m in message_ids if m][-100:])
    if not hashes:
        return None
    # One round trip: the notes with those ids (a forward's note on its ticket names the request and controller;
    # the latest one wins) and, for when none does, one forward row whose own Message-ID is among them.
    forward = select(DsrForward.dsr_id, DsrForward.controller_id).where(DsrForward.message_id_bidx.in_(hashes)).limit(1).subquery()
    nothing = type_coerce(null(), Integer)
    stmt = union_all(
        select(Message.id, Message.notes, nothing, nothing).where(Message.message_id_bidx.in_(hashes), Message.direction == "note"),
        select(nothing, type_coerce(null(), JSON), forward.c.dsr_id, forward.c.controller_id),
    )
    rows = session.execute(stmt).all()
    for row in sorted((r for r in rows if r[0] is not None), key=lambda r: r[0], reverse=True):
        for item in row[1] or []:
            if item.get("code") == "dsr_forward":
                return int(item["dsr_id"]), int(item["controller_id"])
    found = next((r for r in rows if r[0] is None), None)
    return (found[2], found[3]) if found is not None else None


# The instruction handler's precheck (app.mail.intake): true once any forward was sent (its Message-ID kept on its row).
# A reply can name a forward only after the forward's transaction committed (the relay sends it afterwards), and that
# transaction set the row's message_id_bidx beside the forward's notes and outbox rows, so while none is set no message
# answers a forward: the ingest reads this beside its duplicate lookup and skips `claim_instruction` (no statement).
ANY_FORWARD_SENT = exists(select(DsrForward.id).where(DsrForward.message_id_bidx.is_not(None)))


def ticket_of_reference(session: Session, subject: str) -> int | None:
    """The ticket of the request whose reference (DSR-2026-000123) the subject names, or None (mail threading)."""
    match = DSR_REFERENCE.search(subject)
    if match is None:
        return None
    return session.scalar(select(Dsr.ticket_id).where(Dsr.id == int(match.group(2)), Dsr.reference == match.group(0)))


def ticket_of_dsr(session: Session, dsr_id: int) -> int | None:
    """The ticket a request came from (outbox rows with related_type "dsr" thread onto it), or None."""
    return session.scalar(select(Dsr.ticket_id).where(Dsr.id == dsr_id))


def _forward_answered(session: Session, inbound: Inbound) -> tuple[int, int] | None:
    # The outbox row the message answers says it directly; the forward's note on the ticket (and
    # DsrForward.message_id_bidx) still finds a forward named further up the References.
    sent = inbound.replied_to
    if sent is not None and sent.kind == "dsr_forward" and sent.related_type == "dsr" and sent.related_id is not None and sent.controller_id is not None:
        return sent.related_id, sent.controller_id
    return forward_of(session, [*inbound.mail.in_reply_to, *inbound.mail.references])


def claim_instruction(session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> str | None:
    """A reply to a forward becomes an instruction of the forward's controller ("instruction"); anything else passes."""
    mail = inbound.mail
    if mail.is_auto_reply:
        return None
    thread = _forward_answered(session, inbound)
    dsr = session.get(Dsr, thread[0]) if thread is not None else None
    if thread is None or dsr is None:
        return None
    dsr_instructions.receive(
        session,
        dsr,
        controller_id=thread[1],
        sender_email=mail.from_email,
        reply_text=mail.reply_text or mail.body_text,
        raw=inbound.raw,
        raw_sha256=inbound.message.raw_sha256 or hashlib.sha256(inbound.raw).hexdigest(),
        message_pk=inbound.message.id,
        by=by,
        now=now,
    )
    return "instruction"


def claim_request(session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> str | None:
    """New mail to the privacy address, not from a registered contact of the ticket's controller, opens a DSR ("dsr")."""
    mail, ticket = inbound.mail, inbound.ticket
    if mail.is_auto_reply or not inbound.new_ticket or not addressed_to(mail.recipients, inbound.privacy_address):
        return None
    if DSR_REFERENCE.search(mail.subject):
        return None  # about a request we already have (ours quoted back, a robot's answer to our mail): never a second one
    if TICKET_REFERENCE.search(mail.subject) and tickets_lookup.find_by_reference(session, mail.subject) is not None:
        return None  # our ticket's reference quoted by a stranger (another helpdesk's answer to our mail): a loop, not a request
    if ticket.controller_id is not None and dsr_instructions.is_registered_contact(session, ticket.controller_id, mail.from_email):
        return None  # a controller writing to the privacy address is not a data subject
    hint = classifier.classify(f"{mail.subject}\n{mail.body_text}")
    if single_address(inbound) and not hint.looks_like_dsr:
        # One address for everything (SUPPORT_ADDRESS unset): a parcel question is not a request. Only what the
        # classifier recognises opens one here; the rest is a ticket with the classifier's suggestion (the fallback
        # handler), and a request staff make from it later keeps the clock of the first message's arrival.
        return None
    dsr = create_dsr(
        session,
        DsrInput(
            types=hint.types,
            subject_email=mail.from_email or None,
            subject_name=mail.from_name or None,
            request_text=(mail.reply_text or mail.body_text or "")[:REQUEST_TEXT_CHARS],
        ),
        source="privacy_address",
        received_at=inbound.message.created_at,
        ticket=ticket,
        message_pk=inbound.message.id,
        by=by,
        now=now,
    )
    domain = inbound.privacy_address.rpartition("@")[2]
    try:
        acknowledge(session, dsr, settings=DsrSettings(inbound.privacy_address, domain), by=by, now=now)
    except OutboundRefused:
        # The controllers' templates disagree (InstructionRequired), or the subject's address already had its
        # automatic replies for the window (the loop breaker): no acknowledgement; the refusal is audit-logged.
        pass
    return "dsr"


def suggest_request(session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> str | None:
    """Another new ticket that reads like a request is kept as a suggestion for staff ("suggestion")."""
    mail = inbound.mail
    if mail.is_auto_reply or not inbound.new_ticket:
        return None
    hint = classifier.classify(f"{mail.subject}\n{mail.body_text}")
    if not hint.looks_like_dsr:
        return None
    suggest(session, inbound.ticket, hint.types, hint.languages, hint.score, now=now)
    return "suggestion"
