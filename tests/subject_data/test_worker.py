"""The worker does the run: a committed export request rings the actor, which writes the files; the sweeper is scheduled."""

from __future__ import annotations

import time

import dramatiq
from flask import Flask
from sqlalchemy import select

from app.db import utcnow
from app.extensions import db
from app.jobs.broker import start_worker
from app.subject_data import service
from app.subject_data.models import SubjectExport, SubjectRun
from tests.factories import TEST_PRINCIPAL
from tests.subject_data.support import instruct, scene
from workers.scheduler import JOBS


def test_the_worker_generates_the_export_after_the_commit(committed_app: Flask) -> None:
    dramatiq.get_broker().flush_all()
    with committed_app.app_context():
        with db.session_scope() as session:
            sc = scene(session, now=utcnow())
            instruct(session, sc, "provide_data", now=utcnow())
            run_id = service.start(session, sc.dsr.id, sc.controller.id, "export", by=TEST_PRINCIPAL, now=utcnow()).id
        # The commit rang the doorbell; a worker answers it.
        worker = start_worker(threads=1)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with db.session_scope() as session:
                    run = session.get(SubjectRun, run_id)
                    assert run is not None
                    if run.state in ("done", "failed"):
                        break
                time.sleep(0.2)
        finally:
            worker.stop()
        with db.session_scope() as session:
            run = session.get(SubjectRun, run_id)
            assert run is not None and run.state == "done"
            assert sorted(session.scalars(select(SubjectExport.format).where(SubjectExport.run_id == run_id))) == ["json", "pdf"]
    assert any(job.actor == "sweep_subject_data" for job in JOBS)
    assert dramatiq.get_broker().get_actor(service.RUN_ACTOR) is not None
