"""Closing a request with its outcome (the executing service notifies the controller); the caller commits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.dsr.errors import InvalidDsr
from app.dsr.history import add_event
from app.dsr.models import Dsr
from app.dsr.requests import get_dsr
from app.principal import Principal


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
