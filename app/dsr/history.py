"""A request's history: one line per step (dsr_events) and its audit event, written in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.audit.service import Entry, record_all
from app.dsr.models import Dsr, DsrEvent
from app.principal import Principal


@dataclass(frozen=True)
class Step:
    """One history line for `add_events`: its code, the controller its audit event names, its details."""

    code: str
    controller_id: int | None
    details: Mapping[str, Any]


def single_controller(dsr: Dsr) -> int | None:
    """The controller a request's audit events name: its only forward's, None with none or several."""
    return dsr.forwards[0].controller_id if len(dsr.forwards) == 1 else None


def add_event(session: Session, dsr: Dsr, code: str, *, by: Principal, now: dt.datetime, **details: Any) -> None:
    """A history line and its audit event (details: ids, counts, codes only).

    The audit event names the request's controller when it has exactly one forward.
    """
    add_events(session, dsr, [Step(code, single_controller(dsr), details)], by=by, now=now)


def add_events(session: Session, dsr: Dsr, steps: Sequence[Step], *, by: Principal, now: dt.datetime) -> None:
    """Several history lines of one request and their audit events, in this order (one INSERT for each table)."""
    add_lines(session, dsr.id, steps, by=by, now=now)
    audit_steps(session, dsr.id, steps, by=by, now=now)


def add_lines(session: Session, dsr_id: int, steps: Sequence[Step], *, by: Principal, now: dt.datetime) -> None:
    """The history lines of `steps` in this order, added to the session (written by the next flush), without audit events."""
    for step in steps:
        session.add(DsrEvent(dsr_id=dsr_id, at=now, code=step.code, by_label=by_label(by), details=dict(step.details)))


def by_label(by: Principal) -> str:
    """Who acted, as a history line names them (at most 100 characters)."""
    return by.label[:100]


def audit_steps(session: Session, dsr_id: int, steps: Sequence[Step], *, by: Principal, now: dt.datetime) -> None:
    """The audit events of history lines already written (`add_events` writes both), in this order."""
    entries = [Entry(f"dsr.{step.code}", "dsr", dsr_id, step.controller_id, step.details) for step in steps]
    record_all(session, entries, by=by, now=now)
