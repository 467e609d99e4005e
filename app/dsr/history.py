"""A request's history: one line per step (dsr_events) and its audit event, written in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.audit.service import record
from app.dsr.models import Dsr, DsrEvent
from app.principal import Principal


def add_event(session: Session, dsr: Dsr, code: str, *, by: Principal, now: dt.datetime, **details: Any) -> None:
    """A history line and its audit event (details: ids, counts, codes only).

    The audit event names the request's controller when it has exactly one forward.
    """
    controller = dsr.forwards[0].controller_id if len(dsr.forwards) == 1 else None
    add_event_of(session, dsr, code, controller_id=controller, by=by, now=now, details=details)


def add_event_of(session: Session, dsr: Dsr, code: str, *, controller_id: int | None, by: Principal, now: dt.datetime, details: Mapping[str, Any]) -> None:
    """`add_event` with the audit event's controller given (a request whose forwards the caller already knows)."""
    session.add(DsrEvent(dsr_id=dsr.id, at=now, code=code, by_label=by.label[:100], details=dict(details)))
    record(session, by=by, action=f"dsr.{code}", target_type="dsr", target_id=dsr.id, controller_id=controller_id, details=details, now=now)
