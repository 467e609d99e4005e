"""Errors mapped once: what a service raises (NotFound, Refused, Conflict, any other DeskError) reaches the user
the same way on every page (app.errors) and every command (app.clikit.DeskGroup); views and commands catch nothing."""

from __future__ import annotations

import datetime as dt
import logging

import click
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import exceptions as desk
from app.auth import service as auth_service
from app.auth.models import User
from app.clikit import DeskGroup
from app.errors import form_page, return_to
from tests.conftest import AuthActions
from tests.factories import make_user


def _only_active_admin(session: Session, auth: AuthActions) -> User:
    for other in session.scalars(select(User).where(User.role == "admin")):
        other.disabled_at = dt.datetime.now(dt.UTC)
    session.flush()
    return auth.login(make_user(session, "admin"))


def test_not_found_from_a_service_is_the_404_page(client: FlaskClient, auth: AuthActions) -> None:
    auth.login("admin")
    # Given no user 999999, when the admin disables it, the service's UserNotFound is the desk's 404 page
    response = client.post("/admin/users/999999/disable")
    assert response.status_code == 404 and "There is nothing here, or you may not see it." in response.get_data(as_text=True)
    # and a ticket outside an agent's scope looks exactly the same as one that does not exist (TicketNotFound)
    auth.logout()
    auth.login("agent")
    assert client.get("/tickets/999999").status_code == 404


def test_refused_is_flashed_and_goes_back_to_the_forms_page_nothing_changed(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    admin = _only_active_admin(session, auth)
    # When the last active admin disables themself (the service refuses: InvalidUser is a Refused)
    response = client.post(f"/admin/users/{admin.id}/disable", headers={"Referer": "https://elsewhere.example/phish"})
    # Then 303 back to the page the form is on (never the Referer), with the reason flashed, and nothing changed
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/users/{admin.id}"
    page = client.get(f"/admin/users/{admin.id}").get_data(as_text=True)
    assert 'class="flash flash-error"' in page and "last active admin" in page
    session.expire_all()
    assert session.get(User, admin.id).disabled_at is None  # type: ignore[union-attr]


def test_conflict_is_the_409_page_with_its_message_and_a_way_back(
    client: FlaskClient, session: Session, auth: AuthActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_user(session, "agent")
    auth.login("admin")

    def changed_meanwhile(db_session: Session, user_id: int, **_: object) -> User:
        db_session.get(User, user_id).disabled_at = dt.datetime.now(dt.UTC)  # type: ignore[union-attr]
        raise desk.Conflict("the account changed meanwhile; reload and try again")

    monkeypatch.setattr(auth_service, "disable_user", changed_meanwhile)
    response = client.post(f"/admin/users/{target.id}/disable")
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and "the account changed meanwhile; reload and try again" in html
    assert f'href="/admin/users/{target.id}"' in html
    # The half-done change was rolled back with the request
    session.expire_all()
    assert session.get(User, target.id).disabled_at is None  # type: ignore[union-attr]


def test_any_other_desk_error_is_the_500_page_logged_by_type_only(
    client: FlaskClient, session: Session, auth: AuthActions, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = make_user(session, "agent")
    auth.login("admin")

    def broken(*_: object, **__: object) -> User:
        raise desk.DeskError("secret-person@example.org could not be read")

    monkeypatch.setattr(auth_service, "enable_user", broken)
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        response = client.post(f"/admin/users/{target.id}/enable")
    assert response.status_code == 500 and "secret-person" not in response.get_data(as_text=True)
    assert "DeskError" in caplog.text and "secret-person" not in caplog.text


def test_the_forms_page_is_named_or_the_posting_url_and_never_a_loop(app: Flask) -> None:
    # A form that posts to its own URL (GET + POST) goes back to it
    with app.test_request_context("/controllers/new", method="POST"):
        assert form_page() == "/controllers/new"
    # A POST-only action that names no page goes home, never to its own URL (it answers no GET)
    with app.test_request_context("/dsr/5/route", method="POST"):
        assert form_page() == "/"
    # A named page wins; on a GET of that very page it would loop, so home instead
    with app.test_request_context("/dsr/5/route", method="POST"):
        return_to("/dsr/5")
        assert form_page() == "/dsr/5"
    with app.test_request_context("/dsr/5", method="GET"):
        return_to("/dsr/5")
        assert form_page() == "/"


def _cli() -> DeskGroup:
    group = DeskGroup("t")

    @group.command("missing", with_appcontext=False)
    def missing() -> None:
        raise desk.NotFound("no widget 7")

    @group.command("refused", with_appcontext=False)
    def refused() -> None:
        raise desk.Refused("the widget must be\nblue")

    @group.command("conflict", with_appcontext=False)
    def conflict() -> None:
        raise desk.Conflict("the widget is locked")

    @group.command("broken", with_appcontext=False)
    def broken() -> None:
        raise desk.DeskError("the widget key is missing")

    @group.command("ok", with_appcontext=False)
    def ok() -> None:
        click.echo("fine")

    return group


@pytest.mark.parametrize(
    ("command", "code", "line"),
    [
        ("missing", 2, "Error: no widget 7"),
        ("refused", 2, "Error: the widget must be blue"),
        ("conflict", 2, "Error: the widget is locked"),
        ("broken", 1, "Error: the widget key is missing"),
    ],
)
def test_cli_maps_desk_errors_to_one_line_on_stderr_and_an_exit_code(command: str, code: int, line: str) -> None:
    result = CliRunner().invoke(_cli(), [command])
    assert result.exit_code == code
    assert result.stderr == line + "\n" and result.stdout == ""
    assert "Traceback" not in result.output


def test_cli_without_error_is_untouched() -> None:
    result = CliRunner().invoke(_cli(), ["ok"])
    assert result.exit_code == 0 and result.stdout == "fine\n"


def test_a_real_command_refusal_is_one_line(runner: FlaskCliRunner, session: Session) -> None:
    # users disable of an unknown address: the service's UserNotFound, mapped by the group (exit 2, one line)
    result = runner.invoke(args=["users", "disable", "nobody@desk.example"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == ["Error: no staff account with that email address"]


@pytest.mark.parametrize(
    "url",
    [
        "/audit/?before=99999999999999999999",
        "/audit/?before=9223372036854775808",
        "/audit/?controller_id=99999999999999999999",
        "/controllers/?page=99999999999999999999",
        "/controllers/?page=%C2%B2",
    ],
)
def test_a_number_too_large_for_an_id_in_a_query_is_not_a_server_error(client: FlaskClient, auth: AuthActions, url: str) -> None:
    # Found trying the desk as an attacker: each of these was a 500 (OverflowError from the database driver).
    auth.login("admin")
    assert client.get(url).status_code < 500


def test_a_number_too_large_for_an_id_in_a_form_is_not_a_server_error(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    from tests.dsr.test_dsr_service import make_dsr

    dsr = make_dsr(session, None)
    session.commit()
    auth.login("privacy_officer")
    response = client.post(f"/dsr/{dsr.id}/route", data={"controller_id": "99999999999999999999"})
    assert response.status_code < 500


@pytest.mark.parametrize(
    "args",
    [
        ["controllers", "edit", "99999999999999999999", "--name", "X"],
        ["subject-data", "resume", "99999999999999999999"],
        ["mail", "requeue-outbox", "99999999999999999999"],
        ["retention", "hold", "lift", "99999999999999999999"],
    ],
)
def test_an_id_too_large_on_the_command_line_is_a_usage_error(runner: FlaskCliRunner, args: list[str]) -> None:
    result = runner.invoke(args=args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "is not in the range" in result.output
