"""A desk that reads like a desk (issue 16): names not numbers, links where people look, actions that
explain themselves, each request once on the dashboard, errors as errors, demo data that reads well."""

from __future__ import annotations

import re

from click.testing import Result
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.dsr.forward import forward
from app.tickets import service as tickets
from app.tickets.demo import ascii_local
from app.tickets.models import Ticket
from tests.conftest import AuthActions
from tests.dsr.test_dsr_service import SETTINGS, T0
from tests.dsr.test_dsr_ui import recent_dsr
from tests.factories import TEST_PRINCIPAL, make_controller, make_user


def _ticket(session: Session, controller_id: int | None, *, status: str = "new", email: str = "ada@customer.example") -> Ticket:
    ticket = tickets.create_ticket(
        session, controller_id=controller_id, requester_name="Ada", requester_email=email, subject="Question", by=TEST_PRINCIPAL, now=T0
    )
    tickets.add_message(session, ticket, tickets.MessageInput(direction="inbound", body_text="Hello", sender_email=email), by=TEST_PRINCIPAL, now=T0)
    if status != "new":
        tickets.change_status(session, ticket.id, status, by=TEST_PRINCIPAL, now=T0)
    return ticket


def _main(html: str) -> str:
    return html.split('<main id="content"', 1)[1]


# --- 1. names, not numbers ---------------------------------------------------------------


def test_pages_name_the_controller_and_the_staff_not_their_numbers(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Named Retail GmbH")
    colleague = make_user(session, "agent", email="colleague@desk.example", controllers=[controller])
    ticket = _ticket(session, controller.id)
    tickets.assign(session, ticket.id, colleague.id, by=TEST_PRINCIPAL, now=T0)
    agent = auth.login("agent", controllers=[controller])

    queue = client.get(f"/tickets/queue/{controller.id}").get_data(as_text=True)
    assert "Queue of <a" in queue and "Named Retail GmbH</a>" in queue and f"controller #{controller.id}" not in queue
    assert "colleague@desk.example" in queue and f"#{colleague.id}" not in _main(queue)
    shown = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "Queue of Named Retail GmbH" in shown and "Queue of controller" not in shown
    # The header names who is logged in
    header = shown.split("<main", 1)[0]
    assert agent.email in header and f"#{agent.id}" not in header
    # The staff list names the controllers
    auth.logout()
    auth.login("admin")
    staff = client.get("/admin/users").get_data(as_text=True)
    assert re.search(r"colleague@desk\.example</a></td>.*?Named Retail GmbH</td>", staff, re.S)


def test_moving_a_ticket_names_the_controller_it_went_to(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    source, target = make_controller(session, name="From GmbH"), make_controller(session, name="To GmbH")
    ticket = _ticket(session, source.id)
    auth.login("privacy_officer")
    response = client.post(f"/tickets/{ticket.id}/move", data={"controller": str(target.id)}, follow_redirects=True)
    assert "Moved to To GmbH." in response.get_data(as_text=True)


def test_the_audit_log_keeps_ids_and_shows_names_beside_them(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Audited Kft.")
    auditor = auth.login("auditor")
    html = _main(client.get(f"/audit/?controller_id={controller.id}").get_data(as_text=True))
    assert f'<code>{controller.id}</code> <span class="name">Audited Kft.</span>' in html
    html = _main(client.get(f"/audit/?action=auth.login&target_id={auditor.id}").get_data(as_text=True))
    assert f'<code>staff:{auditor.id}</code> <span class="name">{auditor.email}</span>' in html


def test_the_home_page_lists_each_queue_with_its_open_count(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    mine, other = make_controller(session, name="Mine AG"), make_controller(session, name="Other AG")
    for status in ("new", "open", "waiting", "closed"):
        _ticket(session, mine.id, status=status)
    _ticket(session, other.id)
    _ticket(session, None)
    auth.login("agent", controllers=[mine])
    home = _main(client.get("/").get_data(as_text=True))
    assert re.search(r"Mine AG</span> <span class=\"count\">3 open</span>", home)
    assert "Other AG" not in home and "Triage" not in home
    auth.logout()
    auth.login("privacy_officer")
    home = _main(client.get("/").get_data(as_text=True))
    assert re.search(r"Triage</span> <span class=\"count\">1 open</span>", home)
    assert re.search(r"Other AG</span> <span class=\"count\">1 open</span>", home)


# --- 2. a ticket knows its request ---------------------------------------------------------


def test_a_ticket_links_to_its_request_and_shows_the_forward_to_the_named_contact(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Forward GmbH", dsr_contacts=["dpo@forward.example"])
    dsr = recent_dsr(session, controller.id, hours_ago=1)
    assert forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0) == 1
    auth.login("privacy_officer")
    page = _main(client.get(f"/tickets/{dsr.ticket_id}").get_data(as_text=True))
    # The ticket links to its request instead of offering to record one again
    assert f'href="/dsr/{dsr.id}"' in page and f"Data-subject request {dsr.reference}" in page
    assert "This is a data-subject request" not in page
    # The forward is a forward to the named contact with the outbox row's state, not an internal note with a code line
    forward_html = page.split('class="message message-forward"', 1)[1].split("</article>", 1)[0]
    assert "to dpo@forward.example (Forward GmbH)" in forward_html and "queued for sending" in forward_html
    assert "code: dsr_forward" not in page and "dsr_forward" not in page
    # And the request links back to its ticket, by reference, with the forward's contact and delivery state
    ticket = session.get_one(Ticket, dsr.ticket_id)
    request_page = _main(client.get(f"/dsr/{dsr.id}").get_data(as_text=True))
    assert f'<a href="/tickets/{ticket.id}">{ticket.reference}</a>' in request_page
    assert "to dpo@forward.example" in request_page and "queued for sending" in request_page


def test_an_agent_sees_the_request_of_a_ticket_without_a_link_it_may_not_open(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    dsr = recent_dsr(session, controller.id, hours_ago=1)
    auth.login("agent", controllers=[controller])
    page = _main(client.get(f"/tickets/{dsr.ticket_id}").get_data(as_text=True))
    assert f"Data-subject request {dsr.reference}" in page and f'href="/dsr/{dsr.id}"' not in page
    assert "This is a data-subject request" not in page


# --- 3. actions say when they cannot be used -------------------------------------------------


def test_actions_without_an_instruction_are_disabled_with_the_reason_in_the_page(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Careful SA")
    dsr = recent_dsr(session, controller.id, hours_ago=1)
    auth.login("privacy_officer")
    panel = client.get(f"/dsr/{dsr.id}").get_data(as_text=True).split('id="subject-data"', 1)[1]
    for kind, label, reason in [
        ("export", "Export for the controller", "to provide the data"),
        ("erase", "Erase", "to erase"),
        ("rectify", "Rectify", "to rectify"),
        ("restrict", "Restrict", "to restrict processing"),
    ]:
        why = f"why-{kind}-{controller.id}"
        assert re.search(rf'<button type="submit" disabled aria-describedby="{why}">{label}</button>', panel), label
        assert f'<small class="why-not" id="{why}">No confirmed instruction of Careful SA {reason}.</small>' in panel
    assert 'title="no confirmed instruction"' not in panel


# --- 4. each request once ------------------------------------------------------------------


def test_the_dashboard_lists_each_request_once_and_the_overdue_banner_once(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    routed = recent_dsr(session, controller.id, hours_ago=22)
    triage = recent_dsr(session, None, hours_ago=23, email="nobody@unknown.example")
    auth.login("privacy_officer")
    html = client.get("/dsr/").get_data(as_text=True)
    assert html.count(f">{triage.reference}</a>") == 1 and html.count(f">{routed.reference}</a>") == 1
    assert str(triage.reference) in html.split('id="triage"')[1].split("</table>")[0]
    assert str(routed.reference) in html.split('id="unforwarded"')[1].split("</table>")[0]
    # One overdue banner: the dashboard's own (the site-wide one links here, and is left out here)
    assert html.count('role="alert"') == 1 and "within 4 hours of the deadline" in html
    assert "Open the DSR dashboard" not in html
    # Elsewhere the site-wide banner still shows
    assert "Open the DSR dashboard" in client.get("/tickets/").get_data(as_text=True)


# --- 5. errors are errors ------------------------------------------------------------------


def test_an_unknown_queue_is_a_404_for_every_role(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    for role in ("privacy_officer", "agent"):  # (admins do not work tickets: 403 before any lookup)
        auth.logout()
        auth.login(role)
        response = client.get("/tickets/queue/999999")
        assert response.status_code == 404, role
        assert "Queue of" not in response.get_data(as_text=True)


def test_the_controller_form_shows_all_its_errors_at_once(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    auth.login("admin")
    response = client.post("/controllers/new", data={"name": "", "dsr_contacts": "not an address", "domains": "bad domain", "status": "active"})
    assert response.status_code == 422
    errors = re.findall(r'<small class="error" role="alert">([^<]+)</small>', response.get_data(as_text=True))
    assert len(errors) == 3, errors


def test_the_staff_form_shows_all_its_errors_at_once(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    auth.login("admin")
    response = client.post("/admin/users/new", data={"email": "not-an-address", "role": "wizard", "controllers": ["999999"]})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    errors = re.findall(r'<small class="error" role="alert">([^<]+)</small>', html)
    assert len(errors) == 3, errors


def test_the_request_form_shows_all_its_errors_at_once(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    ticket = _ticket(session, make_controller(session).id)
    auth.login("privacy_officer")
    response = client.post(f"/dsr/new/{ticket.id}", data={"types": ["nonsense"], "subject_email": "no-at-sign"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "types must be among" in html and "subject email is not an email address" in html


# --- 6. demo data reads well ---------------------------------------------------------------


def test_demo_names_are_transliterated_not_stripped() -> None:
    assert [ascii_local(n) for n in ("Jürgen", "Müller", "Amélie", "García", "Chloé", "Łukasz", "Ørsted")] == [
        "jurgen",
        "muller",
        "amelie",
        "garcia",
        "chloe",
        "lukasz",
        "orsted",
    ]


def test_demo_seed_addresses_keep_their_letters_and_a_second_run_says_how_to_log_in(runner: FlaskCliRunner, session: Session) -> None:
    first: Result = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    addresses = [t.requester_email or "" for t in session.scalars(select(Ticket).limit(400))]
    assert addresses and all(a.isascii() for a in addresses)
    assert not [a for a in addresses if a.split(".")[0] in ("jrgen", "amlie", "chlo") or ".mller" in a or ".garca" in a]
    assert any(a.startswith("jurgen.") for a in addresses) and any(".muller" in a for a in addresses)
    again = runner.invoke(args=["demo", "seed"])
    assert again.exit_code == 0
    assert "demo accounts already exist (admin@desk.example" in again.output
    assert re.search(r"flask --app wsgi users (reset-password|create)", again.output)
    assert session.scalar(select(User).where(User.email == "admin@desk.example")) is not None
