"""Deletion-engine actors: advance a run (erasure, rectification, retention, termination...), and its sweeper (every minute)."""

from __future__ import annotations

import dramatiq

from app.db import utcnow
from app.deletion import service
from app.extensions import db
from app.principal import Principal


@dramatiq.actor(actor_name=service.RUN_ACTOR, max_retries=5, time_limit=600_000, min_backoff=5_000)
def run_deletion(run_id: int) -> None:
    """Advance a run to its end, one committed batch at a time; a no-op when it is finished (duplicates are harmless)."""
    service.advance(db.session_scope, run_id, by=Principal.system("deletion"), clock=utcnow)


@dramatiq.actor(max_retries=0, time_limit=60_000)
def sweep_deletion_runs() -> None:
    """Ring again the runs gone quiet (a lost doorbell or a killed worker)."""
    with db.session_scope() as session:
        service.sweep(session, now=utcnow())
