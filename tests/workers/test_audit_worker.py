"""The scheduled checkpoint actor signs the chain head into the checkpoint file."""

from __future__ import annotations

import time
from pathlib import Path

from flask import Flask

from app.audit import checkpoint as cp
from app.audit import service as audit
from app.db import utcnow
from app.extensions import db
from app.jobs.broker import start_worker
from app.principal import Principal
from workers import audit as audit_actors
from workers.scheduler import JOBS


def test_the_checkpoint_job_is_scheduled() -> None:
    assert any(job.actor == "audit_checkpoint" for job in JOBS)


def test_the_checkpoint_actor_signs_the_committed_head(committed_app: Flask) -> None:
    path = Path(committed_app.config["AUDIT_CHECKPOINT_PATH"])
    with committed_app.app_context(), db.session_scope() as session:
        for i in range(3):
            audit.record(session, by=Principal.system("tests"), action="test.worker", target_type="thing", target_id=i, now=utcnow())
    worker = start_worker(threads=1)
    try:
        audit_actors.audit_checkpoint.send()
        deadline = time.monotonic() + 15
        while (last := cp.last_checkpoint(path)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert last is not None and last.seq == 3 and last.key_version == 1
