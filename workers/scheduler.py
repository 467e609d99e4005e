"""The scheduler: enqueues periodic jobs; only one scheduler acts at a time.

Production runs `python -m workers.scheduler` (one or more; a Postgres
advisory lock elects the leader). The embedded default runs the same loop in
a thread of the web process, with a file lock. Jobs are idempotent anyway:
the database rows say what is due.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
from sqlalchemy import Engine

from app.jobs.locks import ProcessLock

log = logging.getLogger(__name__)

# An arbitrary, fixed key: "DSRDESK1" in ASCII; it fits Postgres's signed bigint as it is.
ADVISORY_LOCK_KEY = 0x4453524445534B31


@dataclass(frozen=True)
class Job:
    """Send `actor` every `every` seconds."""

    name: str
    actor: str
    every: float


# Every periodic job of the desk; each domain adds its sweeper here.
JOBS: list[Job] = [
    Job("heartbeat", "heartbeat", 60),
    Job("outbox-sweep", "sweep_outbox", 30),
    Job("audit checkpoint", "audit_checkpoint", 600),
    Job("imap-poll", "poll_imap", 60),
    Job("dsr-sweep", "sweep_dsrs", 60),
    Job("dsr-chart", "refresh_dsr_chart", 600),
    Job("subject-data-sweep", "sweep_subject_data", 60),
    Job("deletion-sweep", "sweep_deletion_runs", 60),
]


class LeaderLock(ProcessLock):
    """The scheduler's leadership: one process at a time sends the periodic jobs."""

    def __init__(self, engine: Engine, lock_file: Path) -> None:
        super().__init__(engine, ADVISORY_LOCK_KEY, lock_file)


class Scheduler:
    """Decides which jobs are due and sends their actors while it holds the lock."""

    def __init__(self, lock: LeaderLock, jobs: list[Job] | None = None) -> None:
        self.lock = lock
        self.jobs = list(JOBS if jobs is None else jobs)
        self.last_sent: dict[str, dt.datetime] = {}

    def due(self, now: dt.datetime) -> list[Job]:
        """The jobs whose interval has passed since they were last sent."""
        return [job for job in self.jobs if (last := self.last_sent.get(job.name)) is None or (now - last).total_seconds() >= job.every]

    def tick(self, now: dt.datetime) -> list[str]:
        """Send every due job if this process leads; return the names sent."""
        if not self.lock.acquire():
            return []
        sent = []
        broker = dramatiq.get_broker()
        for job in self.due(now):
            try:
                broker.get_actor(job.actor).send()
            except Exception as exc:  # broker down: the next tick tries again
                log.warning("scheduler could not enqueue %s: %s", job.name, type(exc).__name__)
                continue
            self.last_sent[job.name] = now
            sent.append(job.name)
        return sent

    def run(self, stop: threading.Event, *, poll: float = 1.0) -> None:
        """Tick until `stop` is set."""
        try:
            while not stop.is_set():
                self.tick(dt.datetime.now(dt.UTC))
                stop.wait(poll)
        finally:
            self.lock.release()


def scheduler_for(app: Any) -> Scheduler:
    """A scheduler bound to the app's database."""
    from app.extensions import db

    return Scheduler(LeaderLock(db.state(app).engine, Path(app.config["INSTANCE_PATH"]) / "scheduler.lock"))


def start_embedded(app: Any) -> tuple[threading.Thread, threading.Event]:
    """Run the scheduler in a daemon thread of this process (embedded default)."""
    stop = threading.Event()
    scheduler = scheduler_for(app)
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="desk-scheduler", daemon=True)
    thread.start()
    return thread, stop


def main() -> None:
    """`python -m workers.scheduler`: the production scheduler process."""
    from app import create_app
    from config.settings import ConfigError

    try:
        app = create_app()
    except ConfigError as exc:
        # One line naming the variable, never a traceback (operator contract).
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("scheduler started, pid %s", os.getpid())
    with app.app_context():
        scheduler_for(app).run(stop)


if __name__ == "__main__":
    main()
