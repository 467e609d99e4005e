"""A controller whose data key was crypto-shredded: its tickets and requests still open, with placeholders (issue 11 item 1).

Mail that arrives later for one of its tickets is kept readable in the quarantine, not written as that controller's
data under a new key; what needs the data itself (a download, a note written for it) is refused with a clear page.
"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.crypto.models import DataKey
from app.crypto.shown import UNREADABLE_SHREDDED
from app.db import utcnow
from app.dsr.models import Dsr
from app.dsr.requests import DsrInput, create_from_ticket
from app.extensions import db
from app.keys.service import shred_controller_keys
from app.mail import quarantine
from app.mail.inbound import IngestSettings, ingest_committed
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket
from tests.conftest import AuthActions
from tests.factories import TEST_PRINCIPAL, make_controller
from tests.mail.conftest import build

BY = Principal.system("tests")
SETTINGS = IngestSettings(support_address="privacy@desk.localhost")
PLACEHOLDER = UNREADABLE_SHREDDED.replace("'", "&#39;")  # as the page escapes it


def _shredded_ticket(session: Session) -> tuple[int, Ticket, Dsr, int]:
    """A controller with a ticket (an inbound message with a file, a staff reply) and a request made from it, then shredded."""
    now = utcnow()
    gone = make_controller(session, name="Shredded Pages AG", dsr_contacts=["dpo@shredded-pages.example"])
    ticket = tickets.create_ticket(
        session, controller_id=gone.id, requester_name="Jane Roe", requester_email="jane@example.org", subject="Canary subject", by=BY, now=now
    )
    first = tickets.MessageInput(direction="inbound", sender_email="jane@example.org", body_text="Canary body", message_id="old-1@example.org")
    message = tickets.add_message(session, ticket, first, by=BY, now=now)
    attachment = tickets.add_attachment(session, message, filename="canary.txt", content_type="text/plain", content=b"canary file", by=BY, now=now)
    reply = tickets.MessageInput(direction="outbound", body_text="Canary reply", message_id="desk-1@desk.localhost")
    tickets.add_message(session, ticket, reply, by=BY, now=now)
    dsr = create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email="jane@example.org", subject_name="Jane Roe"), by=BY, now=now)
    shred_controller_keys(session, gone.id, by=TEST_PRINCIPAL, now=now)
    session.flush()
    return gone.id, ticket, dsr, attachment.id


def _keys_of(session: Session, controller_id: int) -> list[str]:
    return list(session.scalars(select(DataKey.state).where(DataKey.owner == f"controller:{controller_id}").order_by(DataKey.generation)))


def test_mail_for_a_shredded_controllers_ticket_is_kept_readable_in_the_quarantine_not_under_a_new_key(app: Flask, session: Session) -> None:
    # Given a ticket of a controller whose data key was destroyed
    controller_id, ticket, _dsr, _file = _shredded_ticket(session)
    messages_before = session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id))
    # When the requester's reply to the desk's message arrives through the MTA pipe's ingest
    raw = build(sender="Jane Roe <jane@example.org>", subject="Re: your request", body="New canary after the shred", message_id="<new-1@example.org>",
                headers={"In-Reply-To": "<desk-1@desk.localhost>"})  # fmt: skip
    with app.app_context():
        outcome = ingest_committed(db.session_scope, raw, settings=SETTINGS, by=BY, clock=utcnow, source="pipe")
    # Then it is kept, readable, in the quarantine for a privacy officer: not lost, not added to the erased controller's ticket
    assert (outcome.status, outcome.reason) == ("quarantined", "controller_shredded")
    item = quarantine.held(session, outcome.quarantine_id or 0)
    assert (item.reason, item.detail) == ("controller_shredded", "KeyShredded")
    assert b"".join(quarantine.raw_chunks(session, item)) == raw
    assert session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)) == messages_before
    # And no new data key was made for the shredded controller (it stays a controller without readable data)
    assert _keys_of(session, controller_id) == ["shredded"]


def test_a_shredded_controllers_pages_render_with_placeholders_and_never_a_500(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    # Given a shredded controller's ticket and request
    controller_id, ticket, dsr, attachment_id = _shredded_ticket(session)
    reference = ticket.reference
    auth.login("privacy_officer")
    # When a privacy officer opens the queue and the ticket
    queue = client.get(f"/tickets/queue/{controller_id}")
    page = client.get(f"/tickets/{ticket.id}")
    # Then both render, each unreadable value shown as the placeholder, nothing of the data nor its ciphertext
    assert queue.status_code == 200 and PLACEHOLDER in queue.get_data(as_text=True) and reference in queue.get_data(as_text=True)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert html.count(PLACEHOLDER) >= 3 and reference in html  # subject, requester, each message's body
    assert "Canary" not in html and "canary" not in html
    # And every other page that lists it renders too
    for url in ("/", "/tickets/", "/dsr/", f"/dsr/{dsr.id}", "/quarantine/", "/controllers/", f"/controllers/{controller_id}/view"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Canary" not in response.get_data(as_text=True), url
    found = client.post("/tickets/search", data={"q": reference}, follow_redirects=True)
    assert found.status_code == 200 and PLACEHOLDER in found.get_data(as_text=True)
    assert client.post("/tickets/search", data={"q": "jane@example.org"}).status_code == 200
    # And what needs the data itself is refused with a clear page, not a server error, changing nothing
    download = client.get(f"/tickets/{ticket.id}/attachments/{attachment_id}")
    assert download.status_code == 409 and "crypto-shredded" in download.get_data(as_text=True)
    note = client.post(f"/tickets/{ticket.id}/note", data={"note": "a note for an erased controller"})
    assert note.status_code == 409 and "crypto-shredded" in note.get_data(as_text=True)
    assert _keys_of(session, controller_id) == ["shredded"]
    auth.logout()
    auth.login("auditor")
    assert client.get("/audit/").status_code == 200
