"""`flask --app wsgi status [--json]`: what /healthz reports, for operators (no personal data)."""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from app.extensions import db
from app.health import health_report


def _lines(report: dict[str, Any]) -> list[str]:
    out = [f"status: {report['status']}" + (f" ({'; '.join(report['problems'])})" if report["problems"] else "")]
    out.append(f"database: {report['database']} ({report['database_backend']}), broker: {report['broker']}, mail: {report['mail']}")
    if report.get("workers") is not None:
        for name in ("workers", "scheduler"):
            beat = report[name]
            age = "never" if beat["age_seconds"] is None else f"{beat['age_seconds']} s ago"
            out.append(f"{name}: {beat['state']} (last beat {age})")
        outbox, oldest = report["outbox"], report["outbox_oldest_waiting_seconds"]
        out.append(
            f"outbox: {outbox['queued']} queued ({outbox['due']} due), {outbox['sending']} sending, {outbox['failed']} failed, "
            f"{outbox['refused']} refused; oldest waiting {'-' if oldest is None else f'{oldest} s'}"
        )
        relay = report["relay"]
        out.append(
            f"relay: breaker {relay['breaker']}, last success {relay['last_success'] or 'never'}, "
            f"last failure {relay['last_failure'] or 'never'} ({relay['consecutive_failures']} in a row)"
        )
        dsr = report["dsr"]
        if dsr["seconds_left"] is None:
            out.append("dsr: every open request delivered to its controller")
        else:
            out.append(f"dsr: oldest undelivered due {dsr['oldest_undelivered_due_at']} ({dsr['seconds_left']} s left, {dsr['state']})")
    return out


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the /healthz document).")
@with_appcontext
def status_command(as_json: bool) -> None:
    """Whether the desk can keep its 24-hour promise: workers, scheduler, outbox, relay, DSR deadlines. Exit 1 when degraded."""
    report = health_report(db, current_app.config)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        for line in _lines(report):
            click.echo(line)
    if report["status"] != "ok":
        raise SystemExit(1)
