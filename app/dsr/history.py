"""A request's history: one line per step (dsr_events) and its audit event, written in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from app.audit.service import record
from app.dsr.models import Dsr, DsrEvent
from app.principal import Principal


def add_event(session: Session, dsr: Dsr, code: str, *, by: Principal, now: dt.datetime, **details: Any) -> None:
    """A history line and its audit event (details: ids, counts, codes only)."""
    session.add(DsrEvent(dsr_id=dsr.id, at=now, code=code, by_label=by.label[:100], details=dict(details)))
    controller = dsr.forwards[0].controller_id if len(dsr.forwards) == 1 else None
    record(session, by=by, action=f"dsr.{code}", target_type="dsr", target_id=dsr.id, controller_id=controller, details=details, now=now)
