"""The scheduler sends each due job once per interval, and only the leader sends."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import time_machine
from dramatiq.brokers.stub import StubBroker
from flask import Flask
from sqlalchemy import Engine, select, text

from app.db import make_engine
from app.extensions import db
from app.jobs.doorbell import BROKER_OUTAGE
from app.jobs.scheduler import PERIODIC, RETRY_BROKER_EVERY, Job, LeaderLock, Scheduler
from config.settings import REPO_ROOT
from tests.databases import ON_POSTGRES, fresh_database
from workers.scheduler import JOBS

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


class _Lock:
    """A leader lock whose outcome the test decides."""

    def __init__(self, leader: bool = True) -> None:
        self.leader = leader
        self.released = False

    def acquire(self) -> bool:
        return self.leader

    def release(self) -> None:
        self.released = True


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubBroker:
    """A private stub broker with `ping` and `sweep` actors, standing in for the global broker."""
    broker = StubBroker()
    for name in ("ping", "sweep"):
        dramatiq.actor(lambda: None, broker=broker, actor_name=name, queue_name=name)
    monkeypatch.setattr(dramatiq, "get_broker", lambda: broker)
    return broker


def _sent(broker: StubBroker, queue_name: str) -> int:
    return broker.queues[queue_name].qsize()


def _scheduler(lock: Any) -> Scheduler:
    return Scheduler(lock, [Job("ping", "ping", 60), Job("sweep", "sweep", 300)])


def test_every_job_is_due_at_first_then_after_its_own_interval() -> None:
    scheduler = _scheduler(_Lock())
    assert [j.name for j in scheduler.due(T0)] == ["ping", "sweep"]
    scheduler.last_sent = {"ping": T0, "sweep": T0}
    assert scheduler.due(T0 + dt.timedelta(seconds=59)) == []
    assert [j.name for j in scheduler.due(T0 + dt.timedelta(seconds=60))] == ["ping"]
    assert [j.name for j in scheduler.due(T0 + dt.timedelta(seconds=300))] == ["ping", "sweep"]


def test_tick_sends_each_due_job_once_per_interval(stub: StubBroker) -> None:
    scheduler = _scheduler(_Lock())
    # Given a scheduler ticking every second for five minutes
    sent = [scheduler.tick(T0 + dt.timedelta(seconds=s)) for s in range(0, 301)]
    # Then ping went out every 60 s and sweep at the start and at 300 s, nothing in between
    assert sum(names.count("ping") for names in sent) == 6
    assert sum(names.count("sweep") for names in sent) == 2
    assert _sent(stub, "ping") == 6 and _sent(stub, "sweep") == 2


def test_a_scheduler_that_does_not_lead_sends_nothing(stub: StubBroker) -> None:
    follower = _scheduler(_Lock(leader=False))
    assert follower.tick(T0) == []
    assert _sent(stub, "ping") == 0


def test_a_job_the_broker_refused_is_sent_again_once_the_broker_answers(stub: StubBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    scheduler = Scheduler(_Lock(), [Job("ping", "ping", 60), Job("sweep", "sweep", 300)], monotonic=lambda: clock[0])

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr(stub, "enqueue", down)
    assert scheduler.tick(T0) == []
    monkeypatch.undo()
    monkeypatch.setattr(dramatiq, "get_broker", lambda: stub)
    # The broker is asked again every few seconds (issue 15 item 3: not once per tick, and the outage logged once a minute),
    # not after a whole interval: the refused sends go out as soon as it answers.
    clock[0] = RETRY_BROKER_EVERY
    assert scheduler.tick(T0 + dt.timedelta(seconds=RETRY_BROKER_EVERY)) == ["ping", "sweep"]
    assert not BROKER_OUTAGE.is_set()


def test_the_desks_jobs_name_declared_actors(app: Any) -> None:
    declared = dramatiq.get_broker().get_declared_actors()
    assert {job.actor for job in JOBS} <= declared
    assert "heartbeat" in {job.name for job in JOBS}
    # The app's creation registered them: a scheduler (the process, or the embedded one) sends these by default
    assert set(JOBS) <= set(PERIODIC)
    lock: Any = _Lock()
    assert Scheduler(lock).jobs == PERIODIC


def test_run_stops_on_the_event_and_steps_down(stub: StubBroker) -> None:
    lock = _Lock()
    scheduler = _scheduler(lock)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), kwargs={"poll": 0.01})
    thread.start()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert lock.released
    assert _sent(stub, "ping") == 1


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh database of the suite's kind (Postgres or SQLite)."""
    with fresh_database(tmp_path, "leader") as url:
        eng = make_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


def test_only_one_of_two_schedulers_leads_until_it_steps_down(engine: Engine, tmp_path: Path) -> None:
    # Postgres: an advisory lock; SQLite (embedded default): a lock file in instance/.
    lock_file = tmp_path / "instance" / "scheduler.lock"
    first, second = LeaderLock(engine, lock_file), LeaderLock(engine, lock_file)
    try:
        assert first.acquire()
        assert first.held
        assert not second.acquire()
        assert not second.held
        assert first.acquire()  # leading already: stays leader
        first.release()
        assert not first.held
        assert second.acquire()
        assert not first.acquire()
    finally:
        first.release()
        second.release()


def test_the_lock_kind_follows_the_database(engine: Engine, tmp_path: Path) -> None:
    lock = LeaderLock(engine, tmp_path / "scheduler.lock")
    try:
        assert lock.acquire()
        if ON_POSTGRES:
            held_here = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            with engine.connect() as conn:
                holders = conn.execute(text(held_here)).scalar()
            assert holders == 1
            assert not (tmp_path / "scheduler.lock").exists()
        else:
            assert (tmp_path / "scheduler.lock").exists()
    finally:
        lock.release()


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="advisory locks need PostgreSQL (TEST_DATABASE_URL)")
def test_when_the_leaders_connection_dies_the_other_scheduler_takes_over(engine: Engine, tmp_path: Path) -> None:
    first, second = LeaderLock(engine, tmp_path / "a.lock"), LeaderLock(engine, tmp_path / "b.lock")
    try:
        assert first.acquire()
        assert not second.acquire()
        # Given the leader's server session is killed (crash, network loss)
        assert first._conn is not None
        pid = first._conn.execute(text("SELECT pg_backend_pid()")).scalar()
        first._conn.commit()
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})  # waits until the session is gone
            conn.commit()
        # Then the lock is free for the other one, and the old leader knows it no longer leads
        assert second.acquire()
        assert not first.held
        assert not first.acquire()
    finally:
        first.release()
        second.release()


@pytest.mark.parametrize(
    ("bad", "named"),
    [({"DRAMATIQ_BROKER_URL": "kafka://127.0.0.1:9092"}, "DRAMATIQ_BROKER_URL"), ({"DESK_ENV": "production"}, "SECRET_KEY")],
)
def test_the_scheduler_process_refuses_bad_settings_in_one_line(tmp_path: Path, bad: dict[str, str], named: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRAMATIQ_", "SECRET_KEY", "MASTER_SECRET", "DATABASE_URL", "DESK_"))}
    env.update(DESK_INSTANCE_PATH=str(tmp_path), **bad)
    done = subprocess.run([sys.executable, "-m", "workers.scheduler"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: ") and named in done.stderr
    assert "Traceback" not in done.stderr


# ---- time-bound jobs while the broker is down (issue 15 item 3), calendar jobs across a restart (issue 14) -------


def _refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The desk's broker refuses every message, as a stopped Redis does."""

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr(dramatiq.get_broker(), "enqueue", down)


def test_during_a_broker_outage_checkpoints_and_the_daily_run_go_on_in_the_scheduler(committed_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.audit import checkpoint as cp
    from app.audit import service as audit
    from app.principal import Principal
    from app.retention.models import RetentionRun

    path = Path(committed_app.config["AUDIT_CHECKPOINT_PATH"])

    def events(n: int) -> None:
        with committed_app.app_context(), db.session_scope() as session:
            for i in range(n):
                audit.record(session, by=Principal.system("tests"), action="test.outage", target_type="thing", target_id=i, now=T0)

    jobs = [job for job in JOBS if job.actor in ("audit_checkpoint", "run_retention")]
    clock = [0.0]
    scheduler = Scheduler(_Lock(), jobs, app=committed_app, monotonic=lambda: clock[0], broker_ok=lambda: False)
    at_three = dt.datetime(2026, 12, 1, 3, 29, 30, tzinfo=dt.UTC)
    _refusing(monkeypatch)
    # Given the broker down from the first tick and three events
    events(3)
    assert scheduler.tick(at_three) == ["audit checkpoint"]
    # Then the scheduler signed them itself
    first = cp.last_checkpoint(path)
    assert first is not None and first.seq == 3
    # And a minute later the next events are signed too, still without a broker (at most a minute unsigned)
    events(2)
    clock[0] = 60.0
    # And the daily retention run, due at 03:30, runs in the scheduler (in a thread of its own) and is in the ledger
    assert scheduler.tick(at_three + dt.timedelta(seconds=60)) == ["audit checkpoint", "retention-run"]
    later = cp.last_checkpoint(path)
    assert later is not None and later.seq == 5
    scheduler._apart["retention-run"].join(timeout=60)
    with committed_app.app_context(), db.session_scope() as session:
        runs = session.scalars(select(RetentionRun)).all()
    assert [run.state for run in runs] == ["done"]
    assert BROKER_OUTAGE.is_set()
    BROKER_OUTAGE.clear()


def _retention_scheduler(app: Flask) -> Scheduler:
    from app.jobs.scheduler import scheduler_for

    scheduler = scheduler_for(app)
    scheduler.lock = _Lock()  # type: ignore[assignment]
    scheduler.jobs = [job for job in JOBS if job.actor == "run_retention"]
    return scheduler


RUN_AT = dt.datetime(2026, 12, 1, 3, 30, tzinfo=dt.UTC)  # RETENTION_RUN_AT's default, "30 3 * * *"


def _tick_at(scheduler: Scheduler, when: dt.datetime) -> list[str]:
    with time_machine.travel(when, tick=False):
        return scheduler.tick(dt.datetime.now(dt.UTC))


def test_a_scheduler_restarted_across_the_daily_time_runs_the_missed_run_once(committed_app: Flask, retention_broker: StubBroker) -> None:
    # Given a scheduler that led from 03:00 and stopped one second before the daily time
    first = _retention_scheduler(committed_app)
    assert _tick_at(first, RUN_AT - dt.timedelta(minutes=30)) == []
    assert _tick_at(first, RUN_AT - dt.timedelta(seconds=1)) == []
    # When it is restarted (or the standby takes over) one second after the time
    restarted = _retention_scheduler(committed_app)
    # Then the day's run is sent at once
    assert _tick_at(restarted, RUN_AT + dt.timedelta(seconds=1)) == ["retention-run"]
    assert _sent(retention_broker, "default") == 1
    # And a restart right after does not send it twice, nor does the next tick
    again = _retention_scheduler(committed_app)
    assert _tick_at(again, RUN_AT + dt.timedelta(seconds=2)) == []
    assert _tick_at(restarted, RUN_AT + dt.timedelta(seconds=3)) == []
    # And the next day at its time, it is sent again
    assert _tick_at(again, RUN_AT + dt.timedelta(days=1)) == ["retention-run"]
    assert _sent(retention_broker, "default") == 2


def test_a_daily_run_already_in_the_ledger_is_not_run_again_after_a_restart(committed_app: Flask, retention_broker: StubBroker) -> None:
    from app.retention.models import RetentionRun

    # Given a scheduler that led before the time, and today's run started at 03:30 by a worker (the ledger)
    assert _tick_at(_retention_scheduler(committed_app), RUN_AT - dt.timedelta(minutes=5)) == []
    with committed_app.app_context(), db.session_scope() as session:
        session.add(RetentionRun(state="done", requested_by="scheduled", started_at=RUN_AT, updated_at=RUN_AT, finished_at=RUN_AT))
    # When a scheduler that never recorded sending it starts one second after the time
    with committed_app.app_context(), db.session_scope() as session:
        session.execute(text("DELETE FROM job_state WHERE name LIKE 'scheduler.last.%'"))
    # Then it does not run it again
    assert _tick_at(_retention_scheduler(committed_app), RUN_AT + dt.timedelta(seconds=1)) == []
    assert _sent(retention_broker, "default") == 0


def test_a_daily_time_missed_by_more_than_the_grace_waits_for_the_next_day(committed_app: Flask, retention_broker: StubBroker) -> None:
    from app.jobs.scheduler import CATCH_UP_WITHIN

    assert _tick_at(_retention_scheduler(committed_app), RUN_AT - dt.timedelta(seconds=1)) == []
    # A scheduler down from before the time until after the grace window: the run waits for tomorrow
    late = _retention_scheduler(committed_app)
    assert _tick_at(late, RUN_AT + CATCH_UP_WITHIN + dt.timedelta(seconds=1)) == []
    assert _tick_at(late, RUN_AT + dt.timedelta(days=1)) == ["retention-run"]
    assert _sent(retention_broker, "default") == 1


@pytest.fixture
def retention_broker(monkeypatch: pytest.MonkeyPatch) -> StubBroker:
    """A private stub broker with the retention actor's name, standing in for the global broker."""
    broker = StubBroker()
    dramatiq.actor(lambda: None, broker=broker, actor_name="run_retention", queue_name="default")
    monkeypatch.setattr(dramatiq, "get_broker", lambda: broker)
    return broker


def test_a_scheduler_that_cannot_read_the_record_at_the_time_runs_the_job_once_the_database_answers(
    committed_app: Flask, retention_broker: StubBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.jobs.scheduler import DatabaseRunRecord

    assert _tick_at(_retention_scheduler(committed_app), RUN_AT - dt.timedelta(seconds=1)) == []
    # Given a scheduler restarted after the time while the database refuses connections
    restarted = _retention_scheduler(committed_app)
    real = DatabaseRunRecord.last_run

    def down(self: DatabaseRunRecord, job: Job) -> dt.datetime | None:
        raise ConnectionError("database down")

    monkeypatch.setattr(DatabaseRunRecord, "last_run", down)
    assert _tick_at(restarted, RUN_AT + dt.timedelta(seconds=1)) == []
    # When the database answers again a minute later, the day's run is sent (not skipped as "counts from now")
    monkeypatch.setattr(DatabaseRunRecord, "last_run", real)
    assert _tick_at(restarted, RUN_AT + dt.timedelta(minutes=1)) == ["retention-run"]
    assert _sent(retention_broker, "default") == 1
