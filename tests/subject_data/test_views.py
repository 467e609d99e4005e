"""Execution pages: the DSR page panel, an export downloaded once through its token, restricted tickets, closing."""

from __future__ import annotations

import json
import re

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.mail.models import OutboxEmail
from app.subject_data.models import SubjectExport, SubjectRun
from tests.conftest import AuthActions
from tests.subject_data.support import CANARY_EMAIL, CANARY_NAME, drain, instruct, scene

TOKEN = re.compile(r'name="token" value="([^"]+)"')


def test_an_export_is_queued_under_the_instruction_and_downloaded_once(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    officer = auth.login("privacy_officer")
    sc = scene(session)
    page = client.get(f"/dsr/{sc.dsr.id}")
    assert page.status_code == 200 and "The subject's data" in page.get_data(as_text=True)
    # Without the controller's instruction the button is disabled and the server refuses anyway.
    refused = client.post(f"/subject-data/dsr/{sc.dsr.id}/run", data={"kind": "export", "controller_id": sc.controller.id}, follow_redirects=True)
    assert "no confirmed instruction" in refused.get_data(as_text=True) and session.scalar(select(SubjectRun.id)) is None
    instruct(session, sc, "provide_data")
    response = client.post(f"/subject-data/dsr/{sc.dsr.id}/run", data={"kind": "export", "controller_id": sc.controller.id})
    assert response.status_code == 303
    run = session.scalars(select(SubjectRun)).one()
    drain(session, run.id)
    report = client.get(f"/subject-data/runs/{run.id}").get_data(as_text=True)
    assert "JSON" in report and "PDF" in report
    files = {e.format: e for e in session.scalars(select(SubjectExport).where(SubjectExport.run_id == run.id))}
    # Step 1: a POST issues the token onto a no-referrer, no-store page; the token is in a form field, never a URL.
    issued = client.post(f"/subject-data/exports/{files['json'].id}/token")
    assert issued.status_code == 200 and issued.mimetype == "text/html"
    assert issued.headers["Referrer-Policy"] == "no-referrer" and "no-store" in issued.headers["Cache-Control"]
    html = issued.get_data(as_text=True)
    token = TOKEN.search(html).group(1)  # type: ignore[union-attr]
    assert 'action="/subject-data/download"' in html and token not in re.sub(TOKEN, "", html)
    # Step 2: the form posts it back; the file comes once.
    download = client.post("/subject-data/download", data={"token": token})
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert "attachment" in download.headers["Content-Disposition"] and CANARY_EMAIL not in download.headers["Content-Disposition"]
    data = json.loads(download.get_data())
    assert data["format_version"] == 1 and data["dsr"]["reference"] == sc.dsr.reference
    assert data["counts"] == {"tickets": 2, "messages": 8, "attachments": 2, "restricted_tickets_excluded": 0}
    assert len(data["tickets"]) == 2 and len(data["messages"]) == 8 and data["subject"]["email"] == CANARY_EMAIL
    assert any(a["content_base64"] for m in data["messages"] for a in m["attachments"])
    again = client.post("/subject-data/download", data={"token": token})
    assert again.status_code == 410 and b"already been used" in again.get_data()
    assert client.post("/subject-data/download", data={"token": token[:-2] + "xx"}).status_code == 400
    pdf_token = TOKEN.search(client.post(f"/subject-data/exports/{files['pdf'].id}/token").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    pdf = client.post("/subject-data/download", data={"token": pdf_token})
    assert pdf.status_code == 200 and pdf.get_data().startswith(b"%PDF")
    downloads = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_data.export_download")).all()
    assert len(downloads) == 2 and all(e.actor_id == officer.id for e in downloads)


def test_restricted_data_is_hidden_from_agents_shown_to_officers_with_every_access_logged(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    sc = scene(session)
    instruct(session, sc, "restrict")
    auth.login("privacy_officer")
    assert client.post(f"/subject-data/dsr/{sc.dsr.id}/restrict", data={"controller_id": sc.controller.id, "kind": "restriction"}).status_code == 303
    ticket_id = sc.tickets[0].id
    assert client.get(f"/tickets/{ticket_id}").status_code == 200
    logged = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_data.restricted_access", AuditEvent.target_id == str(ticket_id))).all()
    assert len(logged) == 1
    # A reply from a restricted ticket is refused.
    client.post(f"/tickets/{ticket_id}/reply", data={"reply": "Hello", "status_after": "waiting"})
    assert session.scalar(select(OutboxEmail.id).where(OutboxEmail.kind == "reply")) is None
    auth.logout()
    auth.login("agent", controllers=[sc.controller])
    hidden = client.get(f"/tickets/{ticket_id}")
    assert hidden.status_code == 403 and hidden.mimetype == "text/html" and CANARY_NAME not in hidden.get_data(as_text=True)
    assert client.get(f"/tickets/{sc.bystander.id}").status_code == 200
    # Lists mask them too: the queue shows the reference and "restricted", not the subject or the address.
    queue = client.get(f"/tickets/queue/{sc.controller.id}").get_data(as_text=True)
    assert sc.tickets[0].reference in queue and "restricted" in queue
    assert CANARY_EMAIL not in queue and CANARY_NAME not in queue and "bea@bystander.example" in queue


def test_closing_records_the_outcome_and_notifies_the_controller(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    sc = scene(session)
    auth.login("privacy_officer")
    assert client.post(f"/subject-data/dsr/{sc.dsr.id}/close").status_code == 303
    notice = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_completion")).one()
    assert notice.to_addr == "dpo@ctl-subject.example" and "no action" in notice.body_text
    session.refresh(sc.dsr)
    assert sc.dsr.outcome == "no_action" and not sc.dsr.is_open
