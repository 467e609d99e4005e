"""The DSR pages as a privacy officer uses them: dashboard with the chart, a request, instructions, the refused reply."""

from __future__ import annotations

import datetime as dt
import re

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.db import utcnow
from app.dsr.forward import forward
from app.dsr.models import Dsr, Instruction
from app.dsr.requests import DsrInput, create_from_ticket
from app.dsr.sweeper import sweep
from app.mail.models import OutboxEmail
from tests.conftest import AuthActions
from tests.dsr.test_dsr_service import SETTINGS, make_ticket
from tests.factories import TEST_PRINCIPAL, make_controller, make_instruction


def recent_dsr(session: Session, controller_id: int | None, *, hours_ago: float, email: str = "jane@subject.example") -> Dsr:
    now = utcnow()
    ticket = make_ticket(session, controller_id, email)
    ticket.messages[0].created_at = now - dt.timedelta(hours=hours_ago)
    session.flush()
    data = DsrInput(types=["access"], subject_email=email, subject_name="Jane Doe", request_text="Send me a copy.")
    return create_from_ticket(session, ticket.id, data, by=TEST_PRINCIPAL, now=now)


def test_the_dashboard_orders_by_time_left_colours_urgency_and_draws_the_chart(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    relaxed = recent_dsr(session, controller.id, hours_ago=1)
    urgent = recent_dsr(session, controller.id, hours_ago=21)
    triage = recent_dsr(session, None, hours_ago=3, email="nobody@unknown.example")
    auth.login("privacy_officer")
    page = client.get("/dsr/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    section = html.split('id="unforwarded"')[1].split("</table>")[0]
    assert section.index(str(urgent.reference)) < section.index(str(relaxed.reference))
    # A triage request is listed once, under Triage (issue 16 item 4)
    assert str(triage.reference) not in section
    assert re.search(rf'class="urgency-escalated">\s*<td[^>]*><a href="/dsr/{urgent.id}"', html)
    assert str(triage.reference) in html.split('id="triage"')[1].split("</table>")[0]
    assert "<svg" in html and "bar-received" in html and "<script" not in html
    assert "within 4 hours of the deadline, or past it, not forwarded" in html  # the dashboard's own banner
    assert "jane@subject.example" not in html  # the dashboard lists references, not people


def test_agents_and_auditors_cannot_open_the_dashboard(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    auth.login("agent")
    assert client.get("/dsr/").status_code == 403


def test_marking_a_ticket_as_a_dsr_starts_the_clock_at_the_first_message(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    ticket = make_ticket(session, controller.id, "max@subject.example")
    first = ticket.messages[0].created_at
    auth.login("privacy_officer")
    form = client.get(f"/dsr/new/{ticket.id}")
    assert form.status_code == 200 and "max@subject.example" in form.get_data(as_text=True)
    response = client.post(f"/dsr/new/{ticket.id}", data={"types": ["erasure", "access"], "subject_email": "max@subject.example", "request_text": "Delete me."})
    assert response.status_code == 302
    dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == ticket.id)).one()
    assert dsr.types == ["access", "erasure"] and dsr.received_at == first and dsr.controller_ids == [controller.id]
    bad = client.post(f"/dsr/new/{ticket.id}", data={"types": ["nonsense"]})
    assert bad.status_code == 422


def test_a_reply_without_instruction_is_refused_audited_and_nothing_is_queued(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    dsr = recent_dsr(session, controller.id, hours_ago=2)
    auth.login("privacy_officer")
    before = session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "reply"))
    response = client.post(f"/dsr/{dsr.id}/reply", data={"body_text": "We found your data."})
    # A refusal (app.errors): back to the request's page, the gate's reason flashed
    assert response.status_code == 303 and response.headers["Location"] == f"/dsr/{dsr.id}"
    assert "no confirmed controller instruction authorises this message" in client.get(f"/dsr/{dsr.id}").get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "reply")) == before
    assert (
        session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "dsr.reply_refused", AuditEvent.target_id == str(dsr.id))) == 1
    )


def test_confirm_an_instruction_then_the_instructed_reply_goes_out(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@ui-ctl.example"])
    dsr = recent_dsr(session, controller.id, hours_ago=2)
    forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=utcnow())
    good = make_instruction(session, dsr, controller_id=controller.id, sender_email="dpo@ui-ctl.example", reply_text="Reply: We hold no data about you.")
    forged = make_instruction(session, dsr, controller_id=controller.id, sender_email="mallory@evil.example", reply_text="Send everything.", raw=b"y")
    auth.login("privacy_officer")
    page = client.get(f"/dsr/{dsr.id}").get_data(as_text=True)
    assert f"/dsr/{dsr.id}/instructions/{good.id}/confirm" in page
    assert f"/dsr/{dsr.id}/instructions/{forged.id}/confirm" not in page and "cannot be confirmed" in page
    client.post(f"/dsr/{dsr.id}/instructions/{forged.id}/confirm", data={"decision": "no_action"})
    session.expire_all()
    assert session.get(Instruction, forged.id).state == "unverified"  # type: ignore[union-attr]
    client.post(f"/dsr/{dsr.id}/instructions/{good.id}/confirm", data={"decision": "respond", "response_text": "We hold no data about you."})
    session.expire_all()
    assert session.get(Instruction, good.id).state == "confirmed"  # type: ignore[union-attr]
    # The desk sends the instructed text itself (issue 12 item 3): the form names the instruction
    response = client.post(f"/dsr/{dsr.id}/reply", data={"instruction_id": good.id})
    assert response.status_code == 302
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "reply", OutboxEmail.related_id == dsr.ticket_id)) == 1


def test_flagging_an_instruction_emails_the_controller(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@flag-ctl.example"])
    dsr = recent_dsr(session, controller.id, hours_ago=2)
    forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=utcnow())
    item = make_instruction(session, dsr, controller_id=controller.id, sender_email="dpo@flag-ctl.example", reply_text="Publish her data.")
    auth.login("privacy_officer")
    client.post(f"/dsr/{dsr.id}/instructions/{item.id}/flag", data={"reason": "Publishing a subject's data has no legal basis."})
    rows = list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_instruction_flag")))
    assert [r.to_addr for r in rows] == ["dpo@flag-ctl.example"]
    assert str(dsr.reference) in rows[0].subject


def test_a_missed_deadline_asks_for_a_reason(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    dsr = recent_dsr(session, None, hours_ago=30, email="late@unknown.example")
    sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=utcnow())
    auth.login("privacy_officer")
    assert "Missed deadline" in client.get(f"/dsr/{dsr.id}").get_data(as_text=True)
    client.post(f"/dsr/{dsr.id}/missed-reason", data={"reason": "The mail server was down over the weekend."})
    session.expire_all()
    assert session.get(Dsr, dsr.id).missed_reason == "The mail server was down over the weekend."  # type: ignore[union-attr]


def test_a_request_past_due_unforwarded_shows_missed_on_the_dashboard(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    # Given a request in triage received 30 hours ago that the sweeper has marked
    late = recent_dsr(session, None, hours_ago=30, email="late@unknown.example")
    sweep(session, settings=SETTINGS, by=TEST_PRINCIPAL, now=utcnow())
    # When a privacy officer opens the dashboard
    auth.login("privacy_officer")
    html = client.get("/dsr/").get_data(as_text=True)
    # Then its row says it missed the deadline (without a reason yet), in the missed colour, and nothing says "breached"
    row = html.split(f'href="/dsr/{late.id}"')[0].rsplit("<tr", 1)[1] + html.split(f'href="/dsr/{late.id}"')[1].split("</tr>")[0]
    assert 'class="urgency-missed"' in row
    assert '<span class="badge badge-missed">missed, reason missing</span>' in row
    assert "1 missed deadline without a recorded reason." in html
    assert "breached" not in html.lower()
