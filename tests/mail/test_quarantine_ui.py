"""The quarantine page: privacy officers list refused mail (no content shown), release it as a ticket or delete it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.db import utcnow
from app.mail import quarantine
from app.principal import Principal
from app.tickets.models import Ticket
from tests.conftest import AuthActions

BY = Principal.system("tests")
RAW = (
    b"From: Pat Example <pat@customer.example>\r\n"
    b"To: privacy@desk.example\r\n"
    b"Subject: Secret subject line\r\n"
    b"Message-ID: <held-1@customer.example>\r\n"
    b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
    b"\r\n"
    b"The body says something private.\r\n"
)


def held(session: Session, raw: bytes = RAW, reason: str = "loop") -> quarantine.QuarantinedMessage:
    return quarantine.hold(session, raw, reason=reason, detail="looks like a loop", source="pipe", by=BY, now=utcnow())


def actions(session: Session, item_id: int) -> list[str]:
    rows = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "mail_quarantine", AuditEvent.target_id == str(item_id)))
    return list(rows)


def test_list_shows_reason_size_and_time_but_never_content(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    item = held(session)
    auth.login("privacy_officer")
    html = client.get("/quarantine/").get_data(as_text=True)
    assert f"<td>{item.id}</td>" in html and "loop" in html and f"{len(RAW):,} bytes" in html
    assert "Secret subject line" not in html and "something private" not in html and "pat@customer.example" not in html


def test_delete_destroys_the_original_and_is_audited(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    item = held(session)
    auth.login("privacy_officer")
    assert client.post(f"/quarantine/{item.id}/delete").status_code == 303
    session.expire_all()
    fresh = quarantine.get(session, item.id)
    assert fresh.state == "deleted" and fresh.raw_blob_id is None
    assert "quarantine.delete" in actions(session, item.id)
    assert f"<td>{item.id}</td>" not in client.get("/quarantine/").get_data(as_text=True)
    assert f"<td>{item.id}</td>" in client.get("/quarantine/?state=deleted").get_data(as_text=True)
    # A second decision on the same message finds nothing held.
    assert client.post(f"/quarantine/{item.id}/release").status_code == 404


def test_release_ingests_the_message_as_a_ticket(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    item = held(session)
    auth.login("privacy_officer")
    response = client.post(f"/quarantine/{item.id}/release", follow_redirects=True)
    assert response.status_code == 200 and "released as ticket" in response.get_data(as_text=True)
    session.expire_all()
    fresh = quarantine.get(session, item.id)
    assert fresh.state == "released" and fresh.ticket_id is not None
    ticket = session.get(Ticket, fresh.ticket_id)
    assert ticket is not None and ticket.requester_email == "pat@customer.example"
    assert "quarantine.release" in actions(session, item.id)
    assert "The body says something private." in client.get(f"/tickets/{ticket.id}").get_data(as_text=True)


@pytest.mark.parametrize("role", ["agent", "admin", "auditor"])
def test_only_privacy_officers_handle_quarantine(client: FlaskClient, auth: AuthActions, session: Session, role: str) -> None:
    item = held(session)
    auth.login(role)
    assert client.get("/quarantine/").status_code == 403
    assert client.post(f"/quarantine/{item.id}/release").status_code == 403
    assert client.post(f"/quarantine/{item.id}/delete").status_code == 403
    session.expire_all()
    assert quarantine.get(session, item.id).state == "held"


def test_unknown_item_and_get_are_refused(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    auth.login("privacy_officer")
    assert client.post("/quarantine/999999/delete").status_code == 404
    assert client.get("/quarantine/1/delete").status_code == 405
    assert client.get("/quarantine/?state=bogus").status_code == 400
    assert client.get("/quarantine/?before=99999999999999999999").status_code == 400
    assert client.post("/quarantine/99999999999999999999/delete").status_code == 404
