"""The scheduler: enqueues periodic jobs; only one scheduler acts at a time.

Production runs `python -m workers.scheduler` (one or more; a Postgres
advisory lock elects the leader). The embedded default runs the same loop in
a thread of the web process, with a file lock. Jobs are idempotent anyway:
the database rows say what is due.

The jobs are named by actor name (a string), registered with `periodic` by the
actor side (workers.scheduler), so this platform module imports no actor.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import dramatiq
from flask import Flask
from sqlalchemy import Engine

from app.extensions import db
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


# Every periodic job of the desk, in the order registered (`periodic`); the default of a Scheduler.
PERIODIC: list[Job] = []


def periodic(*jobs: Job) -> None:
    """Register periodic jobs; registering a job of the same name again replaces it (imports may repeat)."""
    for job in jobs:
        PERIODIC[:] = [known for known in PERIODIC if known.name != job.name]
        PERIODIC.append(job)


class LeaderLock(ProcessLock):
    """The scheduler's leadership: one process at a time sends the periodic jobs."""

    def __init__(self, engine: Engine, lock_file: Path) -> None:
        super().__init__(engine, ADVISORY_LOCK_KEY, lock_file)


class Scheduler:
    """Decides which jobs are due and sends their actors while it holds the lock."""

    def __init__(self, lock: LeaderLock, jobs: list[Job] | None = None) -> None:
        self.lock = lock
        self.jobs = list(PERIODIC if jobs is None else jobs)
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


def scheduler_for(app: Flask) -> Scheduler:
    """A scheduler of the registered periodic jobs, bound to the app's database."""
    return Scheduler(LeaderLock(db.state(app).engine, Path(app.config["INSTANCE_PATH"]) / "scheduler.lock"))


def start_embedded(app: Flask) -> tuple[threading.Thread, threading.Event]:
    """Run the scheduler in a daemon thread of this process (embedded default)."""
    stop = threading.Event()
    scheduler = scheduler_for(app)
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="desk-scheduler", daemon=True)
    thread.start()
    return thread, stop
