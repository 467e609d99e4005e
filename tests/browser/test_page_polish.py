"""Small screens, zoom and the keyboard (issue 16 items 3 and 8), measured in the browser.

At 200 % zoom a 1280-pixel screen is 640 CSS pixels wide: the wide lists (audit log, ticket queue,
DSR dashboard, staff list) must fit it, stacked or wrapped, with nothing cut off (WCAG 1.4.10).
A skip link leads past the navigation, the focus ring stays visible, and an action that cannot
be used looks disabled and says why in the page.
"""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Browser, Page, expect

from app.db import utcnow
from app.dsr.requests import DsrInput, create_from_ticket
from app.extensions import db
from app.principal import Principal
from app.tickets import service as tickets
from tests.browser.conftest import LiveServer
from tests.browser.journey import ARTIFACTS, axe_violations, describe
from tests.factories import make_controller, make_user

BY = Principal.system("browser-reflow")
ZOOMED = {"width": 640, "height": 800}  # 1280 x 800 at 200 %
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def busy_desk(live_server: LiveServer) -> dict[str, int]:
    """A controller whose queue, requests, staff and audit log hold long values (names, addresses)."""
    with live_server.app.app_context(), db.session_scope() as session:
        controller = make_controller(session, name="Reflow Versicherungsgesellschaft Aktiengesellschaft")
        for n in range(12):
            ticket = tickets.create_ticket(
                session,
                controller_id=controller.id,
                requester_name=f"Maximiliane Oberstaatsanwältin-Schmidt {n}",
                requester_email=f"maximiliane.oberstaatsanwaeltin-schmidt.{n}@a-very-long-mail-provider.example",
                subject=f"Auskunftsersuchen nach Artikel 15 DSGVO bezüglich meiner Kundendaten {n}",
                by=BY,
                now=utcnow() - dt.timedelta(hours=n),
            )
            tickets.add_message(
                session,
                ticket,
                tickets.MessageInput(
                    direction="inbound", sender_email=ticket.requester_email, body_text="Bitte um Auskunft.", message_id=f"r{n}@reflow.example"
                ),
                by=BY,
                now=utcnow() - dt.timedelta(hours=n),
            )
            if n < 3:
                data = DsrInput(types=["access", "erasure", "rectification"], subject_email=ticket.requester_email, request_text="Auskunft.")
                create_from_ticket(session, ticket.id, data, by=BY, now=utcnow())
        for n in range(4):
            make_user(session, "agent", email=f"a.rather.long.staff.address.{n}@support-desk-of-the-processor.example", controllers=[controller])
        return {"controller": controller.id}


def _login_at(browser: Browser, live_server: LiveServer, role: str, viewport: dict[str, int], controllers: tuple[int, ...] = ()) -> Page:
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(10_000)
    live_server.login(page, role, controllers=controllers)
    return page


@pytest.mark.parametrize(
    ("role", "path", "name"),
    [
        ("auditor", "/audit/", "audit log"),
        ("agent", "/tickets/queue/{controller}", "ticket queue"),
        ("privacy_officer", "/dsr/", "DSR dashboard"),
        ("admin", "/admin/users", "staff list"),
    ],
)
def test_wide_lists_fit_a_zoomed_screen(live_server: LiveServer, browser: Browser, busy_desk: dict[str, int], role: str, path: str, name: str) -> None:
    # Given a 640-pixel-wide window (1280 pixels at 200 % zoom)
    page = _login_at(browser, live_server, role, ZOOMED, controllers=(busy_desk["controller"],) if role == "agent" else ())
    try:
        # When the list opens
        page.goto(live_server.url + path.format(**busy_desk))
        folder = ARTIFACTS / db.state(live_server.app).engine.dialect.name / "reflow"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name.replace(' ', '-')}-640.png"), full_page=True)
        # Then the page never scrolls sideways, and every cell lies within the window
        width = page.evaluate("document.documentElement.clientWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"the {name} is wider than the screen"
        overflowing = page.evaluate(
            """(w) => [...document.querySelectorAll('main td, main th, main a, main button, main input, main select')]
                 .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > w + 1)
                 .map(e => e.outerHTML.slice(0, 80))""",
            width,
        )
        assert not overflowing, f"cut off in the {name}: {overflowing[:3]}"
        # And the stacked rows still name each value
        assert page.locator("table.stack td[data-label]").count() > 0
        violations = axe_violations(page)
        assert not violations, describe(violations)
    finally:
        page.context.close()


def test_a_skip_link_leads_past_the_navigation_and_focus_stays_visible(live_server: LiveServer, page: Page) -> None:
    live_server.login(page, "admin")
    page.goto(f"{live_server.url}/admin/users")
    # The first Tab reaches the skip link, shown on screen
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["y"] >= 0 and box["width"] > 0
    # Following it puts the keyboard in the page's content
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"
    # The next Tab lands inside the content, and the focused control draws a ring
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")
    style = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()")
    assert style[0] != "none" and style[1] >= 2, style


def test_actions_without_an_instruction_look_disabled_and_say_why(live_server: LiveServer, page: Page, busy_desk: dict[str, int]) -> None:
    # Given a request forwarded to nobody yet, with no instruction of its controller
    live_server.login(page, "privacy_officer")
    page.goto(f"{live_server.url}/dsr/")
    page.locator("#unforwarded a, #forwarded a").first.click()
    panel = page.locator("#subject-data")
    # Then each action is disabled, looks unlike an enabled button, and the reason is in the page, tied to the button
    enabled_look = page.get_by_role("button", name="Close the request and notify the controller").evaluate("e => getComputedStyle(e).backgroundColor")
    for label, reason in [
        ("Export for the controller", "to provide the data"),
        ("Erase", "to erase"),
        ("Rectify", "to rectify"),
        ("Restrict", "to restrict processing"),
    ]:
        button = panel.get_by_role("button", name=label, exact=True)
        expect(button).to_be_disabled()
        assert button.evaluate("e => getComputedStyle(e).backgroundColor") != enabled_look
        assert button.evaluate("e => getComputedStyle(e).cursor") == "not-allowed"
        expect(button).to_have_accessible_description(f"No confirmed instruction of Reflow Versicherungsgesellschaft Aktiengesellschaft {reason}.")
        expect(panel).to_contain_text(f"No confirmed instruction of Reflow Versicherungsgesellschaft Aktiengesellschaft {reason}.")
