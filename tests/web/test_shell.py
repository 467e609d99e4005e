"""The web shell: health check, error pages, vendored assets, controller pages."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.db import utcnow
from app.keys.service import shred_controller_keys
from tests.conftest import AuthActions
from tests.factories import TEST_PRINCIPAL, make_controller


def test_healthz_reports_database_and_broker_without_personal_data(client: FlaskClient, session: Session) -> None:
    make_controller(session, dsr_contacts=["canary.person@canary.example"])
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"] in ("ok", "in-process")
    assert "canary" not in response.get_data(as_text=True)


def test_unknown_page_is_a_404_page_without_a_stack_trace(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    text = response.get_data(as_text=True)
    assert "Not found" in text
    assert "Traceback" not in text


def test_pages_load_nothing_from_the_internet(client: FlaskClient, auth: AuthActions) -> None:
    auth.login("admin")
    html = client.get("/controllers/").get_data(as_text=True)
    assert "Controllers" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    css = client.get("/static/desk.css")
    assert css.status_code == 200
    css.close()


def test_create_controller_through_the_form(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    auth.login("admin")
    response = client.post(
        "/controllers/new",
        data={"name": "Form Co", "dsr_contacts": "dpo@form.example", "domains": "form.example", "status": "active"},
    )
    assert response.status_code == 302
    page = client.get("/controllers/").get_data(as_text=True)
    assert "Form Co" in page and "dpo@form.example" in page


def test_bad_email_in_the_form_is_shown_and_nothing_is_saved(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    auth.login("admin")
    before = session.query(Controller).count()
    response = client.post("/controllers/new", data={"name": "Bad Co", "dsr_contacts": "nobody-at-all", "status": "active"})
    assert response.status_code == 422
    assert "not a valid email address" in response.get_data(as_text=True)
    assert session.query(Controller).count() == before


def test_edit_controller_and_unknown_id_404(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    auth.login("admin")
    c = make_controller(session)
    form = client.get(f"/controllers/{c.id}").get_data(as_text=True)
    assert c.name in form
    response = client.post(
        f"/controllers/{c.id}",
        data={"name": "Renamed Co", "dsr_contacts": "x@renamed.example", "status": "active"},
    )
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Controller, c.id).name == "Renamed Co"
    assert client.get("/controllers/999999").status_code == 404


def test_an_id_too_large_for_the_database_is_a_404_everywhere(client: FlaskClient, auth: AuthActions) -> None:
    auth.login("admin")
    for url in ("/controllers/99999999999", "/controllers/99999999999/view", "/tickets/99999999999", "/controllers/0"):
        response = client.get(url)
        assert response.status_code == 404, url


def test_a_page_whose_data_key_was_shredded_says_so_instead_of_a_server_error(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    # Given a controller whose data key was destroyed (crypto-shredding)
    gone = make_controller(session, name="Shredded Detail AG", dsr_contacts=["dpo@shredded-detail.example"])
    shred_controller_keys(session, gone.id, by=TEST_PRINCIPAL, now=utcnow())
    auth.login("admin")
    # When an admin opens its page
    response = client.get(f"/controllers/{gone.id}/view")
    # Then the page opens and says each value is unreadable, and shows no ciphertext or address
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "unreadable: this controller&#39;s key was destroyed (crypto-shredded)" in page
    assert "dpo@shredded-detail.example" not in page
    # And the list still shows the controller, its address marked unreadable
    listing = client.get("/controllers/").get_data(as_text=True)
    assert "Shredded Detail AG" in listing and "unreadable: data key shredded" in listing
