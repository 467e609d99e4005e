"""A staff member registers and edits a controller in a real browser."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer


def test_register_a_controller_then_fix_a_bad_address(live_server: LiveServer, page: Page) -> None:
    # Given an admin on the controllers page
    live_server.login(page, "admin")
    page.goto(f"{live_server.url}/controllers/")
    page.get_by_role("link", name="New controller").click()
    # When the form is sent with a malformed DSR contact
    page.get_by_label("Name").fill("Browser Test GmbH")
    page.get_by_label("DSR contacts").fill("not-an-address")
    page.get_by_label("Email domains").fill("browser-test.example")
    page.get_by_role("button", name="Save").click()
    # Then the error shows beside the field and nothing is listed
    expect(page.get_by_role("alert")).to_contain_text("not a valid email address")
    # When it is corrected
    page.get_by_label("DSR contacts").fill("dpo@browser-test.example")
    page.get_by_role("button", name="Save").click()
    # Then the list shows the controller and a confirmation
    expect(page.get_by_role("status")).to_contain_text("created")
    row = page.get_by_role("row", name="Browser Test GmbH")
    expect(row).to_contain_text("dpo@browser-test.example")
    expect(row).to_contain_text("browser-test.example")
