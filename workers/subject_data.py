"""Subject-data actors: advance a request's run (an export; erasures and rectifications are deletion-engine runs), and the sweeper."""

from __future__ import annotations

import dramatiq

from app.db import utcnow
from app.extensions import db
from app.principal import Principal
from app.subject_data import service


@dramatiq.actor(actor_name=service.RUN_ACTOR, max_retries=5, time_limit=600_000, min_backoff=5_000)
def run_subject_job(run_id: int) -> None:
    """Advance a run to its end, one committed batch at a time; a no-op when it is finished (duplicates are harmless).

    Rung for exports; an erasure or rectification rings the engine's actor (workers/deletion.py), but this one finishes it too.
    """
    service.run_to_end(db.session_scope, run_id, by=Principal.system("subject data"), clock=utcnow)


@dramatiq.actor(max_retries=0, time_limit=60_000)
def sweep_subject_data() -> None:
    """Re-ring runs gone quiet, delete expired export files and spent download tokens."""
    with db.session_scope() as session:
        service.sweep(session, now=utcnow())
