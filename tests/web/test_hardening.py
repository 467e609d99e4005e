"""Issue 12 item 14: owner-only files, no data: URLs, no glyph list in the logs."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import create_app
from app.extensions import db
from app.subject_data import service
from app.subject_data.models import SubjectRun
from app.tickets.html import sanitise_html
from tests.conftest import make_config
from tests.databases import ON_POSTGRES
from tests.factories import TEST_PRINCIPAL
from tests.subject_data.support import CANARY_NAME, T0, drain, instruct, scene


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(ON_POSTGRES, reason="the embedded SQLite default")
def test_instance_folder_and_sqlite_files_are_owner_only(app: Flask, tmp_path: Path) -> None:
    old = __import__("os").umask(0o022)  # a usual umask: group and others would otherwise read
    try:
        instance = tmp_path / "instance"
        desk = create_app(make_config(f"sqlite:///{instance / 'desk.sqlite3'}", instance))
        with desk.app_context(), db.state(desk).engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (id integer)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
            # While a connection is open the -wal and -shm files exist
            for name in ("desk.sqlite3", "desk.sqlite3-wal", "desk.sqlite3-shm"):
                assert _mode(instance / name) == 0o600, name
        assert _mode(instance) == 0o700
        db.state(desk).engine.dispose()
    finally:
        __import__("os").umask(old)
    from app.jobs.broker import app_context

    app_context.attach(app)


def test_an_existing_loose_instance_folder_is_tightened(app: Flask, tmp_path: Path) -> None:
    instance = tmp_path / "loose"
    instance.mkdir(mode=0o755)
    instance.chmod(0o755)
    desk = create_app(make_config(f"sqlite:///{tmp_path / 'x.sqlite3'}", instance))
    assert _mode(instance) == 0o700
    db.state(desk).engine.dispose()
    from app.jobs.broker import app_context

    app_context.attach(app)


@pytest.mark.parametrize(
    "html",
    [
        '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
        '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">click</a>',
        '<img src=" DATA:image/png;base64,AAAA">',
    ],
)
def test_the_sanitiser_drops_data_urls(html: str) -> None:
    assert "data:" not in sanitise_html(html).lower()


def test_inline_cid_images_are_kept() -> None:
    assert 'src="cid:part1"' in sanitise_html('<img src="cid:part1" alt="logo">')


def test_the_pdf_export_logs_no_glyph_list(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    sc = scene(session)
    instruct(session, sc, "provide_data")
    run = service.start(session, sc.dsr.id, sc.controller.id, "export", by=TEST_PRINCIPAL, now=T0)
    caplog.set_level(logging.DEBUG)
    drain(session, run.id)
    assert session.get(SubjectRun, run.id) is not None
    assert not [r for r in caplog.records if r.name.startswith("fontTools") and r.levelno < logging.WARNING]
    assert not [r for r in caplog.records if CANARY_NAME in r.getMessage()]
