"""Issue 12 item 11: refusals (403, out-of-scope 404, CSRF) are security events, logged without personal data and counted."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.errors import REFUSED
from tests.conftest import AuthActions
from tests.factories import make_controller
from tests.subject_data.support import CANARY_EMAIL, instruct, scene


def refusals(session: Session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == REFUSED).order_by(AuditEvent.seq)))


def test_forbidden_out_of_scope_and_restricted_are_logged_and_counted(
    client: FlaskClient, auth: AuthActions, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.errors")
    sc = scene(session)
    other = make_controller(session)
    instruct(session, sc, "restrict")
    from app.subject_data import restrict
    from tests.factories import TEST_PRINCIPAL
    from tests.subject_data.support import T0

    restrict.restrict(session, sc.dsr.id, sc.controller.id, "restriction", by=TEST_PRINCIPAL, now=T0)
    agent = auth.login("agent", controllers=[sc.controller])
    # A page of another role, a controller out of scope, a restricted ticket
    assert client.get("/admin/users").status_code == 403
    assert client.get(f"/controllers/{other.id}/view").status_code == 404
    assert client.get(f"/tickets/{sc.tickets[0].id}").status_code == 403
    # An unknown URL is not a refusal of anything (no route matched)
    assert client.get("/no/such/page").status_code == 404
    events = refusals(session)
    assert [(e.details["status"], e.details["reason"], e.details["endpoint"]) for e in events] == [
        (403, "forbidden", "admin.users"),
        (404, "out_of_scope", "controllers.show"),
        (403, "restricted", "tickets.show"),
    ]
    assert all(e.actor_kind == "staff" and e.actor_id == agent.id for e in events)
    text = " ".join(str(e.details) for e in events) + caplog.text
    assert CANARY_EMAIL not in text and agent.email not in text and str(sc.tickets[0].id) not in str([e.details for e in events])
    assert caplog.text.count("refused") == 3 and f"staff:{agent.id}" in caplog.text
    # Counted on the admin page
    auth.logout()
    auth.login("admin")
    page = client.get("/admin/users").get_data(as_text=True)
    assert "Refused requests" in page and "forbidden: <strong>1</strong>" in page and "out of scope: <strong>1</strong>" in page
    assert "restricted: <strong>1</strong>" in page


def test_a_csrf_failure_is_logged(app: Flask, client: FlaskClient, session: Session) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post("/login", data={"email": "x@desk.example", "password": "y"}).status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    [event] = refusals(session)
    assert event.details["reason"] == "csrf" and event.details["endpoint"] == "auth.login" and event.actor_kind == "system"
