"""The registrar of `flask --app wsgi GROUP COMMAND` (each domain's commands.py), and the db, demo and serve commands."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo

from app import migrations
from app.clikit import group
from app.db import utcnow
from app.extensions import db

db_cli = group("db", "Database schema (Alembic migrations).")
demo_cli = group("demo", "Demo data for a first look at the desk.")


def _migration_url() -> str:
    # The schema owner's URL (MIGRATION_DATABASE_URL), else DATABASE_URL as before.
    return str(current_app.config.get("MIGRATION_DATABASE_URL") or current_app.config["DATABASE_URL"])


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head), as MIGRATION_DATABASE_URL (else DATABASE_URL)."""
    migrations.run_command(migrations.upgrade, _migration_url(), revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION, as MIGRATION_DATABASE_URL (else DATABASE_URL)."""
    migrations.run_command(migrations.downgrade, _migration_url(), revision)
    click.echo(f"database at {revision}")


@db_cli.command("grant")
@click.argument("role")
def db_grant(role: str) -> None:
    """Give the app's Postgres ROLE what it needs and nothing more (run as the owner, MIGRATION_DATABASE_URL)."""
    for line in migrations.run_command(migrations.grant_app_role, _migration_url(), role):
        click.echo(line)


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

    from app.jobs.broker import is_in_process, start_worker
    from app.jobs.scheduler import start_embedded
    from config.settings import parse_bind

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
    from app.audit.commands import audit_cli  # imported when the app registers them, not when this module loads
    from app.auth.commands import users_cli
    from app.controllers.commands import controllers_cli
    from app.dsr.commands import dsr_cli
    from app.keys.commands import keys_cli
    from app.mail.commands import mail_cli
    from app.mail.outbox_commands import requeue_outbox_command, sweep_outbox_command
    from app.main.commands import status_command
    from app.retention.commands import retention_cli
    from app.subject_data.commands import subject_data_cli

    mail_cli.add_command(sweep_outbox_command)
    mail_cli.add_command(requeue_outbox_command)

    for command in (db_cli, controllers_cli, demo_cli, audit_cli, users_cli, keys_cli, mail_cli, dsr_cli, subject_data_cli, retention_cli, serve):
        app.cli.add_command(command)
    app.cli.add_command(status_command)
