"""The staff ticket pages: queues, scope (IDOR is a 404), thread rendering, reply/note/assign/status, attachments, search."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.controllers.models import Controller
from app.db import utcnow
from app.dsr.requests import DsrInput, create_from_ticket
from app.mail.models import OutboxEmail
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket
from tests.conftest import AuthActions
from tests.factories import make_controller, make_user

BY = Principal.system("tests")


def make_ticket(session: Session, controller: Controller | None, *, email: str = "jane@example.org", at: dt.datetime | None = None, **kw: Any) -> Ticket:
    """A ticket with one inbound message."""
    now = at or utcnow()
    ticket = tickets.create_ticket(
        session,
        controller_id=controller.id if controller else None,
        requester_name="Jane Roe",
        requester_email=email,
        subject=kw.pop("subject", "Cannot log in"),
        by=BY,
        now=now,
    )
    data = tickets.MessageInput(
        direction="inbound",
        sender_name="Jane Roe",
        sender_email=email,
        subject="Cannot log in",
        body_text=kw.pop("body_text", "Hello, I cannot log in."),
        body_html=kw.pop("body_html", None),
        message_id=kw.pop("message_id", f"m{now.timestamp()}.{ticket.id}@mail.example"),
    )
    tickets.add_message(session, ticket, data, by=BY, now=now)
    return ticket


def audit_actions(session: Session, ticket: Ticket) -> list[str]:
    rows = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "ticket", AuditEvent.target_id == str(ticket.id)).order_by(AuditEvent.id))
    return list(rows)


# --- queues ---------------------------------------------------------------------------------


def test_agent_sees_own_queue_and_not_anothers(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    mine, other = make_controller(session), make_controller(session)
    ticket = make_ticket(session, mine, subject="Invoice question")
    stranger = make_ticket(session, other, subject="Other company")
    auth.login("agent", controllers=[mine])

    page = client.get(f"/tickets/queue/{mine.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert ticket.reference in html and "Invoice question" in html and "jane@example.org" in html
    assert stranger.reference not in html
    # Another controller's queue and the triage queue do not exist for this agent.
    assert client.get(f"/tickets/queue/{other.id}").status_code == 404
    assert client.get("/tickets/triage").status_code == 404
    index = client.get("/tickets/").get_data(as_text=True)
    assert f"/tickets/queue/{mine.id}" in index and f"/tickets/queue/{other.id}" not in index and "/tickets/triage" not in index


def test_privacy_officer_works_the_triage_queue(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    unrouted = make_ticket(session, None, subject="Who handles this?")
    auth.login("privacy_officer")
    html = client.get("/tickets/triage").get_data(as_text=True)
    assert unrouted.reference in html and "Who handles this?" in html
    assert client.get(f"/tickets/{unrouted.id}").status_code == 200


def test_queue_filters_by_status_assignee_and_age(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    old = make_ticket(session, c, at=utcnow() - dt.timedelta(days=10), subject="Old one")
    waiting = make_ticket(session, c, subject="Waiting one")
    mine = make_ticket(session, c, subject="Mine")
    agent = auth.login("agent", controllers=[c])
    tickets.change_status(session, waiting.id, "waiting", by=BY, now=utcnow())
    tickets.assign(session, mine.id, agent.id, by=BY, now=utcnow())

    def refs(query: str) -> set[str]:
        html = client.get(f"/tickets/queue/{c.id}?{query}").get_data(as_text=True)
        return set(re.findall(r"T-\d{4}-\d{6,}", html))

    assert refs("") == {old.reference, waiting.reference, mine.reference}
    assert refs("status=waiting") == {waiting.reference}
    assert refs("assignee=me") == {mine.reference}
    assert refs("assignee=none") == {old.reference, waiting.reference}
    assert refs("age=7") == {old.reference}
    assert client.get(f"/tickets/queue/{c.id}?status=bogus").status_code == 400
    for cursor in ("not-a-cursor", "99999999999999999999_1", "1_99999999999", "-1_5"):
        assert client.get(f"/tickets/queue/{c.id}?after={cursor}").status_code == 400


def test_queue_pages_with_a_keyset_cursor(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    start = utcnow() - dt.timedelta(hours=2)
    made = [
        tickets.create_ticket(
            session, controller_id=c.id, requester_name=None, requester_email=None, subject=f"n{i}", by=BY, now=start + dt.timedelta(seconds=i)
        )
        for i in range(53)
    ]
    auth.login("agent", controllers=[c])
    first = client.get(f"/tickets/queue/{c.id}").get_data(as_text=True)
    refs_first = re.findall(r"T-\d{4}-\d{6,}", first)
    assert refs_first == [t.reference for t in reversed(made)][:50]
    older = re.search(r'href="([^"]+after=[^"]+)" rel="next"', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r"T-\d{4}-\d{6,}", second) == [made[2].reference, made[1].reference, made[0].reference]
    assert "end of the queue" in second


# --- scope: a guessed id of another controller's ticket is a 404 on every route ------------------


def test_another_controllers_ticket_is_404_everywhere(client: FlaskClient, auth: AuthActions, session: Session, app: Flask) -> None:
    mine, other = make_controller(session), make_controller(session)
    theirs = make_ticket(session, other)
    message = theirs.messages[0]
    attachment = tickets.add_attachment(session, message, filename="a.txt", content_type="text/plain", content=b"secret", by=BY, now=utcnow())
    triage = make_ticket(session, None)
    auth.login("agent", controllers=[mine])
    before = audit_actions(session, theirs)

    for ticket in (theirs, triage):
        assert client.get(f"/tickets/{ticket.id}").status_code == 404
        assert client.post(f"/tickets/{ticket.id}/note", data={"note": "x"}).status_code == 404
        assert client.post(f"/tickets/{ticket.id}/reply", data={"reply": "x", "status_after": "waiting"}).status_code == 404
        assert client.post(f"/tickets/{ticket.id}/status", data={"status": "closed"}).status_code == 404
        assert client.post(f"/tickets/{ticket.id}/assign", data={"assignee": ""}).status_code == 404
        upload = {"file": (io.BytesIO(b"x"), "x.txt", "text/plain")}
        assert client.post(f"/tickets/{ticket.id}/attachments", data=upload, content_type="multipart/form-data").status_code == 404
    assert client.get(f"/tickets/{theirs.id}/attachments/{attachment.id}").status_code == 404
    assert client.get("/tickets/999999999").status_code == 404
    assert client.get("/tickets/99999999999999999999").status_code == 404
    assert client.get(f"/tickets/queue/{other.id}?assignee=99999999999999999999").status_code == 404
    session.expire_all()
    assert audit_actions(session, theirs) == before
    assert session.get(Ticket, theirs.id).status == "new"  # type: ignore[union-attr]


def test_attachment_of_another_ticket_is_404_through_my_ticket(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    mine, other = make_controller(session), make_controller(session)
    my_ticket, their_ticket = make_ticket(session, mine), make_ticket(session, other)
    theirs = tickets.add_attachment(session, their_ticket.messages[0], filename="b.txt", content_type="text/plain", content=b"x", by=BY, now=utcnow())
    auth.login("agent", controllers=[mine])
    assert client.get(f"/tickets/{my_ticket.id}/attachments/{theirs.id}").status_code == 404


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_roles_without_ticket_work_are_refused(client: FlaskClient, auth: AuthActions, session: Session, role: str) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login(role)
    assert client.get("/tickets/").status_code == 403
    assert client.get(f"/tickets/queue/{c.id}").status_code == 403
    assert client.get(f"/tickets/{ticket.id}").status_code == 403
    assert client.post(f"/tickets/{ticket.id}/note", data={"note": "x"}).status_code == 403


def test_logged_out_visitor_is_sent_to_login(client: FlaskClient, session: Session) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    response = client.get(f"/tickets/{ticket.id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.post(f"/tickets/{ticket.id}/note", data={"note": "x"}).status_code == 302
    assert len(ticket.messages) == 1


def test_state_changes_refuse_get(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    for action in ("note", "reply", "status", "assign", "attachments", "move"):
        assert client.get(f"/tickets/{ticket.id}/{action}").status_code == 405


# --- the thread -------------------------------------------------------------------------------


def test_hostile_html_never_reaches_the_page(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    html_mail = (
        '<p>Hi <b>there</b></p><script>alert("pwned")</script>'
        '<img src="https://tracker.example/pixel.gif?u=1"><a href="javascript:alert(2)" onclick="steal()">click</a>'
        '<img src="cid:logo@x">'
    )
    ticket = make_ticket(session, c, body_html=html_mail, body_text="Hi there")
    text_ticket = make_ticket(session, c, body_text='<script>alert("x")</script> & <b>not bold</b>')
    auth.login("agent", controllers=[c])

    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "<b>there</b>" in page  # allowed formatting survives
    assert "<script>alert" not in page and "pwned" not in page
    assert "tracker.example" not in page  # remote image (a tracking pixel) removed
    assert "javascript:" not in page and "onclick" not in page and "steal()" not in page
    assert 'src="cid:logo@x"' in page  # inline parts stay

    plain = client.get(f"/tickets/{text_ticket.id}").get_data(as_text=True)
    assert "<script>alert" not in plain and "<b>not bold</b>" not in plain
    assert "&lt;script&gt;" in plain and "&lt;b&gt;not bold&lt;/b&gt;" in plain


def test_reply_writes_the_message_and_an_outbox_row_together(
    client: FlaskClient, auth: AuthActions, session: Session, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PRIVACY_ADDRESS", "privacy@desk.example")
    c = make_controller(session)
    ticket = make_ticket(session, c, message_id="original-1@mail.example")
    agent = auth.login("agent", controllers=[c])

    response = client.post(f"/tickets/{ticket.id}/reply", data={"reply": "Please reset it here.", "status_after": "waiting"})
    assert response.status_code == 303

    session.expire_all()
    rows = list(session.scalars(select(OutboxEmail).where(OutboxEmail.related_type == "ticket", OutboxEmail.related_id == ticket.id)))
    assert len(rows) == 1
    row = rows[0]
    assert row.to_addr == "jane@example.org" and row.kind == "reply" and row.state == "queued"
    assert row.in_reply_to == "<original-1@mail.example>"
    assert ticket.reference in row.subject and "Cannot log in" not in row.subject  # neutral subject, reference for threading
    assert row.reply_to and f"+{ticket.reply_token}@" in row.reply_to
    sent = session.scalars(select(Message).where(Message.ticket_id == ticket.id, Message.direction == "outbound")).one()
    assert sent.body_text == "Please reset it here." and sent.author_id == agent.id
    assert f"<{sent.message_id}>" == row.message_id  # the customer's answer threads back to this ticket
    assert session.get(Ticket, ticket.id).status == "waiting"  # type: ignore[union-attr]
    assert {"ticket.message", "ticket.status"} <= set(audit_actions(session, ticket))
    assert "Please reset it here." in client.get(f"/tickets/{ticket.id}").get_data(as_text=True)


def test_reply_without_requester_address_is_refused_and_changes_nothing(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    ticket = tickets.create_ticket(session, controller_id=c.id, requester_name=None, requester_email=None, subject="x", by=BY, now=utcnow())
    auth.login("agent", controllers=[c])
    response = client.post(f"/tickets/{ticket.id}/reply", data={"reply": "hello", "status_after": "waiting"}, follow_redirects=True)
    assert "no requester address" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.related_id == ticket.id)) == 0


def test_reply_to_the_subject_of_an_open_dsr_needs_an_instruction(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    # Given a ticket that staff marked as a data-subject request, with no instruction from the controller yet
    c = make_controller(session)
    ticket = make_ticket(session, c, email="subject@example.org")
    create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email="subject@example.org"), by=BY, now=utcnow())
    auth.login("agent", controllers=[c])
    # When an agent replies to the requester
    response = client.post(f"/tickets/{ticket.id}/reply", data={"reply": "Here is your data.", "status_after": "waiting"}, follow_redirects=True)
    # Then nothing is queued or stored, and the page says why
    assert "no confirmed controller instruction" in response.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.related_id == ticket.id)) == 0
    assert session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id, Message.direction == "outbound")) == 0


def test_note_is_internal_and_audited(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    response = client.post(f"/tickets/{ticket.id}/note", data={"note": "Called the customer <b>today</b>"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Internal note added." in html and "Called the customer &lt;b&gt;today&lt;/b&gt;" in html
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.related_id == ticket.id)) == 0
    notes = list(session.scalars(select(Message).where(Message.ticket_id == ticket.id, Message.direction == "note")))
    assert len(notes) == 1
    assert audit_actions(session, ticket).count("ticket.message") == 2  # the inbound one and the note
    assert client.post(f"/tickets/{ticket.id}/note", data={"note": ""}, follow_redirects=True).status_code == 200
    assert session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)) == 2


def test_status_and_assignment_change_and_are_audited(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c, other = make_controller(session), make_controller(session)
    ticket = make_ticket(session, c)
    colleague = make_user(session, "agent", controllers=[c])
    outsider = make_user(session, "agent", controllers=[other])
    auth.login("agent", controllers=[c])

    assert client.post(f"/tickets/{ticket.id}/status", data={"status": "open"}).status_code == 303
    assert client.post(f"/tickets/{ticket.id}/assign", data={"assignee": str(colleague.id)}).status_code == 303
    # Someone who may not see this controller cannot be given its ticket.
    client.post(f"/tickets/{ticket.id}/assign", data={"assignee": str(outsider.id)})
    assert client.post(f"/tickets/{ticket.id}/status", data={"status": "bogus"}).status_code == 303
    session.expire_all()
    fresh = session.get(Ticket, ticket.id)
    assert fresh is not None and fresh.status == "open" and fresh.assignee_id == colleague.id
    actions = audit_actions(session, ticket)
    assert actions.count("ticket.status") == 1 and actions.count("ticket.assign") == 1
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "ticket.assign", AuditEvent.target_id == str(ticket.id))).one()
    assert "jane" not in event.details_json and "@" not in event.details_json  # ids only


def test_privacy_officer_routes_a_triage_ticket_to_its_controller(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session, name="Routing Target GmbH")
    ticket = make_ticket(session, None, body_text="Please delete my account.")
    auth.login("privacy_officer")
    assert "Route out of triage" in client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert client.post(f"/tickets/{ticket.id}/move", data={"controller": str(c.id)}).status_code == 303
    session.expire_all()
    moved = session.get(Ticket, ticket.id)
    assert moved is not None and moved.controller_id == c.id and moved.requester_email == "jane@example.org"
    assert "ticket.move" in audit_actions(session, ticket)
    # The controller's agent now finds it in their queue, readable under the controller's key
    auth.logout()
    auth.login("agent", controllers=[c])
    assert ticket.reference in client.get(f"/tickets/queue/{c.id}").get_data(as_text=True)
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "Please delete my account." in page and "Route out of triage" not in page and "Move to controller" not in page
    # but may not move it anywhere
    other = make_controller(session)
    assert client.post(f"/tickets/{ticket.id}/move", data={"controller": str(other.id)}).status_code == 404


# --- attachments --------------------------------------------------------------------------------


def test_upload_then_download_inline_or_as_a_file(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    for name, ctype, content in (("scan.png", "image/png", png), ("page.html", "text/html", b"<script>alert(1)</script>")):
        upload = {"file": (io.BytesIO(content), name, ctype), "comment": f"the {name}"}
        assert client.post(f"/tickets/{ticket.id}/attachments", data=upload, content_type="multipart/form-data").status_code == 303
    session.expire_all()
    html = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    links = dict(re.findall(r'href="(/tickets/\d+/attachments/\d+)">([^<]+)</a>', html))
    by_name = {v: k for k, v in links.items()}

    image = client.get(by_name["scan.png"])
    assert image.status_code == 200 and image.data == png
    assert image.headers["Content-Type"] == "image/png" and image.headers["Content-Disposition"].startswith("inline")
    assert image.headers["X-Content-Type-Options"] == "nosniff"

    page = client.get(by_name["page.html"])
    assert page.data == b"<script>alert(1)</script>"
    assert page.headers["Content-Type"] == "application/octet-stream"
    assert page.headers["Content-Disposition"].startswith("attachment;") and 'filename="page.html"' in page.headers["Content-Disposition"]
    assert page.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in page.headers["Content-Security-Policy"]
    assert audit_actions(session, ticket).count("ticket.attachment") == 2


def test_upload_over_the_limit_is_refused_and_nothing_kept(
    client: FlaskClient, auth: AuthActions, session: Session, monkeypatch: pytest.MonkeyPatch, app: Flask
) -> None:
    monkeypatch.setitem(app.config, "ATTACHMENT_MAX_BYTES", 1024)
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    upload = {"file": (io.BytesIO(b"x" * 5000), "big.bin", "application/octet-stream")}
    response = client.post(f"/tickets/{ticket.id}/attachments", data=upload, content_type="multipart/form-data", follow_redirects=True)
    assert "larger than the limit" in response.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)) == 1
    assert "ticket.attachment" not in audit_actions(session, ticket)


def test_hostile_filename_cannot_inject_headers(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    attachment = tickets.add_attachment(
        session, ticket.messages[0], filename='evil"\r\nSet-Cookie: x=1;.txt', content_type="text/plain", content=b"hi", by=BY, now=utcnow()
    )
    auth.login("agent", controllers=[c])
    response = client.get(f"/tickets/{ticket.id}/attachments/{attachment.id}")
    assert response.status_code == 200 and "Set-Cookie" not in {k for k, _ in response.headers if k.lower() == "set-cookie" and "x=1" in _}
    assert "\n" not in response.headers["Content-Disposition"] and '"evil_' in response.headers["Content-Disposition"]


# --- search -------------------------------------------------------------------------------------


def test_search_by_requester_email_uses_the_scope(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    mine, other = make_controller(session), make_controller(session)
    found = make_ticket(session, mine, email="Sam.Smith@Example.net")
    hidden = make_ticket(session, other, email="sam.smith@example.net")
    make_ticket(session, mine, email="someone@else.net")
    auth.login("agent", controllers=[mine])
    html = client.post("/tickets/search", data={"q": " sam.smith@EXAMPLE.net"}).get_data(as_text=True)
    assert found.reference in html and hidden.reference not in html
    assert "1 ticket found" in html


def test_search_by_reference_opens_the_ticket_in_scope_only(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    mine, other = make_controller(session), make_controller(session)
    ticket, theirs = make_ticket(session, mine), make_ticket(session, other)
    auth.login("agent", controllers=[mine])
    response = client.post("/tickets/search", data={"q": f"  {ticket.reference} "})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/tickets/{ticket.id}")
    refused = client.post("/tickets/search", data={"q": theirs.reference})
    assert refused.status_code == 200 and "No ticket you may see matches" in refused.get_data(as_text=True)
    assert client.post("/tickets/search", data={"q": "hello"}).status_code == 422
    assert client.get("/tickets/search").status_code == 200


# --- CSRF -------------------------------------------------------------------------------------------


def test_forms_without_the_csrf_token_change_nothing(
    client: FlaskClient, auth: AuthActions, session: Session, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert page.count('name="csrf_token"') >= 5  # every form on the page carries it
    for action, data in (("note", {"note": "x"}), ("status", {"status": "closed"}), ("reply", {"reply": "x", "status_after": "closed"})):
        assert client.post(f"/tickets/{ticket.id}/{action}", data=data).status_code == 400
    session.expire_all()
    assert session.get(Ticket, ticket.id).status == "new"  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)) == 1


@pytest.mark.parametrize(
    "text",
    ["Called\x00back", "Called \x1b[31mback\x07", "\u200b\u200b", "\u202e", "\ufeff \u2060", "\x7f"],
    ids=["nul", "escape-and-bell", "zero-width-spaces", "rtl-override", "bom-and-word-joiner", "delete"],
)
def test_a_note_or_reply_with_control_characters_or_nothing_visible_is_refused_and_nothing_is_stored_or_sent(
    client: FlaskClient, auth: AuthActions, session: Session, text: str
) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    before = session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id))
    # When the agent posts such a note or reply, the page says what is wrong with the text
    for path, data in ((f"/tickets/{ticket.id}/note", {"note": text}), (f"/tickets/{ticket.id}/reply", {"reply": text, "status_after": "waiting"})):
        html = client.post(path, data=data, follow_redirects=True).get_data(as_text=True)
        assert "the text contains control characters" in html or "the text has nothing visible in it" in html, path
    # And nothing was stored or queued
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)) == before
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.related_id == ticket.id)) == 0


def test_a_note_typed_in_a_textarea_keeps_its_line_breaks_tabs_and_any_script(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    c = make_controller(session)
    ticket = make_ticket(session, c)
    auth.login("agent", controllers=[c])
    text = "Anruf: Frau Müller.\r\n\tRückruf 14:00 ✔\r\nمرحبا \u200fשלום 你好"
    html = client.post(f"/tickets/{ticket.id}/note", data={"note": text}, follow_redirects=True).get_data(as_text=True)
    assert "Internal note added." in html
    session.expire_all()
    notes = list(session.scalars(select(Message).where(Message.ticket_id == ticket.id, Message.direction == "note")))
    assert len(notes) == 1 and "Frau Müller" in (notes[0].body_text or "") and "你好" in (notes[0].body_text or "")
