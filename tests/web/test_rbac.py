"""Authorization: every route against the route x role matrix, per-controller scope (IDOR -> 404), the navigation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter, Rule

from app import create_app
from app.auth import rbac
from app.auth.gate import endpoint_permission
from app.auth.models import ROLES
from app.extensions import db
from app.jobs.broker import app_context
from tests.conftest import AuthActions, make_config
from tests.factories import make_controller
from tests.route_matrix import LOGIN, PUBLIC, ROUTE_MATRIX

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def routes(app: Flask) -> list[tuple[str, str, Rule]]:
    return sorted(
        ((rule.endpoint, method, rule) for rule in app.url_map.iter_rules() for method in (rule.methods or set()) - IGNORED_METHODS),
        key=lambda item: (item[0], item[1]),
    )


def matrix_problems(app: Flask) -> list[str]:
    """Every (endpoint, method) without a matrix line, or whose declared permission disagrees with it."""
    problems = []
    for endpoint, method, _rule in routes(app):
        expected = ROUTE_MATRIX.get((endpoint, method))
        declared = endpoint_permission(app, endpoint)
        if expected is None:
            problems.append(f"{endpoint} {method}: no entry in tests/route_matrix.py")
        elif declared is None:
            problems.append(f"{endpoint} {method}: the view declares no permission (@rbac.require / @rbac.public / @rbac.login_step)")
        elif expected in (PUBLIC, LOGIN):
            if declared != expected:
                problems.append(f"{endpoint} {method}: matrix says {expected}, view declares {declared}")
        else:
            allowed = {role for role in ROLES if rbac.role_can(role, declared)}
            if declared in (rbac.PUBLIC, rbac.LOGIN) or allowed != set(expected):
                problems.append(f"{endpoint} {method}: matrix allows {sorted(expected)}, view's {declared!r} allows {sorted(allowed)}")
    return problems


def url_for_rule(rule: Rule) -> str:
    values = {name: 999999 if isinstance(rule._converters[name], IntegerConverter) else "x" for name in rule.arguments}
    url = rule.build(values, append_unknown=False)
    assert url is not None
    return url[1]


def test_every_route_has_a_matching_matrix_entry(app: Flask) -> None:
    assert matrix_problems(app) == []


def test_a_route_without_a_declaration_fails_the_matrix_and_is_closed(app: Flask, tmp_path: Path, database_url: str) -> None:
    other = create_app(make_config(database_url, tmp_path))
    try:

        @other.get("/undeclared")
        def undeclared() -> str:
            return "secret"

        assert any("undeclared" in p and "no entry" in p for p in matrix_problems(other))
        response = other.test_client().get("/undeclared")
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    finally:
        db.state(other).engine.dispose()
        app_context.attach(app)


def test_visitors_who_are_not_logged_in_are_sent_to_login(app: Flask, client: FlaskClient) -> None:
    for endpoint, method, rule in routes(app):
        if ROUTE_MATRIX.get((endpoint, method)) in (PUBLIC, LOGIN):
            continue
        response = client.open(url_for_rule(rule), method=method)
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.headers["Location"].startswith("/login"), (endpoint, method)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_its_matrix_routes(app: Flask, client: FlaskClient, auth: AuthActions, role: str) -> None:
    auth.login(role)
    for endpoint, method, rule in routes(app):
        expected = ROUTE_MATRIX[(endpoint, method)]
        if expected in (PUBLIC, LOGIN):
            continue
        response = client.open(url_for_rule(rule), method=method)
        location = response.headers.get("Location", "")
        if role in expected:
            # Allowed: the page answers (an unknown id is a 404, an empty form a 4xx), never 403 or back to login.
            assert response.status_code != 403 and not location.startswith("/login"), (role, endpoint, method, response.status_code)
        else:
            assert response.status_code == 403, (role, endpoint, method, response.status_code)


def _without_csrf(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', html)


def test_an_agent_sees_only_assigned_controllers_and_others_are_404(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    mine = make_controller(session, name="Assigned Co")
    theirs = make_controller(session, name="Unassigned Co")
    auth.login("agent", controllers=[mine])
    listing = client.get("/controllers/").get_data(as_text=True)
    assert "Assigned Co" in listing and "Unassigned Co" not in listing
    assert client.get(f"/controllers/{mine.id}/view").status_code == 200
    other = client.get(f"/controllers/{theirs.id}/view")
    missing = client.get("/controllers/999999/view")
    # Another controller's object looks exactly like one that does not exist.
    assert other.status_code == missing.status_code == 404
    # (The logout form's CSRF token is signed with the second it was issued in: the only part allowed to differ.)
    assert _without_csrf(other.get_data(as_text=True)) == _without_csrf(missing.get_data(as_text=True))
    assert "Unassigned Co" not in other.get_data(as_text=True)


def test_privacy_officer_and_admin_see_every_controller(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    a = make_controller(session, name="First Scope Co")
    b = make_controller(session, name="Second Scope Co")
    auth.login("privacy_officer")
    listing = client.get("/controllers/?size=200").get_data(as_text=True)
    assert "First Scope Co" in listing and "Second Scope Co" in listing
    assert client.get(f"/controllers/{a.id}/view").status_code == 200
    assert client.get(f"/controllers/{b.id}/view").status_code == 200


def test_navigation_shows_only_what_the_role_may_open(client: FlaskClient, auth: AuthActions) -> None:
    auth.login("auditor")
    nav = client.get("/").get_data(as_text=True)
    assert 'href="/audit/"' in nav and 'href="/controllers/"' not in nav and 'href="/admin/users"' not in nav
    auth.logout()
    auth.login("admin")
    nav = client.get("/").get_data(as_text=True)
    assert 'href="/admin/users"' in nav and 'href="/controllers/"' in nav and 'href="/audit/"' not in nav
