"""Housekeeping actors."""

from __future__ import annotations

import dramatiq

from app.db import utcnow
from app.extensions import db
from app.jobs.service import WORKER_HEARTBEAT, save_state

HEARTBEAT = WORKER_HEARTBEAT


@dramatiq.actor(max_retries=0, time_limit=30_000)
def heartbeat() -> None:
    """Proves a worker processes messages; /healthz reports its age."""
    with db.session_scope() as session:
        save_state(session, HEARTBEAT, {}, now=utcnow())
