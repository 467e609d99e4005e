"""The real login with TOTP in headless Chromium ends on the dashboard, captured as a screenshot."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer


def test_login_with_totp_reaches_the_dashboard_and_logout_ends_it(live_server: LiveServer, page: Page, tmp_path: Path) -> None:
    # Given an admin who logs in with password and a TOTP code
    live_server.login(page, "admin")
    # Then the dashboard shows the admin's navigation and a logout button
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="DSR Desk")).to_be_visible()
    expect(page.locator("header nav").get_by_role("link", name="Staff")).to_be_visible()
    expect(page.locator("header nav").get_by_role("link", name="Audit log")).to_have_count(0)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 2000
    # When they log out, the dashboard is behind the login again
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/login?next=/")
