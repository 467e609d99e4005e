"""A real browser against a real server: Debian's Chromium driven by Playwright.

Log in with `live_server.login(page, "agent", controllers=(c_id,))` (the real two-step form).

`live_server` serves a fresh app on a fresh database (real commits) on a free
loopback port in a thread; `page` is a new Chromium page. Playwright never
downloads a browser: it launches /usr/bin/chromium (scripts/system-packages).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from app.auth import mfa
from app.auth.models import User
from app.db import utcnow
from app.extensions import db
from app.jobs.broker import app_context
from tests.conftest import make_config
from tests.databases import migrated_database
from tests.factories import TEST_PASSWORD, make_user

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags of a headless Chromium on a machine with no network but loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class LiveServer:
    """A running desk: its app (for set-up through services) and base URL."""

    app: Flask
    url: str

    def make_user(self, role: str = "admin", *, enrolled: bool = True, controllers: tuple[int, ...] = ()) -> User:
        """A committed staff account of `role` with TEST_PASSWORD (and a TOTP secret when `enrolled`)."""
        with self.app.app_context(), db.session_scope() as session:
            return make_user(session, role, enrolled=enrolled, controllers=list(controllers))

    def login(self, page: Page, role: str = "admin", *, controllers: tuple[int, ...] = ()) -> User:
        """Log a new enrolled user of `role` in through the real two-step form in the browser."""
        user = self.make_user(role, controllers=controllers)
        page.goto(f"{self.url}/login")
        page.get_by_label("Email").fill(user.email)
        page.get_by_label("Password").fill(TEST_PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Code").fill(mfa.code_at(user.totp_secret or "", utcnow()))
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        return user


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, app: Flask) -> Iterator[LiveServer]:
    """The desk served on 127.0.0.1 in a thread, on a database of its own."""
    folder = tmp_path_factory.mktemp("live")
    with migrated_database(folder, "browser") as url:
        # As a user meets it: CSRF on, not in testing mode.
        live_app = create_app(make_config(url, Path(folder) / "instance", WTF_CSRF_ENABLED=True, TESTING=False))
        server: BaseWSGIServer = make_server("127.0.0.1", 0, live_app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield LiveServer(live_app, f"http://127.0.0.1:{server.server_port}")
        finally:
            server.shutdown()
            thread.join(timeout=5)
            engine = db.state(live_app).engine
            # Every request gives its connection back. A request thread may still be finishing (the browser
            # already has the last byte), so allow it a moment; a connection still out after that is a leak
            # (a streamed download once kept one for good), and would otherwise surface much later as a
            # ResourceWarning in whichever test the garbage collector happened to run.
            deadline = time.monotonic() + 10
            while engine.pool.checkedout() and time.monotonic() < deadline:
                time.sleep(0.05)
            leaked = engine.pool.checkedout()
            engine.dispose()
            app_context.attach(app)
            assert leaked == 0, f"{leaked} database connection(s) never returned to the pool by the live server's requests"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the run."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    new_page = context.new_page()
    yield new_page
    context.close()
