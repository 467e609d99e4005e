"""The outbox in numbers, for /healthz and `status` (no personal data: states, counts, times)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.mail.models import OutboxEmail

BACKLOG_STATES = ("queued", "sending", "failed", "refused")


def backlog(session: Session, *, now: dt.datetime) -> dict[str, int]:
    """Counts for /healthz: rows per state but sent, and how many queued rows are already due."""
    counts = {state: 0 for state in BACKLOG_STATES}
    # IN (not != 'sent') so the (state, due_at) index serves it however many rows were sent.
    for state, n in session.execute(select(OutboxEmail.state, func.count()).where(OutboxEmail.state.in_(BACKLOG_STATES)).group_by(OutboxEmail.state)):
        counts[state] = int(n)
    due = session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.state == "queued", OutboxEmail.due_at <= now))
    counts["due"] = int(due or 0)
    return counts


def oldest_waiting(session: Session) -> dt.datetime | None:
    """When the oldest row still waiting to leave (queued or sending) was written; None when nothing waits."""
    found = session.scalar(select(func.min(OutboxEmail.created_at)).where(OutboxEmail.state.in_(("queued", "sending"))))
    if found is None:
        return None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)
