"""The instruction gate (WECO §12.2, Pexgle §11.5): nothing reaches a data subject without the controller's instruction.

`instruction_policy` is an outbound policy of the outbox (`app.mail.policies`),
registered by `app.dsr.setup.register` at app creation, so the rule holds
server-side whatever a page or a script sends, and is asked again each time a
worker claims a row for sending (a reply queued before the requester opened a
request is refused then). An email is held to the rule when its recipient is
the subject of an open DSR (blind-index lookup) or when it is related to a
ticket with an open DSR and goes to anyone but staff or that DSR's
controllers. Such an email passes only if, for each of those DSRs:

- a privacy officer confirmed an instruction of the controller to respond and
  the email's body is exactly `response_body(instructed text)`: the fixed
  greeting, the controller's own words, the fixed signature (issue 12 item 3;
  a body merely containing the text, or a short text inside a longer body, does
  not pass), or
- it is the neutral acknowledgement (kind `acknowledgement`), exactly
  `acknowledgement_body(reference)`: receipt and the reference, nothing else,
  and every controller the DSR concerns has an active standing instruction
  recorded from one of its verified replies (issue 12 item 2).

A refusal names the DSRs (ids only): at enqueue time the outbox raises
InstructionRequired and writes `dsr.reply_refused` after the caller's
transaction ends; at claim time the row ends `refused` and the same events
are written with the state change.

`require_instruction` is the check execution services call (find, export,
erase, rectify, restrict) before acting under a confirmed instruction.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.controllers.models import ControllerContact
from app.dsr.models import Dsr, DsrForward, Instruction, StandingInstruction
from app.exceptions import DeskError, Refused
from app.mail.policies import OutboundMessage, OutboundRefused, Refusal

log = logging.getLogger(__name__)

ACKNOWLEDGEMENT = "acknowledgement"
GREETING = "Hello,"
SIGNATURE = "Kind regards,\nThe privacy team"
# The neutral acknowledgement a standing instruction allows: receipt and the reference, nothing else.
ACKNOWLEDGEMENT_TEXT = "We have received your request. Its reference is {reference}."


def acknowledgement_body(reference: str) -> str:
    """The one acknowledgement text the desk sends under a standing instruction."""
    return f"{GREETING}\n\n{ACKNOWLEDGEMENT_TEXT.format(reference=reference)}\n\n{SIGNATURE}\n"


def response_body(instructed_text: str) -> str:
    """What a confirmed "respond" instruction lets the desk send: the controller's words between a fixed greeting and signature."""
    return f"{GREETING}\n\n{instructed_text.strip()}\n\n{SIGNATURE}\n"


POLICY_NAME = "dsr.instruction_gate"


class GateError(DeskError):
    """Base of the instruction gate's errors."""


class InstructionRequired(GateError, OutboundRefused):
    """The email would reach a data subject without a confirmed controller instruction; nothing was queued."""

    def __init__(self, dsr_ids: list[int]) -> None:
        super().__init__("no confirmed controller instruction authorises this message to the data subject (DSR " + ", ".join(map(str, dsr_ids)) + ")")
        self.dsr_ids = dsr_ids


class NoConfirmedInstruction(GateError, Refused):
    """No confirmed instruction of the controller authorises this action on the request."""


def _normalised(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def _open_dsrs(session: Session, to: str, related_type: str | None, related_id: int | None) -> tuple[list[Dsr], bool]:
    """Open DSRs the email touches, and whether the recipient is the subject of one of them."""
    as_subject = list(session.scalars(select(Dsr).where(Dsr.subject_email.matches(session, to), Dsr.is_open.is_(True))))
    found = {d.id: d for d in as_subject}
    if related_type == "ticket" and related_id is not None:
        for dsr in session.scalars(select(Dsr).where(Dsr.ticket_id == related_id, Dsr.is_open.is_(True))):
            found.setdefault(dsr.id, dsr)
    return sorted(found.values(), key=lambda d: d.id), bool(as_subject)


def _is_staff_or_controller(session: Session, to: str, controller_ids: set[int]) -> bool:
    if session.scalar(select(User.id).where(User.email == to.strip().lower(), User.disabled_at.is_(None))) is not None:
        return True
    if not controller_ids:
        return False
    conditions = [ControllerContact.email.matches(session, to, controller_id=cid) for cid in sorted(controller_ids)]
    return session.scalar(select(ControllerContact.id).where(or_(*conditions)).limit(1)) is not None


def _authorised(session: Session, dsr: Dsr, *, kind: str, body: str) -> bool:
    if kind == ACKNOWLEDGEMENT:
        controllers = set(dsr.controller_ids)
        if not controllers or body != _normalised(acknowledgement_body(dsr.reference or "")):
            return False  # triage (no controller has said anything yet), or not the neutral text
        for cid in controllers:
            standing = session.scalar(
                select(StandingInstruction.id).where(
                    StandingInstruction.controller_id == cid,
                    StandingInstruction.kind == ACKNOWLEDGEMENT,
                    StandingInstruction.revoked_at.is_(None),
                    StandingInstruction.source_instruction_id.is_not(None),
                )
            )
            if standing is None:
                return False
        return True
    confirmed = session.scalars(
        select(Instruction).where(
            Instruction.dsr_id == dsr.id, Instruction.state == "confirmed", Instruction.decision == "respond", Instruction.verified.is_(True)
        )
    )
    return any(i.response_text and _normalised(response_body(i.response_text)) == body for i in confirmed)


def instruction_policy(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
    """The outbound policy: refuse an email to a DSR's subject or ticket participant that no instruction authorises.

    The refusal carries InstructionRequired (raised at enqueue time) and one
    `dsr.reply_refused` audit event per blocked DSR (ids and codes only).
    """
    dsrs, to_subject = _open_dsrs(session, message.to, message.related_type, message.related_id)
    if not dsrs:
        return None
    controllers = {cid for d in dsrs for cid in d.controller_ids}
    if not to_subject and _is_staff_or_controller(session, message.to, controllers):
        return None
    body = _normalised(message.body_text)
    blocked = [d.id for d in dsrs if not _authorised(session, d, kind=message.kind, body=body)]
    if not blocked:
        return None
    log.warning("instruction gate refused an email of kind %s for DSR %s", message.kind, blocked)
    return Refusal(
        reason="instruction_required",
        error=InstructionRequired(blocked),
        targets=tuple(("dsr", dsr_id) for dsr_id in blocked),
        audit_action="dsr.reply_refused",
        details={"kind": message.kind, "related_type": message.related_type, "related_id": message.related_id, "to_subject": to_subject},
    )


@dataclass(frozen=True)
class Authority:
    """The confirmed instruction an action is taken under."""

    instruction_id: int
    controller_id: int
    decision: str


def require_instruction(session: Session, dsr_id: int, decision: str, *, controller_id: int | None = None) -> Authority:
    """The confirmed, verified instruction of `decision` on this DSR (of that controller), or NoConfirmedInstruction."""
    stmt = select(Instruction).where(
        Instruction.dsr_id == dsr_id, Instruction.state == "confirmed", Instruction.verified.is_(True), Instruction.decision == decision
    )
    if controller_id is not None:
        stmt = stmt.where(Instruction.controller_id == controller_id)
    instruction = session.scalars(stmt.order_by(Instruction.decided_at.desc(), Instruction.id.desc()).limit(1)).first()
    if instruction is None or instruction.controller_id is None:
        raise NoConfirmedInstruction(f"DSR {dsr_id} has no confirmed instruction to {decision}")
    # An instruction from a controller the request was never forwarded to authorises nothing.
    forwarded = session.scalar(select(DsrForward.id).where(DsrForward.dsr_id == dsr_id, DsrForward.controller_id == instruction.controller_id))
    if forwarded is None:
        raise NoConfirmedInstruction(f"DSR {dsr_id}: the instructing controller is not one the request concerns")
    return Authority(instruction.id, instruction.controller_id, decision)
