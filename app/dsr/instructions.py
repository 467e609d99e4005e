"""Controller instructions (WECO §5): replies to a forward, confirmed or flagged by a privacy officer; standing instructions.

A reply from an address registered for the controller becomes a pending
instruction; from any other address it is kept as unverified evidence and
can never be confirmed. Confirming records what the instruction says; only a
confirmed `respond` instruction lets a message to the subject through the
gate (app.dsr.gate), and only with the instructed text.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from email.parser import BytesHeaderParser

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session

from app import typed_text
from app.audit.service import record
from app.compiled_once import session_row
from app.controllers.models import Controller, ControllerContact
from app.db import table_of_model
from app.dsr.contacts import email_dsr_contacts
from app.dsr.errors import DsrError
from app.dsr.gate import ACKNOWLEDGEMENT, ACKNOWLEDGEMENT_TEXT
from app.dsr.history import add_event
from app.dsr.models import DECISIONS, Dsr, Instruction, StandingInstruction
from app.dsr.requests import get_dsr
from app.dsr.settings import DsrSettings
from app.exceptions import NotFound, Refused
from app.principal import Principal

MAX_TEXT = 20_000
NEUTRAL_TEMPLATE = ACKNOWLEDGEMENT_TEXT
_VERDICT = re.compile(r"\b(dkim|spf|dmarc|arc)\s*=\s*([a-z]+)", re.IGNORECASE)


class InstructionNotFound(DsrError, NotFound):
    """No instruction with that id on that request."""


class InstructionNotConfirmable(DsrError, Refused, ValueError):
    """The instruction cannot be confirmed or flagged (unverified sender, already decided); the message is safe to show."""


def auth_verdict(raw: bytes) -> str | None:
    """The receiving MTA's verdicts from the topmost Authentication-Results header ("dkim=pass spf=pass"), or None."""
    try:
        headers = BytesHeaderParser().parsebytes(raw[:200_000])
        values = headers.get_all("Authentication-Results") or []
    except Exception:  # hostile headers: no verdict rather than no instruction
        return None
    if not values:
        return None
    # The MTA that received the mail prepends its header; lower ones may be forged by the sender.
    found = [f"{m.group(1).lower()}={m.group(2).lower()}" for m in _VERDICT.finditer(str(values[0]))]
    return " ".join(dict.fromkeys(found))[:200] or "none"


def is_registered_contact(session: Session, controller_id: int, email: str) -> bool:
    """True when `email` is one of the controller's registered contact addresses (blind index)."""
    if not email:
        return False
    digest = ControllerContact.email.index_value(session, email, controller_id=controller_id)
    if digest is None:
        return False  # the controller has no keys: nothing is indexed under it, no contact can match
    # After the flush the ORM's execute would make: a contact added in this transaction counts.
    return session_row(session, _contact_statement(), {"digest": digest, "controller_id": controller_id}) is not None


@functools.cache
def _contact_statement() -> Select[tuple[int]]:
    # ControllerContact.email.matches as a statement built once (building it each time cost more CPU than running it).
    contacts = table_of_model(ControllerContact)
    of_controller = contacts.c.controller_id == bindparam("controller_id", type_=contacts.c.controller_id.type)
    return select(contacts.c.id).where(contacts.c.email_bidx == bindparam("digest", type_=contacts.c.email_bidx.type), of_controller).limit(1)


def receive(
    session: Session,
    dsr: Dsr,
    *,
    controller_id: int,
    sender_email: str,
    reply_text: str,
    raw: bytes,
    raw_sha256: str,
    message_pk: int | None,
    by: Principal,
    now: dt.datetime,
) -> Instruction:
    """Keep a reply to a forward: pending when the sender is registered for that controller, else unverified."""
    verified = is_registered_contact(session, controller_id, sender_email)
    instruction = Instruction(
        dsr_id=dsr.id,
        controller_id=controller_id,
        key_owner=controller_id,
        message_pk=message_pk,
        state="pending" if verified else "unverified",
        verified=verified,
        raw_sha256=raw_sha256,
        auth_verdict=auth_verdict(raw),
        reply_text=(reply_text or "")[:MAX_TEXT],
        sender_email=sender_email or None,
        received_at=now,
    )
    session.add(instruction)
    session.flush()
    add_event(session, dsr, "instruction_received", by=by, now=now, instruction_id=instruction.id, controller_id=controller_id, verified=verified)
    return instruction


def _instruction(session: Session, dsr_id: int, instruction_id: int) -> Instruction:
    instruction = session.get(Instruction, instruction_id)
    if instruction is None or instruction.dsr_id != dsr_id:
        raise InstructionNotFound(f"no instruction {instruction_id} on DSR {dsr_id}")
    return instruction


def _decide(session: Session, instruction: Instruction, state: str, *, by: Principal, now: dt.datetime) -> None:
    if not instruction.verified or instruction.state == "unverified":
        raise InstructionNotConfirmable("this reply did not come from a registered address of the controller and cannot be confirmed")
    # Conditional, so two officers deciding at once cannot both win.
    claimed = session.execute(
        update(Instruction)
        .where(Instruction.id == instruction.id, Instruction.state == "pending")
        .values(state=state, decided_by=by.id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise InstructionNotConfirmable("this instruction has already been decided")
    session.refresh(instruction)


MIN_RESPONSE_CHARS = 20
MIN_RESPONSE_WORDS = 4


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _check_instructed_text(text: str, reply: str) -> None:
    """A "respond" text must be a real message and the controller's own words, found in their reply (issue 12 item 3)."""
    if len(text) < MIN_RESPONSE_CHARS or len(text.split()) < MIN_RESPONSE_WORDS:
        raise InstructionNotConfirmable(
            f"a respond instruction needs the text the controller gave: at least {MIN_RESPONSE_CHARS} characters and {MIN_RESPONSE_WORDS} words"
        )
    if _folded(text) not in _folded(reply):
        raise InstructionNotConfirmable("the text to send must be the controller's own words, copied from their reply shown beside the form")


def confirm(
    session: Session, dsr_id: int, instruction_id: int, decision: str, *, response_text: str | None = None, by: Principal, now: dt.datetime
) -> Instruction:
    """A privacy officer records what the controller instructed (respond with given text, provide data, erase, rectify, restrict, no action)."""
    if decision not in DECISIONS:
        raise InstructionNotConfirmable(f"decision must be one of {', '.join(DECISIONS)}")
    text = (response_text or "").strip()
    if len(text) > MAX_TEXT:
        raise InstructionNotConfirmable("the response text is too long")
    dsr = get_dsr(session, dsr_id)
    instruction = _instruction(session, dsr_id, instruction_id)
    if decision == "respond":
        _check_instructed_text(text, instruction.reply_text or "")
    _decide(session, instruction, "confirmed", by=by, now=now)
    instruction.decision = decision
    if decision == "respond":
        instruction.response_text = text
    if dsr.state == "forwarded":
        dsr.state = "instructed"
    dsr.updated_at = now
    session.flush()
    add_event(session, dsr, "instruction_confirmed", by=by, now=now, instruction_id=instruction.id, decision=decision)
    return instruction


def flag(session: Session, dsr_id: int, instruction_id: int, reason: str, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> Instruction:
    """Flag an instruction as possibly unlawful and tell the controller so (WECO §5.3); it authorises nothing."""
    text = (reason or "").strip()
    if not 10 <= len(text) <= 4000:
        raise InstructionNotConfirmable("explain the concern in 10 to 4000 characters")
    if (found := typed_text.problem(text)) is not None:
        raise InstructionNotConfirmable(f"explain the concern in words: the text {found}")
    dsr = get_dsr(session, dsr_id)
    instruction = _instruction(session, dsr_id, instruction_id)
    _decide(session, instruction, "flagged", by=by, now=now)
    instruction.flag_reason = text
    controller = session.get(Controller, instruction.controller_id)
    assert controller is not None
    sent = len(
        email_dsr_contacts(
            session,
            dsr,
            controller,
            subject=f"Your instruction on {dsr.reference} may infringe data protection law",
            body=(
                f"Dear {controller.name},\n\nIn our opinion your instruction on data subject request {dsr.reference} may infringe "
                "the GDPR or other data protection provisions, so we inform you as our agreement requires (WECO §5.3) and will not "
                f"act on it until you confirm or amend it.\n\nOur concern:\n{text}\n\nPlease reply to this email.\n"
            ),
            kind="dsr_instruction_flag",
            settings=settings,
            by=by,
            now=now,
        )
    )
    session.flush()
    add_event(session, dsr, "instruction_flagged", by=by, now=now, instruction_id=instruction.id, emails=sent)
    return instruction


def record_standing(
    session: Session, controller_id: int, template: str | None = None, *, source_instruction_id: int, by: Principal, now: dt.datetime
) -> StandingInstruction:
    """A controller's standing instruction allowing the neutral acknowledgement (receipt and reference) to its subjects.

    It must come from the controller: `source_instruction_id` names a verified reply of that
    controller (the instruction quoted and linked on the request page), not flagged. The text is
    the desk's neutral one (`gate.ACKNOWLEDGEMENT_TEXT`); any other `template` is refused (issue 12 item 2).
    """
    text = NEUTRAL_TEMPLATE
    if template is not None and _folded(template) != _folded(text):
        raise InstructionNotConfirmable("a standing acknowledgement may only confirm receipt and give the reference: the neutral text")
    if session.get(Controller, controller_id) is None:
        raise InstructionNotFound(f"no controller {controller_id}")
    source = session.get(Instruction, source_instruction_id)
    if source is None or source.controller_id != controller_id:
        raise InstructionNotFound(f"no instruction {source_instruction_id} of controller {controller_id}")
    if not source.verified or source.state not in ("pending", "confirmed"):
        raise InstructionNotConfirmable("a standing instruction needs a verified reply of the controller that was not flagged")
    session.execute(
        update(StandingInstruction)
        .where(StandingInstruction.controller_id == controller_id, StandingInstruction.kind == ACKNOWLEDGEMENT, StandingInstruction.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    item = StandingInstruction(
        controller_id=controller_id,
        kind=ACKNOWLEDGEMENT,
        template=text,
        source_instruction_id=source.id,
        recorded_by=by.id,
        recorded_at=now,
    )
    session.add(item)
    session.flush()
    record(
        session,
        by=by,
        action="dsr.standing_instruction",
        target_type="controller",
        target_id=controller_id,
        controller_id=controller_id,
        details={"standing_id": item.id, "kind": ACKNOWLEDGEMENT, "source_instruction_id": source.id},
        now=now,
    )
    return item


def revoke_standing(session: Session, controller_id: int, *, by: Principal, now: dt.datetime) -> int:
    """End the controller's standing acknowledgement instruction; returns how many were active."""
    result = session.execute(
        update(StandingInstruction)
        .where(StandingInstruction.controller_id == controller_id, StandingInstruction.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    record(
        session,
        by=by,
        action="dsr.standing_revoked",
        target_type="controller",
        target_id=controller_id,
        controller_id=controller_id,
        details={"revoked": count},
        now=now,
    )
    return count


def active_standing(session: Session, controller_id: int) -> StandingInstruction | None:
    """The controller's active standing acknowledgement instruction, if any."""
    return session.scalar(
        select(StandingInstruction)
        .where(StandingInstruction.controller_id == controller_id, StandingInstruction.kind == ACKNOWLEDGEMENT, StandingInstruction.revoked_at.is_(None))
        .order_by(StandingInstruction.id.desc())
        .limit(1)
    )
