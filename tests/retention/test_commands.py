"""`flask --app wsgi retention ...`: help, one-line errors, JSON for scripts; kill -9 mid-run, then a rerun finishes it."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from app import create_app
from app.deletion.models import DeletionRun
from app.extensions import db
from app.jobs.scheduler import Job, Scheduler, next_time
from app.retention import holds
from app.retention.models import RetentionRun
from app.tickets.models import Ticket
from config.settings import normalise_database_url
from tests.conftest import make_config
from tests.databases import migrated_database
from tests.deletion.support import make_tickets
from tests.factories import make_controller
from tests.retention.support import SYSTEM, close_at, flask_env, wait_for

REPO = Path(__file__).resolve().parents[2]
LONG_AGO = dt.datetime(2020, 1, 1, 9, 0, tzinfo=dt.UTC)
SECRET = "retention-test-master-secret-0123456789abcdef"


@pytest.mark.parametrize(
    "args",
    [["run"], ["policies"], ["policy", "set"], ["holds"], ["hold", "add"], ["hold", "lift"], ["runs"]],
)
def test_every_command_has_help(runner: FlaskCliRunner, args: list[str]) -> None:
    result = runner.invoke(args=["retention", *args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_holds_and_runs_for_scripts(runner: FlaskCliRunner, session: Session) -> None:
    controller = make_controller(session)
    made = make_tickets(session, controller, 2, messages=1, now=LONG_AGO)
    close_at(session, made.ticket_ids, LONG_AGO)
    session.commit()
    ticket = session.get(Ticket, made.ticket_ids[0])
    assert ticket is not None and ticket.reference
    # A hold on one ticket (by its reference), and one on a subject
    out = runner.invoke(args=["retention", "hold", "add", "--ticket", ticket.reference, "--basis", "litigation", "--indefinite"])
    assert out.exit_code == 0, out.output
    subject = ["--subject", "x@y.example", "--controller", str(controller.id)]
    out = runner.invoke(args=["retention", "hold", "add", *subject, "--basis", "aml_kyc", "--until", "2099-12-31"])
    assert out.exit_code == 0, out.output
    listed = json.loads(runner.invoke(args=["retention", "holds", "--json"]).output)
    assert [(h["kind"], h["basis"], h["last_day"]) for h in listed][:2] == [("subject", "aml_kyc", "2099-12-31"), ("ticket", "litigation", None)]
    assert "x@y.example" not in runner.invoke(args=["retention", "holds"]).output
    # The dry run names what would go and what the hold keeps
    preview = json.loads(runner.invoke(args=["retention", "run", "--dry-run", "--json", "--controller", str(controller.id)]).output)
    content = next(p for p in preview if p["category"] == "closed_ticket_content")
    assert content["due"] == 1 and list(content["held"].values()) == [1]
    # The run, then the ledger
    out = runner.invoke(args=["retention", "run", "--controller", str(controller.id)])
    assert out.exit_code == 0 and "done" in out.output, out.output
    ledger = json.loads(runner.invoke(args=["retention", "runs", "--json"]).output)
    assert ledger[0]["state"] == "done" and ledger[0]["counts"]["closed_ticket_content"][str(controller.id)]["held"] == 1
    policies_ = json.loads(runner.invoke(args=["retention", "policies", "--json"]).output)
    assert {p["category"] for p in policies_ if not p["covered"]} == set()  # every category has its store now


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hold", "add", "--controller", "{cid}", "--basis", "accounting", "--indefinite"], "needs an end date"),
        (["hold", "add", "--subject", "a@b.example", "--basis", "litigation", "--indefinite"], "--subject needs --controller"),
        (["hold", "add", "--controller", "{cid}", "--basis", "litigation"], "exactly one of --until DATE and --indefinite"),
        (["hold", "lift", "999999"], "no hold 999999"),
        (["run", "--controller", "999999"], "no controller 999999"),
        (["run", "--category", "audit_everything"], "Invalid value for '--category'"),
        (["policy", "set", "closed_ticket_content", "--days", "99999", "--basis", "x"], "the period must be 1 to 3650 days"),
    ],
)
def test_errors_are_one_line(runner: FlaskCliRunner, session: Session, args: list[str], message: str) -> None:
    controller = make_controller(session)
    session.commit()
    result = runner.invoke(args=["retention", *(a.replace("{cid}", str(controller.id)) for a in args)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_scheduler_sends_the_daily_run_at_its_time_of_day() -> None:
    class NoLock:
        def acquire(self) -> bool:
            return True

    job = Job("retention-run", "run_retention", 0, at="30 3 * * *")
    scheduler = Scheduler(NoLock(), [job])  # type: ignore[arg-type]
    start = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    assert scheduler.due(start) == []  # counts from when the scheduler starts leading
    assert scheduler.due(dt.datetime(2026, 12, 1, 3, 29, 59, tzinfo=dt.UTC)) == []
    assert scheduler.due(dt.datetime(2026, 12, 1, 3, 30, tzinfo=dt.UTC)) == [job]
    scheduler.last_sent[job.name] = dt.datetime(2026, 12, 1, 3, 30, tzinfo=dt.UTC)
    assert scheduler.due(dt.datetime(2026, 12, 2, 3, 29, tzinfo=dt.UTC)) == []
    assert next_time("30 3 * * *", dt.datetime(2026, 12, 1, 3, 30, tzinfo=dt.UTC)) == dt.datetime(2026, 12, 2, 3, 30, tzinfo=dt.UTC)


def test_the_scheduler_reads_the_time_of_day_from_the_app(app: Flask) -> None:
    from workers.scheduler import JOBS

    job = next(j for j in JOBS if j.actor == "run_retention")
    assert job.at == "RETENTION_RUN_AT" and app.config["RETENTION_RUN_AT"] == "30 3 * * *"


# ---- kill -9 mid-run, then rerun ------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with migrated_database(tmp_path, "retention") as url:
        yield url


def _run(url: str, folder: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "retention", "run", "--chunk", "3"]
    return subprocess.Popen(command, cwd=REPO, env=flask_env(url, folder, SECRET), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _seed(database: str, folder: Path, count: int, *, hold_index: int | None = None) -> tuple[int, list[int]]:
    """`count` tickets closed long ago (one under a ticket hold when `hold_index` is given), committed; (controller, ticket ids)."""
    app = create_app(make_config(database, folder, MASTER_SECRET=SECRET))
    try:
        with app.app_context(), db.session_scope() as s:
            controller = make_controller(s)
            made = make_tickets(s, controller, count, messages=1, now=LONG_AGO)
            close_at(s, made.ticket_ids, LONG_AGO)
            if hold_index is not None:
                holds.place(s, kind="ticket", ticket_id=made.ticket_ids[hold_index], basis="litigation", until=None, by=SYSTEM, now=LONG_AGO)
            return controller.id, made.ticket_ids
    finally:
        db.state(app).engine.dispose()


def test_kill_9_mid_run_then_rerun_finishes_nothing_twice_nothing_held(database: str, tmp_path: Path) -> None:
    # Given 40 tickets closed long ago, one of them under a hold
    controller_id, ticket_ids = _seed(database, tmp_path / "instance", 40, hold_index=17)
    held = ticket_ids[17]
    watcher = create_engine(normalise_database_url(database))
    try:
        # When `retention run` is killed with SIGKILL once its ledger shows progress
        proc = _run(database, tmp_path / "instance")
        wait_for(watcher, proc, "SELECT COUNT(*) FROM deletion_runs WHERE state = 'done'", 2)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert killed, "the run finished before the kill"
        with watcher.connect() as conn:
            assert conn.execute(text("SELECT state FROM retention_runs")).scalar() == "running"
        # Then a rerun resumes the same ledger row and finishes it
        again = _run(database, tmp_path / "instance")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err.decode()
        assert b"(resumed) done" in out, out.decode()
    finally:
        watcher.dispose()
    app = create_app(make_config(database, tmp_path / "after", MASTER_SECRET=SECRET))
    try:
        with app.app_context(), db.session_scope() as s:
            # Nothing held deleted, everything else gone
            assert list(s.scalars(select(Ticket.id).where(Ticket.id.in_(ticket_ids)))) == [held]
            # Nothing deleted twice: the engine runs together deleted each other ticket once
            reports = [r.report for r in s.scalars(select(DeletionRun).where(DeletionRun.authority_kind == "retention_policy"))]
            assert sum(int((r.get("stores") or {}).get("tickets", {}).get("tickets_deleted", 0)) for r in reports) == 39
            assert all(r.state == "done" for r in s.scalars(select(DeletionRun)))
            # The ledger is right: one run, every ticket counted due once, the held one held
            assert s.scalar(select(func.count()).select_from(RetentionRun)) == 1
            row = s.scalars(select(RetentionRun)).one()
            counts = row.counts["closed_ticket_content"][str(controller_id)]
            assert row.state == "done" and counts["due"] == 40 and counts["held"] == 1
    finally:
        db.state(app).engine.dispose()


def test_ctrl_c_stops_between_batches_and_the_next_run_resumes(database: str, tmp_path: Path) -> None:
    # Given 60 tickets closed long ago
    _seed(database, tmp_path / "instance", 60)
    watcher = create_engine(normalise_database_url(database))
    try:
        # When the operator presses Ctrl-C once the run has committed a batch
        proc = _run(database, tmp_path / "instance")
        wait_for(watcher, proc, "SELECT COUNT(*) FROM deletion_runs", 1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            pytest.fail("the run finished before Ctrl-C landed: seed more tickets")
        # Then it stops after the current batch, says how to resume, exits 130 and the ledger row is 'stopped'
        assert proc.returncode == 130, err.decode()
        assert "stopping the retention run after the current batch" in err.decode()
        assert "run retention run again to resume" in err.decode()
        with watcher.connect() as conn:
            assert conn.execute(text("SELECT state FROM retention_runs")).scalar() == "stopped"
        # And the next run resumes it to the end
        again = _run(database, tmp_path / "instance")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0 and b"(resumed) done" in out, err.decode()
        with watcher.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM tickets")).scalar() == 0
    finally:
        watcher.dispose()


def test_the_scheduled_actor_runs_retention_under_the_lock(app: Flask, session: Session) -> None:
    from workers.retention import run_retention

    controller = make_controller(session)
    made = make_tickets(session, controller, 1, messages=1, now=LONG_AGO)
    close_at(session, made.ticket_ids, LONG_AGO)
    session.commit()
    # While another run holds the lock, the scheduled run leaves everything alone
    with app.app_context():
        from app.retention.schedule import run_lock

        holder = run_lock(app.config, db.engine)
        assert holder.acquire()
        try:
            run_retention.fn()
        finally:
            holder.release()
    assert session.scalar(select(func.count()).select_from(RetentionRun)) == 0
    # Then it runs every covered category to the end
    with app.app_context():
        run_retention.fn()
    session.expire_all()
    assert session.get(Ticket, made.ticket_ids[0]) is None
    assert session.scalars(select(RetentionRun.state)).all() == ["done"]
