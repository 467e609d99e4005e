"""An agent works a ticket in a real browser: queue, ticket, internal note, reply."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.db import utcnow
from app.extensions import db
from app.mail.models import OutboxEmail
from app.principal import Principal
from app.tickets import service as tickets
from tests.browser.conftest import LiveServer
from tests.factories import make_controller

BY = Principal.system("browser-test")
# A shared 2-core machine under a parallel test load can take seconds per page.
expect.set_options(timeout=20_000)


def test_agent_opens_the_queue_writes_a_note_and_replies(live_server: LiveServer, page: Page) -> None:
    # Given a controller with a ticket whose mail carries a script and a tracking pixel
    with live_server.app.app_context(), db.session_scope() as session:
        controller = make_controller(session, name="Browser Tickets GmbH")
        ticket = tickets.create_ticket(
            session,
            controller_id=controller.id,
            requester_name="Ada Example",
            requester_email="ada@customer.example",
            subject="Cannot export",
            by=BY,
            now=utcnow(),
        )
        html = '<p>My export <b>fails</b>.</p><script>document.title="pwned"</script><img src="https://tracker.example/p.gif">'
        tickets.add_message(
            session,
            ticket,
            tickets.MessageInput(
                direction="inbound", sender_email="ada@customer.example", body_text="My export fails.", body_html=html, message_id="b1@customer.example"
            ),
            by=BY,
            now=utcnow(),
        )
        controller_id, ticket_id, reference = controller.id, ticket.id, ticket.reference
    remote_requests: list[str] = []
    page.on("request", lambda r: remote_requests.append(r.url) if not r.url.startswith(live_server.url) else None)

    # When an agent of that controller opens its queue and the ticket
    live_server.login(page, "agent", controllers=(controller_id,))
    page.goto(f"{live_server.url}/tickets/")
    page.get_by_role("link", name="Browser Tickets GmbH").click()
    expect(page.get_by_role("row", name=reference or "")).to_contain_text("ada@customer.example")
    page.get_by_role("link", name=reference or "").click()

    # Then the thread shows the mail's text, and neither its script nor its remote image did anything
    expect(page.locator("article.message-inbound")).to_contain_text("My export fails.")
    assert page.title() != "pwned"
    assert not remote_requests

    # When they write an internal note
    page.get_by_label("Internal note").fill("Checked the export job: it timed out.")
    page.get_by_role("button", name="Add internal note").click()
    expect(page.get_by_role("status")).to_contain_text("Internal note added.")
    expect(page.locator("article.message-note")).to_contain_text("Checked the export job: it timed out.")

    # And a reply
    page.get_by_label("Reply to the requester").fill("We fixed the export; please try again.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued for sending.")
    expect(page.locator("article.message-outbound")).to_contain_text("We fixed the export; please try again.")
    expect(page.locator("dl.facts")).to_contain_text("waiting")

    # Then the reply waits in the outbox for the requester, written with the ticket's change
    with live_server.app.app_context(), db.session_scope() as session:
        rows = list(session.scalars(select(OutboxEmail).where(OutboxEmail.related_type == "ticket", OutboxEmail.related_id == ticket_id)))
        assert [(r.to_addr, r.kind, r.in_reply_to) for r in rows] == [("ada@customer.example", "reply", "<b1@customer.example>")]
