"""A privacy officer exports a subject's data for the controller in a real browser: the token never shows in a URL or a Referer."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, Request, expect
from sqlalchemy import select

from app.db import utcnow
from app.extensions import db
from app.subject_data.models import SubjectRun
from tests.browser.conftest import LiveServer
from tests.subject_data.support import CANARY_EMAIL, drain, instruct, scene

expect.set_options(timeout=20_000)


def test_officer_exports_and_downloads_once_through_a_post_only_token(live_server: LiveServer, page: Page, tmp_path: Path) -> None:
    # Given a request whose controller confirmed "provide the data to us"
    with live_server.app.app_context(), db.session_scope() as session:
        sc = scene(session, now=utcnow())
        instruct(session, sc, "provide_data", now=utcnow())
        dsr_id, reference = sc.dsr.id, sc.dsr.reference
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r))

    # When a privacy officer sees the counts on the request's page and asks for the export
    live_server.login(page, "privacy_officer")
    page.goto(f"{live_server.url}/dsr/{dsr_id}")
    expect(page.locator("#subject-data")).to_contain_text("Export for the controller")
    page.get_by_role("button", name="Export for the controller").click()
    expect(page.get_by_text("Export queued")).to_be_visible()
    # (the worker's part, done here: the test server runs no worker thread)
    with live_server.app.app_context(), db.session_scope() as session:
        run_id = session.scalars(select(SubjectRun.id).where(SubjectRun.dsr_id == dsr_id)).one()
        drain(session, run_id, now=utcnow())
    page.goto(f"{live_server.url}/subject-data/runs/{run_id}")
    page.get_by_role("row", name="JSON").get_by_role("button", name="Get a download link").click()
    expect(page.get_by_role("heading", name="Download ready")).to_be_visible()
    token = page.locator("input[name=token]").input_value()

    # Then the file downloads once
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the JSON file").click()
    saved = tmp_path / "export.json"
    info.value.save_as(saved)
    data = json.loads(saved.read_text())
    assert data["dsr"]["reference"] == reference and data["subject"]["email"] == CANARY_EMAIL

    # And the token was never in a URL, nor sent as a Referer
    assert len(token) > 100
    assert not [r.url for r in requests if token in r.url]
    download_posts = [r for r in requests if r.url.endswith("/subject-data/download")]
    assert download_posts and all(r.header_value("referer") is None for r in download_posts)
