"""Read and write job state rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from app.jobs.models import JobState


def get_state(session: Session, name: str) -> dict[str, Any] | None:
    """The saved state of a job, or None when it never ran."""
    row = session.get(JobState, name)
    return dict(row.state) if row is not None else None


def save_state(session: Session, name: str, state: dict[str, Any], *, now: dt.datetime) -> None:
    """Replace a job's state (the caller commits, so a crash keeps the last committed cursor)."""
    row = session.get(JobState, name)
    if row is None:
        session.add(JobState(name=name, state=state, updated_at=now))
    else:
        row.state = state
        row.updated_at = now
    session.flush()


def clear_state(session: Session, name: str) -> None:
    """Forget a finished job's cursor."""
    row = session.get(JobState, name)
    if row is not None:
        session.delete(row)
        session.flush()


# The beats /healthz reads (app.health): a worker's heartbeat job, and the scheduler while it leads.
WORKER_HEARTBEAT = "worker.heartbeat"
LEADER_BEAT = "scheduler.leader"
