"""`flask --app wsgi users ...`: staff accounts from the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from flask import current_app

from app import staff_notices
from app.auth import onboarding, service
from app.auth.models import ROLES, User
from app.clikit import ID, group, operator
from app.db import utcnow
from app.extensions import db

users_cli = group("users", "Staff accounts: create, list, disable, enable, reset-mfa, unlock.")


def _read_password() -> str:
    """Prompted twice on a terminal; the first line of stdin otherwise (for scripts)."""
    if sys.stdin.isatty():
        value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return value
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True, help="agent, privacy_officer, admin or auditor.")
@click.option("--controller", "controllers", type=ID, multiple=True, help="Controller id assigned to the user (repeatable).")
def users_create(email: str, role: str, controllers: tuple[int, ...]) -> None:
    """Create a staff account; the password comes from stdin (prompted twice on a terminal). Prints its id."""
    password = _read_password()
    with db.session_scope() as session:
        # A refusal (InvalidUser) or an unknown account (UserNotFound) is one line and exit 2 (app.clikit.DeskGroup).
        user = service.create_user(
            session,
            email,
            role=role,
            password=password,
            controller_ids=controllers,
            by=operator("users create"),
            now=utcnow(),
            policy=service.AuthPolicy.from_config(current_app.config),
        )
        code = onboarding.issue_enrolment_code(session, user.id, by=operator("users create"), now=utcnow())
        click.echo(user.id)
        # On stderr, so scripts reading the id from stdout keep working; shown once, never stored in clear.
        click.echo(f"enrolment code (single use, 24 h; the password must be changed at first login): {code}", err=True)


def _state(user: User) -> str:
    now = utcnow()
    if not user.is_active:
        return "disabled"
    if user.is_locked(now):
        return "locked"
    return "active" if user.mfa_enrolled_at else "mfa-pending"


@users_cli.command("list")
def users_list() -> None:
    """List staff accounts: id, role, state, assigned controllers, email."""
    with db.session_scope() as session:
        for user in service.list_users(session):
            ids = ",".join(map(str, user.controller_ids)) or "-"
            click.echo(f"{user.id}\t{user.role}\t{_state(user)}\t{ids}\t{user.email}")


def _change(name: str, fn: Callable[..., User], done: str) -> None:
    @users_cli.command(name, help=f"{done[0].upper()}{done[1:]}: WHO is the account's email address or id.")
    @click.argument("who")
    def command(who: str) -> None:
        with db.session_scope() as session:
            user = service.get_user(session, int(who)) if who.isdigit() else service.find_user(session, who)
            fn(session, user.id, by=operator(f"users {name}"), now=utcnow())
            click.echo(f"user {user.id} {done}")


_change("disable", service.disable_user, "disabled (open sessions ended)")
_change("enable", service.enable_user, "enabled")


@users_cli.command("reset-mfa", help="MFA reset (sessions ended); prints a new enrolment code: WHO is the account's email address or id.")
@click.argument("who")
def users_reset_mfa(who: str) -> None:
    now, by = utcnow(), operator("users reset-mfa")
    with db.session_scope() as session:
        user = _find(session, who)
        service.reset_mfa(session, user.id, by=by, now=now)
        code = onboarding.issue_enrolment_code(session, user.id, by=by, now=now)
        staff_notices.notify(session, user, "mfa_reset", config=current_app.config, by=by, now=now)
        click.echo(f"user {user.id} MFA reset (sessions ended); enrolment code (single use, 24 h): {code}")


@users_cli.command("reset-password", help="A new one-time password, changed at the next login; sessions ended. WHO: email address or id.")
@click.argument("who")
def users_reset_password(who: str) -> None:
    now, by = utcnow(), operator("users reset-password")
    with db.session_scope() as session:
        user = _find(session, who)
        password = onboarding.reset_password(session, user.id, by=by, now=now, policy=service.AuthPolicy.from_config(current_app.config))
        staff_notices.notify(session, user, "password_reset", config=current_app.config, by=by, now=now)
        click.echo(f"user {user.id} one-time password (changed at the next login; sessions ended): {password}")


@users_cli.command("enrolment-code", help="A new single-use MFA enrolment code (24 h). WHO: email address or id.")
@click.argument("who")
def users_enrolment_code(who: str) -> None:
    now, by = utcnow(), operator("users enrolment-code")
    with db.session_scope() as session:
        user = _find(session, who)
        code = onboarding.issue_enrolment_code(session, user.id, by=by, now=now)
        staff_notices.notify(session, user, "enrolment_code", config=current_app.config, by=by, now=now)
        click.echo(f"user {user.id} enrolment code (single use, 24 h): {code}")


def _find(session: Any, who: str) -> User:
    return service.get_user(session, int(who)) if who.isdigit() else service.find_user(session, who)


_change("unlock", service.unlock_user, "unlocked")
