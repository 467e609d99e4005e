"""A complaint whose forward did not reach the controller, in a real browser: the banner leads the privacy officer to the
ticket, where they record how it was passed on, and the banner goes (Pexgle §11.2, issue 11 item 4)."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.db import utcnow
from app.dsr.communication import KIND
from app.extensions import db
from app.mail.inbound import IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from tests.browser.conftest import LiveServer
from tests.dsr.test_dsr_delivery import refuse
from tests.factories import TEST_PRINCIPAL, make_controller

expect.set_options(timeout=20_000)
SETTINGS = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
COMPLAINT = (
    b"From: Ann <ann@acme.example>\r\nTo: privacy@desk.example\r\nSubject: Formal complaint\r\nMessage-ID: <ui1@acme.example>\r\n\r\n"
    b"I wish to complain about how my support ticket was handled by your agent.\r\n"
)


def test_officer_follows_the_banner_and_records_how_the_complaint_was_passed_on(live_server: LiveServer, page: Page) -> None:
    # Given a complaint whose forward to Acme's only DSR contact the relay refused
    with live_server.app.app_context(), db.session_scope() as session:
        make_controller(session, name="Acme", domains=["acme.example"], dsr_contacts=["dpo@acme.example"])
        ticket_id = ingest_message(session, COMPLAINT, settings=SETTINGS, by=TEST_PRINCIPAL, now=utcnow()).ticket_id
        refuse(session, session.scalars(select(OutboxEmail).where(OutboxEmail.kind == KIND)).one(), now=utcnow())
    # When a privacy officer logs in, the banner says so on the dashboard and links the ticket
    live_server.login(page, "privacy_officer")
    page.goto(f"{live_server.url}/dsr/")
    banner = page.locator(".communication-banner")
    expect(banner).to_contain_text("1 complaint, authority letter or legal notice did not reach its controller.")
    banner.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/tickets/{ticket_id}")
    # And they record what they did instead
    page.get_by_label("What was done").fill("Phoned the controller's DPO")
    page.get_by_role("button", name="Passed on another way").click()
    # Then the page says so, the note is on the ticket, and the banner and the form are gone
    expect(page.get_by_role("status")).to_contain_text("escalation is cleared")
    expect(page.locator(".thread")).to_contain_text("Passed on another way: Phoned the controller's DPO")
    expect(page.locator(".communication-banner")).to_have_count(0)
    expect(page.locator("#passed-on-form")).to_have_count(0)
