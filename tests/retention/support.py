"""Closed tickets at a chosen time, and a run driver inside the test's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from app.principal import Principal
from app.retention import runner
from app.tickets.models import Ticket

SYSTEM = Principal.system("tests: retention")


def close_at(session: Session, ticket_ids: list[int], when: dt.datetime) -> None:
    """Mark these tickets closed at `when`."""
    for tid in ticket_ids:
        ticket = session.get(Ticket, tid)
        assert ticket is not None
        ticket.status, ticket.closed_at = "closed", when
    session.flush()


def run_now(session: Session, now: dt.datetime, **filters: object) -> runner.RunResult:
    """A whole retention run in this session (the test's transaction), at `now`."""

    @contextmanager
    def same() -> Iterator[Session]:
        yield session
        session.flush()

    return runner.execute(same, by=SYSTEM, clock=lambda: now, **filters)  # type: ignore[arg-type]
