"""Each role walks its day in a real browser; every page is screenshotted and passes axe-core (issue 16 item 7).

The screenshots land in test-artifacts/screens/<database>/<role>/ (see tests/browser/journey.py).
The live server runs no worker: where a worker would act (the forward, an export or erasure run),
the test does the worker's part through the same services, then reloads the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.controllers.models import Controller
from app.db import utcnow
from app.dsr.forward import forward
from app.dsr.models import Dsr
from app.dsr.settings import DsrSettings
from app.extensions import db
from app.principal import Principal
from app.subject_data.models import SubjectRun
from app.tickets import service as tickets
from tests.browser.conftest import LiveServer
from tests.browser.journey import Journey
from tests.factories import make_controller, make_instruction, make_user
from tests.subject_data.support import drain

BY = Principal.system("browser-journey")
WORKER = Principal.system("browser-worker")
expect.set_options(timeout=20_000)


def _database(live_server: LiveServer) -> str:
    return db.state(live_server.app).engine.dialect.name


def _mail_ticket(live_server: LiveServer, controller_id: int | None, *, name: str, email: str, subject: str, text: str, msgid: str) -> tuple[int, str]:
    """A ticket as the mail intake leaves it: the requester's message, received now."""
    with live_server.app.app_context(), db.session_scope() as session:
        ticket = tickets.create_ticket(session, controller_id=controller_id, requester_name=name, requester_email=email, subject=subject, by=BY, now=utcnow())
        data = tickets.MessageInput(direction="inbound", sender_name=name, sender_email=email, subject=subject, body_text=text, message_id=msgid)
        tickets.add_message(session, ticket, data, by=BY, now=utcnow())
        return ticket.id, ticket.reference or ""


def test_agent_answers_a_ticket(live_server: LiveServer, page: Page) -> None:
    # Given a controller with a new ticket in its queue
    with live_server.app.app_context(), db.session_scope() as session:
        controller_id = make_controller(session, name="Journey Shop GmbH", domains=["journey-shop.example"]).id
    _, reference = _mail_ticket(
        live_server,
        controller_id,
        name="Jürgen Roe",
        email="jurgen@customer.example",
        subject="Where is my order?",
        text="Order 1234 never came.",
        msgid="j1@customer.example",
    )
    journey = Journey(page, "agent", database=_database(live_server))

    # When the agent of that controller logs in, the home page lists their queue by name with its open tickets
    agent = live_server.login(page, "agent", controllers=(controller_id,))
    page.goto(f"{live_server.url}/")
    expect(page.locator(".home-queues")).to_contain_text("Journey Shop GmbH")
    expect(page.locator(".home-queues")).to_contain_text("1 open")
    expect(page.locator("header .who")).to_contain_text(agent.email)
    journey.step("home")

    # And opens the queue and the ticket
    page.locator(".home-queues").get_by_role("link", name=re.compile("Journey Shop GmbH")).click()
    expect(page.get_by_role("heading", name="Queue of Journey Shop GmbH")).to_be_visible()
    journey.step("queue")
    page.get_by_role("link", name=reference).click()
    expect(page.locator("article.message-inbound")).to_contain_text("Order 1234 never came.")
    journey.step("ticket")

    # And answers it
    page.get_by_label("Reply to the requester").fill("Hello Jürgen, your order left our warehouse today.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued for sending.")
    expect(page.locator("article.message-outbound")).to_contain_text("your order left our warehouse today")
    expect(page.locator("article.message-outbound")).to_contain_text(agent.email)
    journey.step("answered")
    assert len(journey.shots) == 4


def test_privacy_officer_takes_a_request_from_mail_to_closing(live_server: LiveServer, page: Page, tmp_path: Path) -> None:
    # Given a subject's mail on a controller's queue
    with live_server.app.app_context(), db.session_scope() as session:
        controller = make_controller(session, name="Journey Travel AG", dsr_contacts=["dpo@journey-travel.example"], domains=["journey-travel.example"])
        controller_id = controller.id
    ticket_id, _ = _mail_ticket(
        live_server,
        controller_id,
        name="Amélie Durand",
        email="amelie@subject.example",
        subject="Delete my data",
        text="Please give me a copy of my data, then delete it.",
        msgid="a1@subject.example",
    )
    settings = DsrSettings.from_config(live_server.app.config)
    journey = Journey(page, "privacy-officer", database=_database(live_server))
    live_server.login(page, "privacy_officer")

    # When the privacy officer reads the mail and records it as a request
    page.goto(f"{live_server.url}/tickets/{ticket_id}")
    journey.step("the subject's mail")
    page.get_by_role("link", name="This is a data-subject request").click()
    page.get_by_label("access").check()
    page.get_by_label("erasure").check()
    page.get_by_label("What the subject asked (data-minimised)").fill("A copy of their data, then erasure.")
    journey.step("record the request")
    page.get_by_role("button", name="Record the request").click()
    expect(page.get_by_role("status")).to_contain_text("recorded")
    with live_server.app.app_context(), db.session_scope() as session:
        dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == ticket_id)).one()
        dsr_id, reference = dsr.id, dsr.reference or ""
    expect(page.get_by_role("heading", name=reference)).to_be_visible()
    # Nothing may be done with the data before the controller says so, and the page says why
    expect(page.get_by_role("button", name="Erase")).to_be_disabled()
    expect(page.locator("#subject-data")).to_contain_text("No confirmed instruction of Journey Travel AG to erase.")
    journey.step("the request")

    # Then the forward goes out (the worker's part) and the ticket shows it as a forward to the named contact
    with live_server.app.app_context(), db.session_scope() as session:
        assert forward(session, dsr_id, settings=settings, by=WORKER, now=utcnow()) == 1
    page.goto(f"{live_server.url}/tickets/{ticket_id}")
    forwarded = page.locator("article.message-forward")
    expect(forwarded).to_contain_text("to dpo@journey-travel.example (Journey Travel AG)")
    expect(forwarded).to_contain_text("queued for sending")
    expect(page.locator("main")).not_to_contain_text("code: dsr_forward")
    expect(page.get_by_role("link", name=f"Data-subject request {reference}")).to_be_visible()
    journey.step("the forward on the ticket")

    # When the controller answers "provide the data to us" and the officer confirms it
    with live_server.app.app_context(), db.session_scope() as session:
        make_instruction(
            session, session.get_one(Dsr, dsr_id), controller_id=controller_id, sender_email="dpo@journey-travel.example", reply_text="Please send us the data."
        )
    page.get_by_role("link", name=f"Data-subject request {reference}").click()
    journey.step("the controller's instruction")
    page.get_by_label("The controller instructs").select_option("provide_data")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("Instruction confirmed.")
    journey.step("instruction confirmed")

    # Then the export runs and downloads once
    page.get_by_role("button", name="Export for the controller").click()
    expect(page.get_by_text("Export queued")).to_be_visible()
    with live_server.app.app_context(), db.session_scope() as session:
        run_id = session.scalars(select(SubjectRun.id).where(SubjectRun.dsr_id == dsr_id, SubjectRun.kind == "export")).one()
        drain(session, run_id, by=WORKER, now=utcnow())
    page.goto(f"{live_server.url}/subject-data/runs/{run_id}")
    expect(page.locator("dl.facts")).to_contain_text("Journey Travel AG")
    journey.step("the export run")
    page.get_by_role("row", name="JSON").get_by_role("button", name="Get a download link").click()
    expect(page.get_by_role("heading", name="Download ready")).to_be_visible()
    journey.step("download ready")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the JSON file").click()
    saved = tmp_path / "export.json"
    info.value.save_as(saved)
    assert json.loads(saved.read_text())["dsr"]["reference"] == reference

    # When the controller then instructs the erasure, the officer confirms it, erases and closes the request
    with live_server.app.app_context(), db.session_scope() as session:
        make_instruction(
            session, session.get_one(Dsr, dsr_id), controller_id=controller_id, sender_email="dpo@journey-travel.example", reply_text="Now erase it, please."
        )
    page.goto(f"{live_server.url}/dsr/{dsr_id}")
    page.get_by_label("The controller instructs").select_option("erase")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("button", name="Erase")).to_be_enabled()
    journey.step("erasure instructed")
    page.get_by_role("button", name="Erase").click()
    with live_server.app.app_context(), db.session_scope() as session:
        run_id = session.scalars(select(SubjectRun.id).where(SubjectRun.dsr_id == dsr_id, SubjectRun.kind == "erase")).one()
        drain(session, run_id, by=WORKER, now=utcnow())
    page.goto(f"{live_server.url}/dsr/{dsr_id}")
    journey.step("erased")
    page.get_by_role("button", name="Close the request and notify the controller").click()
    expect(page.get_by_role("status")).to_contain_text("Closed; the controller is notified")
    journey.step("closed")
    with live_server.app.app_context(), db.session_scope() as session:
        assert not session.get_one(Dsr, dsr_id).is_open


def test_admin_adds_a_controller_and_a_user(live_server: LiveServer, page: Page) -> None:
    journey = Journey(page, "admin", database=_database(live_server))
    live_server.login(page, "admin")
    page.goto(f"{live_server.url}/")
    journey.step("home")

    # When the admin adds a controller, every mistake of the form is shown at once
    page.locator("header nav").get_by_role("link", name="Controllers").click()
    page.get_by_role("link", name="New controller").click()
    page.get_by_label("DSR contacts").fill("not an address")
    page.get_by_label("Email domains").fill("bad domain")
    page.get_by_role("button", name="Save").click()
    errors = page.locator(".field .error")
    expect(errors).to_have_count(3)
    journey.step("controller form errors")
    page.get_by_label("Name").fill("Journey Bank SA")
    page.get_by_label("DSR contacts").fill("privacy@journey-bank.example")
    page.get_by_label("Email domains").fill("journey-bank.example")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Journey Bank SA")
    expect(page.get_by_role("link", name="Journey Bank SA")).to_be_visible()
    journey.step("controller added")

    # And a staff account for that controller
    page.locator("header nav").get_by_role("link", name="Staff").click()
    page.get_by_role("link", name="New staff account").click()
    page.get_by_label("Email").fill("new.agent@desk.example")
    page.get_by_label("Role").select_option("agent")
    with live_server.app.app_context(), db.session_scope() as session:
        bank_id = session.scalars(select(Controller.id).where(Controller.name == "Journey Bank SA")).one()
    page.get_by_label("Assigned controllers").select_option(str(bank_id))
    journey.step("new staff account")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Staff account new.agent@desk.example created")).to_be_visible()
    journey.step("account created")
    page.get_by_role("link", name="Back to staff").click()
    row = page.get_by_role("row", name=re.compile("new.agent@desk.example"))
    expect(row).to_contain_text("Journey Bank SA")
    journey.step("staff list")


def test_auditor_reads_the_audit_log(live_server: LiveServer, page: Page) -> None:
    # Given some staff activity on record
    with live_server.app.app_context(), db.session_scope() as session:
        controller = make_controller(session, name="Journey Audit Ltd")
        colleague = make_user(session, "agent", email="colleague@desk.example", controllers=[controller])
        controller_id, colleague_id = controller.id, colleague.id
    journey = Journey(page, "auditor", database=_database(live_server))
    live_server.login(page, "auditor")
    page.goto(f"{live_server.url}/")
    journey.step("home")

    # When the auditor opens the audit log, each event keeps its ids and shows the names beside them
    page.locator("header nav").get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    journey.step("audit log")
    page.get_by_label("Action").select_option("user.created")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row", name=re.compile(f"user:{colleague_id}"))
    expect(row).to_contain_text("colleague@desk.example")
    journey.step("filtered by action")
    page.get_by_label("Controller id").fill(str(controller_id))
    page.get_by_label("Action").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-events")).to_contain_text("Journey Audit Ltd")
    journey.step("filtered by controller")
