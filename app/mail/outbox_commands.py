"""`mail sweep-outbox` (hand due outbox rows to a worker, or send them from here) and `mail requeue-outbox ID`."""

from __future__ import annotations

import json
from collections import Counter

import click
from flask import current_app
from flask.cli import with_appcontext

from app.clikit import ID, operator
from app.db import utcnow
from app.extensions import db
from app.jobs.broker import is_in_process, worker_in_this_process
from app.mail import delivery, figures
from app.mail.outbox_settings import OutboundSettings


@click.command("sweep-outbox")
@click.option("--send-now", is_flag=True, help="Send due rows from this process instead of enqueueing them (broker down, cron).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_appcontext
def sweep_outbox_command(send_now: bool, as_json: bool) -> None:
    """Re-enqueue every due queued row and stale sending row; prints counts only.

    With --send-now each row is sent from here; the outbound policies are asked
    again first, so a row no longer allowed ends refused (counted as refused).
    With the in-process broker (no DRAMATIQ_BROKER_URL) this command has no worker
    to hand rows to, so it sends them from here as with --send-now, and says so.
    """
    settings = OutboundSettings.from_config(current_app.config)
    report: dict[str, object] = {}
    if not send_now and is_in_process() and not worker_in_this_process():
        # The embedded default's worker lives in the `serve` process: a row rung from this command would go to a
        # broker nobody here reads, so the rows are sent from here (claims are exclusive: `serve` may send too).
        send_now = True
        report["sent_from_here"] = "in-process broker: no worker in this process"
    if send_now:
        with db.session_scope() as session:
            due = delivery.due_for_delivery(session, now=utcnow(), timing=settings.timing)
        outcomes = Counter(delivery.deliver(db.session_scope, outbox_id, settings=settings, clock=utcnow) for outbox_id in due)
        report.update(due=len(due), **{k: outcomes.get(k, 0) for k in ("sent", "queued", "failed", "refused", "skipped")})
    else:
        with db.session_scope() as session:
            due_count, rung = delivery.sweep(session, now=utcnow(), timing=settings.timing)
        report.update(due=due_count, enqueued=rung)
    with db.session_scope() as session:
        backlog = figures.backlog(session, now=utcnow())
    report["backlog"] = backlog
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    click.echo(" ".join(f"{k}={v}" for k, v in report.items() if k != "backlog"))
    click.echo("backlog " + " ".join(f"{k}={v}" for k, v in backlog.items()))


@click.command("requeue-outbox")
@click.argument("outbox_id", type=ID)
@with_appcontext
def requeue_outbox_command(outbox_id: int) -> None:
    """Queue failed outbox email OUTBOX_ID again (same Message-ID), once the cause is fixed; it is checked again before it is sent."""
    try:
        with db.session_scope() as session:
            delivery.requeue(session, outbox_id, by=operator("mail requeue-outbox"), now=utcnow())
    except (delivery.OutboxEmailNotFound, delivery.NotRequeueable) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"outbox email {outbox_id} queued again")
