"""The scheduler: enqueues periodic jobs; only one scheduler acts at a time.

Production runs `python -m workers.scheduler` (one or more; a Postgres
advisory lock elects the leader). The embedded default runs the same loop in
a thread of the web process, with a file lock. Jobs are idempotent anyway:
the database rows say what is due.

While it leads, the scheduler writes its beat (`scheduler.leader`, every
BEAT_EVERY) for /healthz. When the broker is unreachable (issue 15 item 3) it
runs the due jobs marked `inline` itself, in its own process (the sweepers:
the database is the source of truth and their work is idempotent), sets
`BROKER_OUTAGE` so no doorbell is rung meanwhile, logs the outage once and
then once a minute, and goes back to the broker when it answers again.

The jobs are named by actor name (a string), registered with `periodic` by the
actor side (workers.scheduler), so this platform module imports no actor.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dramatiq
from croniter import croniter
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.extensions import db
from app.jobs.broker import broker_status
from app.jobs.doorbell import BROKER_OUTAGE
from app.jobs.locks import ProcessLock
from app.jobs.service import LEADER_BEAT, get_state, save_state

log = logging.getLogger(__name__)

# An arbitrary, fixed key: "DSRDESK1" in ASCII; it fits Postgres's signed bigint as it is.
ADVISORY_LOCK_KEY = 0x4453524445534B31
BEAT_EVERY = 15.0
# While the broker is down: how often to ask it again, and how often to say it is still down.
RETRY_BROKER_EVERY = 5.0
OUTAGE_LOG_EVERY = 60.0
# A calendar job whose time passed while no scheduler led (a restart, a failover) runs when one leads again, if
# its time is at most this old; an older one waits for its next time.
CATCH_UP_WITHIN = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Job:
    """Send `actor` every `every` seconds; `inline`: run it in the scheduler itself while the broker is unreachable.

    `apart`: an inline run goes in a thread of its own (a long job must not stop the leader's beat and the sweeps).
    """

    name: str
    actor: str
    every: float
    inline: bool = False
    # A time of day instead of an interval: a cron expression (UTC), or the name of the app setting holding one
    # (e.g. "RETENTION_RUN_AT"). Its last run is kept in the database (job_state) when the scheduler has one, so a
    # restart or failover across its time runs it late (within CATCH_UP_WITHIN), never twice; without a record the
    # first time is the next one after the scheduler started leading.
    at: str | None = None
    apart: bool = False
    # When the job last ran by its own record (e.g. the retention ledger's newest full run), besides the scheduler's.
    ran_at: Callable[[Session], dt.datetime | None] | None = None


class RunRecord(Protocol):
    """Where a scheduler keeps the last run of its calendar jobs across restarts."""

    def last_run(self, job: Job) -> dt.datetime | None:
        """The job's last run, None when it never ran; raises when the record cannot be read (asked again later)."""
        ...

    def record(self, job: Job, at: dt.datetime) -> None: ...


# Every periodic job of the desk, in the order registered (`periodic`); the default of a Scheduler.
PERIODIC: list[Job] = []


def periodic(*jobs: Job) -> None:
    """Register periodic jobs; registering a job of the same name again replaces it (imports may repeat)."""
    for job in jobs:
        PERIODIC[:] = [known for known in PERIODIC if known.name != job.name]
        PERIODIC.append(job)


def next_time(expression: str, after: dt.datetime) -> dt.datetime:
    """The first time a cron expression (UTC) names strictly after `after` (croniter)."""
    return croniter(expression, after.astimezone(dt.UTC)).get_next(dt.datetime)


def latest_time(expression: str, now: dt.datetime) -> dt.datetime:
    """The last time a cron expression (UTC) names at or before `now` (croniter)."""
    return croniter(expression, now.astimezone(dt.UTC) + dt.timedelta(microseconds=1)).get_prev(dt.datetime)


def calendar_state(name: str) -> str:
    """The job_state row keeping a calendar job's last run."""
    return f"scheduler.last.{name}"[:100]


class LeaderLock(ProcessLock):
    """The scheduler's leadership: one process at a time sends the periodic jobs."""

    def __init__(self, engine: Engine, lock_file: Path) -> None:
        super().__init__(engine, ADVISORY_LOCK_KEY, lock_file)


class Scheduler:
    """Decides which jobs are due and sends their actors while it holds the lock."""

    def __init__(
        self,
        lock: LeaderLock,
        jobs: list[Job] | None = None,
        *,
        app: Flask | None = None,
        beat: Callable[[dt.datetime], None] | None = None,
        broker_ok: Callable[[], bool] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        runs: RunRecord | None = None,
    ) -> None:
        self.lock = lock
        self.jobs = list(PERIODIC if jobs is None else jobs)
        self.last_sent: dict[str, dt.datetime] = {}
        self.runs = runs  # the calendar jobs' last runs in the database; None: in memory only
        self.leading = False
        self._apart: dict[str, threading.Thread] = {}
        self._unreadable: set[str] = set()
        self.app = app  # the app context inline jobs run in
        self.beat = beat
        self.broker_ok = broker_ok or (lambda: broker_status(quiet=True) in ("ok", "in-process"))
        self.last_beat: dt.datetime | None = None
        self.monotonic = monotonic
        self.outage_since: float | None = None  # monotonic time the broker was found down
        self._outage_logged = 0.0
        self._broker_checked = 0.0

    def due(self, now: dt.datetime) -> list[Job]:
        """The jobs whose interval has passed since they were last sent, or whose calendar time has come."""
        return [job for job in self.jobs if self._is_due(job, now)]

    def _is_due(self, job: Job, now: dt.datetime) -> bool:
        last = self.last_sent.get(job.name)
        if job.at is None:
            return last is None or (now - last).total_seconds() >= job.every
        expression = self._expression(job.at)
        if last is None:
            try:
                last = self.runs.last_run(job) if self.runs is not None else None
            except Exception as exc:  # the database is down: ask again next tick (never "counts from now": that skips a day)
                if job.name not in self._unreadable:
                    log.warning("scheduler: could not read the last run of %s (%s)", job.name, type(exc).__name__)
                self._unreadable.add(job.name)
                return False
            self._unreadable.discard(job.name)
            if last is None:  # never ran by any record: it counts from now
                self._mark_calendar(job, now)
                return False
            self.last_sent[job.name] = last
        if next_time(expression, last) > now:
            return False
        if now - latest_time(expression, now) > CATCH_UP_WITHIN:  # missed long ago: wait for the next time
            log.warning("scheduler: %s missed its time by more than %s; next at its next time", job.name, CATCH_UP_WITHIN)
            self._mark_calendar(job, now)
            return False
        return True

    def _mark_calendar(self, job: Job, now: dt.datetime) -> None:
        self.last_sent[job.name] = now
        if self.runs is not None:
            self.runs.record(job, now)

    def _done(self, job: Job, now: dt.datetime) -> None:
        if job.at is None:
            self.last_sent[job.name] = now
        else:
            self._mark_calendar(job, now)

    def _expression(self, at: str) -> str:
        if at.isupper() and self.app is not None:
            return str(self.app.config[at])
        return at

    def tick(self, now: dt.datetime) -> list[str]:
        """Send every due job if this process leads (or run the inline ones here while the broker is down); return the names done."""
        if not self.lock.acquire():
            self.leading = False
            return []
        if not self.leading:  # (again) the leader: another may have run the calendar jobs meanwhile; read their record
            self.leading = True
            for job in self.jobs:
                if job.at is not None and self.runs is not None:
                    self.last_sent.pop(job.name, None)
        self._write_beat(now)
        if self.outage_since is not None and not self._broker_back():
            return self._run_inline(now)
        sent: list[str] = []
        broker = dramatiq.get_broker()
        for job in self.due(now):
            try:
                broker.get_actor(job.actor).send()
            except Exception as exc:  # the broker is down: say so once, run the sweeps here until it returns
                self._outage_begins(type(exc).__name__)
                return sent + self._run_inline(now)
            self._done(job, now)
            sent.append(job.name)
        return sent

    def _write_beat(self, now: dt.datetime) -> None:
        if self.beat is None or (self.last_beat is not None and (now - self.last_beat).total_seconds() < BEAT_EVERY):
            return
        try:
            self.beat(now)
        except Exception as exc:  # the database is down: /healthz will say so; leading goes on
            log.warning("scheduler could not write its beat (%s)", type(exc).__name__)
            return
        self.last_beat = now

    def _outage_begins(self, reason: str) -> None:
        self.outage_since = self._outage_logged = self._broker_checked = self.monotonic()
        BROKER_OUTAGE.set()
        log.error("scheduler: broker unreachable (%s); running the due sweeps here until it returns", reason)

    def _broker_back(self) -> bool:
        """Whether the broker answers again (asked at most every RETRY_BROKER_EVERY s); logs the outage once a minute."""
        mono = self.monotonic()
        assert self.outage_since is not None
        if mono - self._outage_logged >= OUTAGE_LOG_EVERY:
            self._outage_logged = mono
            log.error("scheduler: broker still unreachable after %d s; sweeps run here", mono - self.outage_since)
        if mono - self._broker_checked < RETRY_BROKER_EVERY:
            return False
        self._broker_checked = mono
        if not self.broker_ok():
            return False
        log.warning("scheduler: broker reachable again after %d s; back to enqueueing", mono - self.outage_since)
        self.outage_since = None
        BROKER_OUTAGE.clear()
        return True

    def _run_inline(self, now: dt.datetime) -> list[str]:
        done = []
        broker = dramatiq.get_broker()
        for job in self.due(now):
            if not job.inline:
                continue
            work = broker.get_actor(job.actor).fn
            if not job.apart:
                self._run_one(job.name, work)
            elif job.name not in self._apart or not self._apart[job.name].is_alive():
                thread = threading.Thread(target=self._run_one, args=(job.name, work), name=f"inline {job.name}", daemon=True)
                self._apart[job.name] = thread
                thread.start()
            self._done(job, now)
            done.append(job.name)
        return done

    def _run_one(self, name: str, work: Callable[[], object]) -> None:
        try:
            if self.app is not None:
                with self.app.app_context():
                    work()
            else:
                work()
        except Exception as exc:  # one failing sweep must not stop the others; the next interval tries again
            log.error("scheduler: inline %s failed (%s)", name, type(exc).__name__)

    def run(self, stop: threading.Event, *, poll: float = 1.0) -> None:
        """Tick until `stop` is set."""
        try:
            while not stop.is_set():
                self.tick(dt.datetime.now(dt.UTC))
                stop.wait(poll)
        finally:
            self.lock.release()
            BROKER_OUTAGE.clear()


def scheduler_for(app: Flask) -> Scheduler:
    """A scheduler of the registered periodic jobs, bound to the app's database; it writes its beat there while it leads."""
    sessions = db.state(app).sessionmaker

    def beat(now: dt.datetime) -> None:
        with sessions() as session:
            save_state(session, LEADER_BEAT, {}, now=now)
            session.commit()

    lock = LeaderLock(db.state(app).engine, Path(app.config["INSTANCE_PATH"]) / "scheduler.lock")
    return Scheduler(lock, app=app, beat=beat, runs=DatabaseRunRecord(sessions))


class DatabaseRunRecord:
    """The calendar jobs' last runs in job_state (`scheduler.last.<name>`), and the job's own record (`Job.ran_at`)."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self.sessions = sessions

    def last_run(self, job: Job) -> dt.datetime | None:
        """The later of the scheduler's record and the job's own; None when neither has one. Raises a database error."""
        with self.sessions() as session:
            state = get_state(session, calendar_state(job.name)) or {}
            times = [dt.datetime.fromisoformat(state["at"])] if "at" in state else []
            own = job.ran_at(session) if job.ran_at is not None else None
        if own is not None:
            times.append(own if own.tzinfo else own.replace(tzinfo=dt.UTC))
        return max(times, default=None)

    def record(self, job: Job, at: dt.datetime) -> None:
        """Keep `at` as the job's last run (committed); a database error is logged, never raised."""
        try:
            with self.sessions() as session:
                save_state(session, calendar_state(job.name), {"at": at.isoformat()}, now=at)
                session.commit()
        except Exception as exc:
            log.warning("scheduler: could not record the run of %s (%s)", job.name, type(exc).__name__)


def start_embedded(app: Flask) -> tuple[threading.Thread, threading.Event]:
    """Run the scheduler in a daemon thread of this process (embedded default)."""
    stop = threading.Event()
    scheduler = scheduler_for(app)
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="desk-scheduler", daemon=True)
    thread.start()
    return thread, stop
