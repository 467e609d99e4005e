"""The request and the confirmed instruction every execution action acts under (app.dsr.gate decides)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.dsr.errors import DsrNotFound
from app.dsr.gate import NoConfirmedInstruction, require_instruction
from app.dsr.models import Dsr
from app.dsr.requests import get_dsr
from app.subject_data.errors import NotAuthorised, RunNotFound
from app.subject_data.models import DECISION_FOR


def instruction_for(session: Session, dsr_id: int, action: str, controller_id: int) -> int:
    """The id of the confirmed instruction allowing `action` on this request for this controller, or NotAuthorised."""
    decision = DECISION_FOR[action]
    try:
        return require_instruction(session, dsr_id, decision, controller_id=controller_id).instruction_id
    except NoConfirmedInstruction:
        raise NotAuthorised(f"no confirmed instruction of this controller to {decision.replace('_', ' ')}") from None


def request(session: Session, dsr_id: int) -> Dsr:
    """The request, or RunNotFound (the execution pages' 404)."""
    try:
        return get_dsr(session, dsr_id)
    except DsrNotFound:
        raise RunNotFound(f"no DSR {dsr_id}") from None
