"""Closed tickets at a chosen time, a run driver inside the test's transaction, and helpers for commands run as processes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.principal import Principal
from app.retention import runner
from app.subject_data import service
from app.subject_data.models import SubjectRun
from app.tickets.models import Ticket
from tests.subject_data.support import T0, Scene, drain, instruct

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


def flask_env(url: str, folder: Path, secret: str) -> dict[str, str]:
    """The environment of a `flask --app wsgi ...` process on database `url`, instance `folder`, master secret `secret`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "DESK_", "DATABASE_URL"))}
    env.update(MASTER_SECRET=secret, DATABASE_URL=url, DESK_INSTANCE_PATH=str(folder), SECRET_KEY="k" * 40)
    return env


def wait_for(watcher: Engine, proc: subprocess.Popen[bytes], sql: str, at_least: int, *, seconds: float = 90) -> None:
    """Until `sql` (a count) reaches `at_least`, the process ends, or `seconds` pass (polled every 20 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        with watcher.connect() as conn:
            if (conn.execute(text(sql)).scalar() or 0) >= at_least:
                return
        time.sleep(0.02)


def erase_under_instruction(session: Session, sc: Scene) -> SubjectRun:
    """The controller's erasure instruction for the scene's request, confirmed and executed to its end (at T0); the request's record."""
    instruct(session, sc, "erase")
    record = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=SYSTEM, now=T0)
    drain(session, record.id)
    session.expire_all()
    done = session.get(SubjectRun, record.id)
    assert done is not None and done.state == "done"
    return done
