"""Issue 15 item 1 without SMTP: the delivery hook settles a forward from its outbox rows, and the request page shows each contact's state."""

from __future__ import annotations

import datetime as dt

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.dsr.forward import forward
from app.dsr.models import DsrEvent
from app.mail import delivery
from app.mail.models import OutboxEmail
from app.mail.outcomes import HOOKS
from tests.conftest import AuthActions
from tests.dsr.test_dsr_service import SETTINGS, T0, make_dsr, outbox_rows
from tests.factories import TEST_PRINCIPAL, make_controller, make_user

REFUSAL = "SMTP server refused the recipient: 550 5.1.1 <<address>>: Recipient address rejected"


def refuse(session: Session, row: OutboxEmail, *, now: dt.datetime) -> None:
    """What the outbox does when the relay answers 550: the row fails for good and the owner is told."""
    session.execute(update(OutboxEmail).where(OutboxEmail.id == row.id).values(state="failed", last_error=REFUSAL, updated_at=now))
    delivery.notify(session, row.id, "failed", REFUSAL, now=now, permanent=True)


def test_the_dsr_registers_its_delivery_hook(app: Flask) -> None:
    assert "dsr.forward_delivery" in HOOKS.names


def test_a_refused_forward_is_shown_per_contact_escalated_with_the_answer_and_taken_back_by_nothing(
    client: FlaskClient, auth: AuthActions, session: Session
) -> None:
    officer = make_user(session, "privacy_officer")
    controller = make_controller(session, dsr_contacts=["dpo@c.example", "legal@c.example"], breach_contacts=["sec@c.example"])
    dsr = make_dsr(session, controller.id)
    forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2))
    first, second = outbox_rows(session, "dsr_forward")
    # When the relay refuses the first contact
    refuse(session, first, now=T0 + dt.timedelta(hours=2, seconds=3))
    session.refresh(dsr)
    # Then the forward is still queued (the other contact may yet accept), the officers are alerted at once
    assert dsr.forwards[0].state == "queued" and dsr.forwarded_at is None and dsr.escalated_at == T0 + dt.timedelta(hours=2, seconds=3)
    alerts = [r for r in outbox_rows(session, "dsr_escalation") if r.to_addr == officer.email]
    assert len(alerts) == 1 and "550 5.1.1" in (alerts[0].body_text or "") and "sec@c.example" in (alerts[0].body_text or "")
    # When the relay refuses the second contact too, the forward is refused and a second alert goes out
    refuse(session, second, now=T0 + dt.timedelta(hours=2, seconds=4))
    session.refresh(dsr)
    assert dsr.forwards[0].state == "refused" and dsr.state == "awaiting_forward"
    assert len([r for r in outbox_rows(session, "dsr_escalation") if r.to_addr == officer.email]) == 2
    codes = list(session.scalars(select(DsrEvent.code).where(DsrEvent.dsr_id == dsr.id)))
    assert codes.count("forward_refused") == 2
    # And the request page says so, contact by contact, with the relay's answer
    auth.login("privacy_officer")
    html = client.get(f"/dsr/{dsr.id}").get_data(as_text=True)
    assert "refused by the relay for every contact" in html and html.count("delivery failed") == 2 and "550 5.1.1" in html
    assert "not yet" in html


def test_a_queued_forward_reads_forward_queued_until_the_relay_accepts(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    dsr = make_dsr(session, controller.id)
    forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2))
    auth.login("privacy_officer")
    html = client.get(f"/dsr/{dsr.id}").get_data(as_text=True)
    assert "forward queued: not yet accepted by the relay" in html and "queued for sending" in html


def accept(session: Session, row: OutboxEmail, *, at: dt.datetime) -> None:
    """What the outbox does when the relay accepts a row at `at`: the row is sent and the owner told, in one transaction."""
    session.execute(update(OutboxEmail).where(OutboxEmail.id == row.id).values(state="sent", sent_at=at, updated_at=at))
    delivery.notify(session, row.id, "sent", "250 2.0.0 Ok", now=at)


def test_forwarded_at_is_the_first_acceptance_even_when_its_commit_comes_second(session: Session) -> None:
    # Given a forward to two contacts, sent at once by two workers: the relay accepted the first at 02:00:01,
    # the second at 02:00:02, but the second worker's transaction settled first
    controller = make_controller(session, dsr_contacts=["dpo@c.example", "legal@c.example"])
    dsr = make_dsr(session, controller.id)
    forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(hours=2))
    first, second = outbox_rows(session, "dsr_forward")
    earlier, later = T0 + dt.timedelta(hours=2, seconds=1), T0 + dt.timedelta(hours=2, seconds=2)
    accept(session, second, at=later)
    session.refresh(dsr)
    assert dsr.forwarded_at == later
    # When the earlier acceptance settles
    accept(session, first, at=earlier)
    session.refresh(dsr)
    # Then the request was forwarded when the relay first accepted it, and the chart's seconds agree
    assert dsr.forwarded_at == earlier and dsr.forwards[0].forwarded_at == earlier
    assert dsr.forward_seconds == int((earlier - dsr.received_at).total_seconds())
    assert list(session.scalars(select(DsrEvent.code).where(DsrEvent.dsr_id == dsr.id))).count("forward_accepted") == 1
