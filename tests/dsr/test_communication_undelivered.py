"""Issue 11 item 4 ("the same for any later notice kind"): a communication whose forward did not reach the controller
shows in the escalation banner until a privacy officer records how it was passed on (Pexgle §11.2: immediately)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.dsr.communication import KIND
from app.dsr.communication_delivery import NotPassedOn, passed_on
from app.mail.inbound import IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from app.principal import Principal
from app.tickets.models import Message, Ticket
from tests.conftest import AuthActions
from tests.dsr.test_dsr_delivery import accept, refuse
from tests.factories import TEST_PRINCIPAL, make_controller

SETTINGS = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
NOW = dt.datetime(2026, 11, 30, 10, 5, tzinfo=dt.UTC)
BANNER = "1 complaint, authority letter or legal notice did not reach its controller."
WHAT = "Phoned the controller's DPO, Dana Vogt, on +49 30 1234567"


def complaint(session: Session) -> tuple[Ticket, list[OutboxEmail]]:
    """Acme (two DSR contacts) and a complaint to the privacy address, forwarded to both (queued)."""
    controller = make_controller(session, name="Acme", domains=["acme.example"], dsr_contacts=["dpo@acme.example", "legal@acme.example"])
    raw = (
        b"From: Ann <ann@acme.example>\r\nTo: privacy@desk.example\r\nSubject: Formal complaint\r\nMessage-ID: <cu1@acme.example>\r\n\r\n"
        b"I wish to complain about how my support ticket was handled by your agent.\r\n"
    )
    outcome = ingest_message(session, raw, settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW)
    assert outcome.claim is not None and outcome.claim.code == "communication" and outcome.ticket_id is not None
    ticket = session.get(Ticket, outcome.ticket_id)
    assert ticket is not None and ticket.controller_id == controller.id
    rows = list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == KIND).order_by(OutboxEmail.id)))
    assert [r.to_addr for r in rows] == ["dpo@acme.example", "legal@acme.example"]
    return ticket, rows


def note_codes(session: Session, ticket: Ticket) -> list[str]:
    notes = session.scalars(select(Message.notes).where(Message.ticket_id == ticket.id, Message.direction == "note").order_by(Message.id))
    return [n[0].get("code", "") for n in notes if n]


def events(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_a_refused_forward_marks_the_ticket_once_and_a_later_delivery_clears_it(session: Session) -> None:
    # Given a complaint forwarded to both of Acme's DSR contacts
    ticket, (dpo, legal) = complaint(session)
    # When the relay refuses the first, and later the second
    refuse(session, dpo, now=NOW + dt.timedelta(minutes=1))
    refuse(session, legal, now=NOW + dt.timedelta(minutes=2))
    # Then the ticket keeps the first time (like Dsr.escalated_at)
    assert ticket.communication_undelivered_at == NOW + dt.timedelta(minutes=1)
    # When a later forward of a communication on the ticket is delivered, the mark is cleared, noted and audited
    later = NOW + dt.timedelta(minutes=9)
    again = enqueue_email(
        session,
        to="dpo@acme.example",
        subject="Fwd",
        body_text="The complaint",
        kind=KIND,
        related_type="ticket",
        related_id=ticket.id,
        by=TEST_PRINCIPAL,
        now=later,
    )
    accept(session, again, at=NOW + dt.timedelta(minutes=10))
    assert ticket.communication_undelivered_at is None
    assert note_codes(session, ticket)[-1] == "communication_delivered"
    assert [e.target_id for e in events(session, "communication.delivered")] == [str(ticket.id)]


def test_a_delivered_forward_leaves_an_unmarked_ticket_alone(session: Session) -> None:
    ticket, (dpo, _) = complaint(session)
    before = note_codes(session, ticket)
    accept(session, dpo, at=NOW + dt.timedelta(minutes=1))
    assert ticket.communication_undelivered_at is None and note_codes(session, ticket) == before
    assert events(session, "communication.delivered") == []


def test_the_banner_shows_an_undelivered_communication_to_privacy_officers_only(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    # Given a complaint whose forward bounced
    ticket, (dpo, _) = complaint(session)
    refuse(session, dpo, now=NOW + dt.timedelta(minutes=1))
    # When a privacy officer opens any page, the DSR dashboard too (it does not list communications)
    auth.login("privacy_officer")
    for path in ("/tickets/", "/dsr/"):
        html = client.get(path).get_data(as_text=True)
        # Then the banner says so in its own sentence and links the ticket; the DSR sentence is not shown
        assert BANNER in html and f'href="/tickets/{ticket.id}"' in html and "dsr-banner" not in html, path
    assert 'id="passed-on-form"' in client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    # And an agent of the controller sees neither the banner nor the form
    auth.logout()
    assert ticket.controller_id is not None
    auth.login("agent", controllers=[ticket.controller_id])
    assert "communication-banner" not in client.get("/tickets/").get_data(as_text=True)
    page = client.get(f"/tickets/{ticket.id}")
    assert page.status_code == 200 and "passed-on-form" not in page.get_data(as_text=True)
    assert client.post(f"/dsr/communications/{ticket.id}/passed-on", data={"what": WHAT}).status_code == 403
    assert ticket.communication_undelivered_at is not None


def test_passed_on_needs_words_then_clears_the_banner_with_a_note_and_an_audit_event(
    client: FlaskClient, auth: AuthActions, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    ticket, (dpo, _) = complaint(session)
    refuse(session, dpo, now=NOW + dt.timedelta(minutes=1))
    officer = auth.login("privacy_officer")
    url = f"/dsr/communications/{ticket.id}/passed-on"
    notes = note_codes(session, ticket)
    # When the officer posts the form blank, it is refused and nothing changes
    response = client.post(url, data={"what": "   "}, follow_redirects=True)
    assert "Say how the communication was passed on" in response.get_data(as_text=True)
    session.expire_all()
    assert ticket.communication_undelivered_at is not None and note_codes(session, ticket) == notes
    assert events(session, "communication.passed_on") == []
    # When they say what they did
    response = client.post(url, data={"what": WHAT})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/tickets/{ticket.id}")
    session.expire_all()
    # Then the mark is cleared, the ticket has the note (by the officer), and the audit event carries no words of it
    assert ticket.communication_undelivered_at is None
    note = session.scalars(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id.desc()).limit(1)).one()
    assert note.notes == [{"code": "communication_passed_on"}] and note.author_id == officer.id and WHAT in (note.body_text or "")
    [event] = events(session, "communication.passed_on")
    assert (event.actor_id, event.target_id, event.details) == (officer.id, str(ticket.id), {"undelivered_minutes": event.details["undelivered_minutes"]})
    assert "Dana" not in caplog.text and "1234567" not in caplog.text
    # And the banner and the form are gone
    html = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "communication-banner" not in html and "passed-on-form" not in html
    # When the form is posted again, it is refused and nothing is added
    response = client.post(url, data={"what": WHAT}, follow_redirects=True)
    assert "no communication waiting to be passed on" in response.get_data(as_text=True)
    session.expire_all()
    assert len(events(session, "communication.passed_on")) == 1 and note_codes(session, ticket).count("communication_passed_on") == 1


def test_passed_on_refuses_a_ticket_without_an_undelivered_communication(session: Session) -> None:
    ticket, _ = complaint(session)
    with pytest.raises(NotPassedOn, match="no communication waiting"):
        passed_on(session, ticket.id, WHAT, by=Principal.staff(1), now=NOW)
    with pytest.raises(NotPassedOn, match="at most"):
        passed_on(session, ticket.id, "x" * 2_001, by=Principal.staff(1), now=NOW)


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("\u200b\u200b", "Say how the communication was passed on"),  # zero-width spaces: nothing visible
        ("\u202e", "Say how the communication was passed on"),  # a right-to-left override alone
        ("\u00a0\u3000 \u2060", "Say how the communication was passed on"),  # no-break, ideographic space, word joiner
        ("phoned\x00DPO", "control characters"),
        ("phoned \x1b[31mred\x07", "control characters"),
    ],
)
def test_passed_on_refuses_text_with_nothing_visible_or_control_characters_and_changes_nothing(session: Session, what: str, said: str) -> None:
    # Given a communication whose forward was refused
    ticket, (dpo, _) = complaint(session)
    refuse(session, dpo, now=NOW + dt.timedelta(minutes=1))
    session.flush()
    notes = note_codes(session, ticket)
    # When "what was done" is invisible or carries control characters, it is refused and the mark stays
    with pytest.raises(NotPassedOn, match=said):
        passed_on(session, ticket.id, what, by=TEST_PRINCIPAL, now=NOW)
    assert ticket.communication_undelivered_at is not None and note_codes(session, ticket) == notes
    # And a text typed in a textarea (CRLF line breaks, a tab) is taken
    passed_on(session, ticket.id, "Phoned the DPO.\r\nSent the letter by post.\tDone.", by=TEST_PRINCIPAL, now=NOW)
    assert ticket.communication_undelivered_at is None
