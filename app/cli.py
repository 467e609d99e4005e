"""The `flask --app wsgi GROUP COMMAND` commands; each calls a service and commits."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo

from app import migrations
from app.clikit import group, operator
from app.controllers import service as controllers
from app.db import utcnow
from app.extensions import db

db_cli = group("db", "Database schema (Alembic migrations).")
controllers_cli = group("controllers", "The controllers (client companies) and their contacts.")
demo_cli = group("demo", "Demo data for a first look at the desk.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrations.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    migrations.downgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


def _controller_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--dsr-contact", "dsr_contacts", multiple=True, required=required, help="Address for DSR forwards (repeatable)."),
            click.option("--breach-contact", "breach_contacts", multiple=True, help="Address for breach notices (repeatable)."),
            click.option("--subprocessor-contact", "subprocessor_contacts", multiple=True, help="Address for sub-processor notices (repeatable)."),
            click.option("--domain", "domains", multiple=True, help="Email domain routed to this controller (repeatable)."),
            click.option("--identifier", "identifiers", multiple=True, help="Account identifier routed to this controller (repeatable)."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _save(fn: Callable[[], controllers.Controller]) -> controllers.Controller:
    try:
        return fn()
    except controllers.InvalidController as exc:
        raise click.UsageError(str(exc)) from None
    except controllers.ControllerNotFound:
        raise click.UsageError("no controller with that id") from None


@controllers_cli.command("create")
@click.argument("name")
@_controller_options(required=True)
def controllers_create(name: str, **lists: tuple[str, ...]) -> None:
    """Register controller NAME; prints its id."""
    with db.session_scope() as session:
        data = controllers.ControllerInput(
            name=name,
            dsr_contacts=list(lists["dsr_contacts"]),
            breach_contacts=list(lists["breach_contacts"]),
            subprocessor_contacts=list(lists["subprocessor_contacts"]),
            domains=list(lists["domains"]),
            identifiers=list(lists["identifiers"]),
        )
        created = _save(lambda: controllers.create_controller(session, data, by=operator("controllers create"), now=utcnow()))
        click.echo(created.id)


@controllers_cli.command("edit")
@click.argument("controller_id", type=int)
@click.option("--name", help="New name.")
@_controller_options(required=False)
@click.option("--status", type=click.Choice(["active", "terminated"]), help="Active, or terminated (needs --terminated-on).")
@click.option("--terminated-on", type=click.DateTime(formats=["%Y-%m-%d"]), help="Termination date, YYYY-MM-DD.")
@click.option("--termination-option", type=click.Choice(["return", "delete"]), help="Return or delete the data.")
def controllers_edit(
    controller_id: int,
    name: str | None,
    status: str | None,
    terminated_on: dt.datetime | None,
    termination_option: str | None,
    **lists: tuple[str, ...],
) -> None:
    """Change controller CONTROLLER_ID; a list option given replaces that list."""
    with db.session_scope() as session:
        current = _save(lambda: controllers.get_controller(session, controller_id))
        data = controllers.ControllerInput(
            name=name or current.name,
            dsr_contacts=list(lists["dsr_contacts"]) or current.contact_emails("dsr"),
            breach_contacts=list(lists["breach_contacts"]) or current.contact_emails("breach"),
            subprocessor_contacts=list(lists["subprocessor_contacts"]) or current.contact_emails("subprocessor"),
            domains=list(lists["domains"]) or [d.domain for d in current.domains],
            identifiers=list(lists["identifiers"]) or [i.identifier for i in current.identifiers],
            status=status or current.status,
            terminated_on=terminated_on.date() if terminated_on else current.terminated_on,
            termination_option=termination_option or current.termination_option,
        )
        _save(lambda: controllers.update_controller(session, controller_id, data, by=operator("controllers edit"), now=utcnow()))
        click.echo(f"controller {controller_id} saved")


@controllers_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def controllers_list(as_json: bool) -> None:
    """List the controllers."""
    with db.session_scope() as session:
        rows = controllers.list_controllers(session)
        if as_json:
            click.echo(json.dumps([controllers.controller_as_dict(c) for c in rows], indent=2))
            return
        for c in rows:
            click.echo(f"{c.id}\t{c.status}\t{c.name}")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Create demo data (idempotent: existing demo rows are kept)."""
    from app.auth.service import AuthPolicy
    from app.demo import seed

    with db.session_scope() as session:
        for line in seed(session, now=utcnow(), policy=AuthPolicy.from_config(current_app.config)):
            click.echo(line)


@click.command("serve")
def serve() -> None:
    """Serve the desk on BIND; the embedded default also runs its worker and scheduler here."""
    from werkzeug.serving import run_simple

    from config.settings import parse_bind
    from workers.broker import is_in_process, start_worker
    from workers.scheduler import start_embedded

    app = click.get_current_context().ensure_object(ScriptInfo).load_app()  # the app itself, not the proxy
    host, port = parse_bind(app.config["BIND"])
    if app.config.get("WORKER_EMBEDDED") and is_in_process():
        start_worker()
        click.echo("in-process worker started")
    if app.config.get("SCHEDULER_EMBEDDED"):
        start_embedded(app)
        click.echo("in-process scheduler started")
    click.echo(f"DSR Desk on http://{host}:{port}/ (Ctrl-C to stop)")
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


def register(app: Flask) -> None:
    """Attach every command group to the app."""
    from app.audit.commands import audit_cli  # imported here: it builds on this module's `group`
    from app.auth.commands import users_cli
    from app.crypto.commands import keys_cli
    from app.dsr.commands import dsr_cli
    from app.mail.commands import mail_cli
    from app.mail.outbox_commands import requeue_outbox_command, sweep_outbox_command
    from app.subject_data.commands import subject_data_cli

    mail_cli.add_command(sweep_outbox_command)
    mail_cli.add_command(requeue_outbox_command)

    for command in (db_cli, controllers_cli, demo_cli, audit_cli, users_cli, keys_cli, mail_cli, dsr_cli, subject_data_cli, serve):
        app.cli.add_command(command)
