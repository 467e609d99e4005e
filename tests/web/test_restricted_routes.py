"""Issue 12 item 10: a restriction (GDPR Art. 18/21) holds on every route that takes a ticket, message, attachment or DSR id.

The walk is over the app's URL map, so a new route taking such an id is walked too
(tests/route_matrix.OBJECT_ARGS names the arguments).
"""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.dsr.models import Dsr, DsrSuggestion, Instruction
from app.dsr.requests import suggest
from app.subject_data import restrict
from app.tickets.models import Attachment, Message
from tests.conftest import AuthActions
from tests.factories import TEST_PRINCIPAL
from tests.route_matrix import OBJECT_ARGS, ROUTE_MATRIX
from tests.subject_data.support import CANARY_EMAIL, CANARY_NAME, Scene, instruct, scene

NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)


def object_routes(app: Flask) -> list[tuple[str, str, str, frozenset[str]]]:
    """(endpoint, method, rule, its object arguments) for every route taking an object id."""
    found = []
    for rule in app.url_map.iter_rules():
        args = frozenset(rule.arguments) & OBJECT_ARGS
        if not args:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, rule.rule, args))
    return found


def restricted_scene(session: Session) -> tuple[Scene, dict[str, int]]:
    sc = scene(session)
    instruct(session, sc, "restrict")
    row = restrict.restrict(session, sc.dsr.id, sc.controller.id, "restriction", by=TEST_PRINCIPAL, now=NOW)
    ticket = sc.tickets[0]
    suggestion = suggest(session, ticket, ["access"], ["en"], 5, now=NOW)
    ids = {
        "ticket_id": ticket.id,
        "dsr_id": sc.dsr.id,
        "restriction_id": row.id,
        "suggestion_id": suggestion.id,
        "instruction_id": session.scalars(select(Instruction.id).where(Instruction.dsr_id == sc.dsr.id)).first() or 0,
        "attachment_id": session.scalars(select(Attachment.id).join(Message).where(Message.ticket_id == ticket.id)).first() or 0,
        "message_id": session.scalars(select(Message.id).where(Message.ticket_id == ticket.id)).first() or 0,
        "run_id": 0,
        "export_id": 0,
    }
    session.flush()
    return sc, ids


def test_every_object_route_is_in_the_matrix(app: Flask) -> None:
    routes = object_routes(app)
    assert len(routes) >= 20
    assert all((endpoint, method) in ROUTE_MATRIX for endpoint, method, _, _ in routes)


@pytest.mark.parametrize("role", ["agent", "privacy_officer", "admin", "auditor"])
def test_restricted_objects_on_every_route(app: Flask, client: FlaskClient, auth: AuthActions, session: Session, role: str) -> None:
    # Given a ticket restricted under the controller's confirmed instruction, and a user of `role` who works for that controller
    sc, ids = restricted_scene(session)
    auth.login(role, controllers=[sc.controller] if role == "agent" else [])
    for endpoint, method, rule, args in object_routes(app):
        url = rule
        for name in args:
            url = url.replace(f"<int:{name}>", str(ids[name]))
        url = url.replace("<int:controller_id>", str(sc.controller.id))
        before = session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
        # When they call the route with the restricted object (an empty form for a POST)
        response = client.open(url, method=method, data={})
        body = response.get_data(as_text=True)
        where = f"{role} {method} {url} ({endpoint})"
        # Then nobody gets an error, and only a privacy officer sees the data, every time on record
        assert response.status_code < 500, where
        if role == "privacy_officer":
            if method == "GET" and response.status_code == 200 and (CANARY_EMAIL in body or CANARY_NAME in body):
                logged = session.scalars(select(AuditEvent).where(AuditEvent.seq > before, AuditEvent.action == "subject_data.restricted_access")).all()
                assert logged, f"unlogged access: {where}"
        else:
            assert response.status_code in (403, 404), where
            assert CANARY_EMAIL not in body and CANARY_NAME not in body, where
    # And no agent POST left a mark: the suggestion is still open, nothing new was recorded for the ticket
    if role != "privacy_officer":
        assert session.scalar(select(DsrSuggestion.state).where(DsrSuggestion.id == ids["suggestion_id"])) == "open"


def test_a_bare_post_records_no_empty_request(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    # Issue 12 item 12: a bare POST /dsr/new/<id> created a DSR with no type and no subject, and forwarded it.
    sc = scene(session)
    before = session.scalar(select(Dsr.id).order_by(Dsr.id.desc()).limit(1))
    auth.login("agent", controllers=[sc.controller])
    ticket = sc.bystander
    assert client.post(f"/dsr/new/{ticket.id}", data={}).status_code == 422
    assert client.post(f"/dsr/new/{ticket.id}", data={"types": "access", "subject_email": " ", "subject_name": ""}).status_code == 422
    assert client.post(f"/dsr/new/{ticket.id}", data={"subject_email": "bea@bystander.example"}).status_code == 422
    assert session.scalar(select(Dsr.id).order_by(Dsr.id.desc()).limit(1)) == before
    assert client.post(f"/dsr/new/{ticket.id}", data={"types": "access", "subject_email": "bea@bystander.example"}).status_code == 302
