"""`flask --app wsgi subject-data runs [--json]`, `resume RUN_ID`, `index-messages` and `sweep` (operators)."""

from __future__ import annotations

import json
import sys

import click
from sqlalchemy import select

from app.clikit import ID, group, operator, stop_on_ctrl_c
from app.db import utcnow
from app.extensions import db
from app.subject_data import service
from app.subject_data.models import SubjectRun
from app.tickets.identifiers import index_unindexed

subject_data_cli = group("subject-data", "Execution runs of data-subject requests: list, resume one, sweep.")


@subject_data_cli.command("runs")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.option("--unfinished", is_flag=True, help="Only queued or running runs.")
def runs(as_json: bool, unfinished: bool) -> None:
    """Runs, newest first: id, request, controller, kind, state, what changed, how many items failed (no personal data)."""
    with db.session_scope() as session:
        stmt = select(SubjectRun).order_by(SubjectRun.id.desc()).limit(1000)
        if unfinished:
            stmt = stmt.where(SubjectRun.state.in_(("queued", "running")))
        items = [
            {
                "id": r.id,
                "dsr_id": r.dsr_id,
                "controller_id": r.controller_id,
                "kind": r.kind,
                "state": r.state,
                "changed": r.report.get("changed", {}),
                "failed": len(r.report.get("failed", [])),
            }
            for r in session.scalars(stmt)
        ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for i in items:
        click.echo(f"{i['id']}\tDSR {i['dsr_id']}\tcontroller {i['controller_id']}\t{i['kind']}\t{i['state']}\tfailed {i['failed']}")


@subject_data_cli.command("resume")
@click.argument("run_id", type=ID)
def resume(run_id: int) -> None:
    """Finish an interrupted run here, batch by batch (the same work the worker does; a finished run is a no-op)."""
    with db.session_scope() as session:
        if session.get(SubjectRun, run_id) is None:
            raise click.UsageError(f"no run {run_id}")

    def progress() -> None:
        with db.session_scope() as session:
            click.echo(f"  run {run_id}: {service.describe_progress(session, run_id)}", err=True)

    with stop_on_ctrl_c(f"run {run_id}") as stop:
        finished = service.run_to_end(db.session_scope, run_id, by=operator("subject-data resume"), clock=utcnow, should_stop=stop.is_set, on_step=progress)
    if not finished:
        with db.session_scope() as session:
            where = service.describe_progress(session, run_id)
        click.echo(f"stopped: run {run_id} {where}; run subject-data resume {run_id} again to finish", err=True)
        sys.exit(130)  # the shell's status for a stop by SIGINT
    with db.session_scope() as session:
        run = session.get(SubjectRun, run_id)
        assert run is not None
        click.echo(f"run {run.id}: {run.state}, changed {run.report.get('changed', {})}, failed {len(run.report.get('failed', []))}")
        if run.state == "failed":
            raise SystemExit(1)


@subject_data_cli.command("index-messages")
@click.option("--batch", default=200, show_default=True, help="Messages per committed batch.")
def index_messages(batch: int) -> None:
    """Index the identifiers of messages stored before the identifier index existed (resumable; indexed ones are skipped)."""
    done, after = 0, 0
    with stop_on_ctrl_c("index-messages") as stop:
        while not stop.is_set():
            with db.session_scope() as session:
                last, count = index_unindexed(session, after=after, limit=max(1, batch))
            if last == after:
                break
            after, done = last, done + count
    click.echo(f"messages indexed: {done}")


@subject_data_cli.command("sweep")
def sweep() -> None:
    """One sweeper pass: ring quiet runs, delete expired export files and spent tokens."""
    with db.session_scope() as session:
        result = service.sweep(session, now=utcnow())
    click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
