"""`flask --app wsgi dsr list [--json]` and `dsr sweep` (one sweeper pass, for cron and operators)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
from flask import current_app
from sqlalchemy import select

from app.clikit import group, operator
from app.controllers.models import Controller
from app.db import utcnow
from app.dsr import deadlines
from app.dsr import sweeper as dsr_sweeper
from app.dsr.models import STATES
from app.dsr.requests import list_dsrs, pending_instruction_counts
from app.dsr.settings import DsrSettings
from app.extensions import db

dsr_cli = group("dsr", "Data-subject requests: list them, run one sweeper pass.")


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


@dsr_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.option("--state", type=click.Choice(STATES), help="Only requests in this state.")
@click.option("--open", "open_only", is_flag=True, help="Only open requests.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
def dsr_list(as_json: bool, state: str | None, open_only: bool, limit: int) -> None:
    """Requests by deadline: reference, types, controller, state, received/due/forwarded, pending instructions."""
    now = utcnow()
    with db.session_scope() as session:
        rows = list_dsrs(session, open_only=open_only, state=state, limit=limit)
        pending = pending_instruction_counts(session, [d.id for d in rows])
        names = {cid: name for cid, name in session.execute(select(Controller.id, Controller.name))}
        items: list[dict[str, Any]] = [
            {
                "id": d.id,
                "reference": d.reference,
                "types": list(d.types),
                "controllers": [{"id": cid, "name": names.get(cid)} for cid in d.controller_ids],
                "state": d.state,
                "missed": d.missed_at is not None,
                # The key before 0012, kept for one release (CHANGELOG 2026-11-30): remove after.
                "sla_breached": d.missed_at is not None,
                "received_at": _iso(d.received_at),
                "due_at": _iso(d.due_at),
                "forwarded_at": _iso(d.forwarded_at),
                "pending_instructions": pending.get(d.id, 0),
                # Escalated to the privacy officers (4 h before the deadline, or a forward bounced or refused), and each forward's state.
                "escalated_at": _iso(d.escalated_at),
                "forwards": [{"controller_id": f.controller_id, "state": f.state} for f in d.forwards],
            }
            for d in rows
        ]
        lefts = {d.id: deadlines.format_left(deadlines.time_left(d.due_at, now)) for d in rows}
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no data-subject requests")
        return
    for item in items:
        controllers = ",".join(str(c["name"]) for c in item["controllers"]) or "(triage)"
        left = "" if item["forwarded_at"] else f"  {lefts[item['id']]}"
        click.echo(
            f"{item['reference']}  {'+'.join(item['types']) or '-'}  {controllers}  {item['state']}{' MISSED' if item['missed'] else ''}"
            f"{' ESCALATED' if item['escalated_at'] else ''}"
            f"  received {item['received_at']}  due {item['due_at']}  forwarded {item['forwarded_at'] or '-'}{left}"
            f"  pending instructions {item['pending_instructions']}"
        )


@dsr_cli.command("sweep")
def dsr_sweep() -> None:
    """One sweeper pass: forward what is pending, escalate 4 h before due, mark missed deadlines."""
    settings = DsrSettings.from_config(current_app.config)
    with db.session_scope() as session:
        result = dsr_sweeper.sweep(session, settings=settings, by=operator("dsr sweep"), now=utcnow())
    click.echo(f"rung {result.rung}, forwarded {result.forwarded}, escalated {result.escalated}, missed {result.missed}")
    if result.failed:
        raise click.ClickException(f"could not forward DSR {', '.join(map(str, result.failed))} (no DSR contact for a controller?)")
