"""First login in a real browser: password, TOTP enrolment from the page's secret, recovery codes."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from app.auth import mfa
from app.db import utcnow
from tests.browser.conftest import LiveServer
from tests.factories import TEST_PASSWORD


def test_first_login_enrols_totp_then_reaches_the_desk(live_server: LiveServer, page: Page) -> None:
    # Given a new staff account without a second factor
    user = live_server.make_user("privacy_officer", enrolled=False)
    # When they log in with the password
    page.goto(f"{live_server.url}/controllers/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    # Then they must set up TOTP: first the enrolment code the admin handed over (issue 12 item 6)
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    expect(page.locator("figure.qr")).to_have_count(0)
    page.get_by_label("Code").fill(user.test_enrolment_code)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Continue").click()
    # then a server-rendered QR code and the secret as text
    expect(page.locator("figure.qr svg, figure.qr img")).to_have_count(1)
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    # A wrong code is refused
    page.get_by_label("Code").fill("000000" if mfa.code_at(secret, utcnow()) != "000000" else "111111")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert")).to_be_visible()
    # The right one enrols and shows ten recovery codes once
    page.get_by_label("Code").fill(mfa.code_at(secret, utcnow()))
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("ul.codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them, continue").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def test_wrong_password_and_unknown_user_look_the_same(live_server: LiveServer, page: Page) -> None:
    user = live_server.make_user("agent")
    messages = []
    for email, password in ((user.email, "wrong-password-123456"), ("nobody@desk.example", "wrong-password-123456")):
        page.goto(f"{live_server.url}/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert").first).to_be_visible()
        # What a person reads, with layout whitespace folded (it may differ while the page settles).
        messages.append(" ".join(page.locator("main").inner_text().split()))
    assert messages[0] == messages[1]
