"""`flask --app wsgi controllers create|edit|list`: the controllers (client companies) and their contacts.

Errors are mapped once by the command group (app.clikit.DeskGroup): a refused input (InvalidController) or an unknown
id (ControllerNotFound) ends in one line, `Error: <message>`, exit 2.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import click

from app.clikit import ID, group, operator
from app.controllers import service as controllers
from app.db import utcnow
from app.extensions import db

controllers_cli = group("controllers", "The controllers (client companies) and their contacts.")


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
        created = controllers.create_controller(session, data, by=operator("controllers create"), now=utcnow())
        click.echo(created.id)


@controllers_cli.command("edit")
@click.argument("controller_id", type=ID)
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
        current = controllers.get_controller(session, controller_id)
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
        controllers.update_controller(session, controller_id, data, by=operator("controllers edit"), now=utcnow())
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
