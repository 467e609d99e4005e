"""Fixtures for worker tests: an app on its own, really committed database.

Worker threads commit in their own sessions, so these tests cannot share the
rolled-back test transaction. The app-context middleware is a process global:
the fixture points it at the private app and back to the suite's afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from app import migrations as desk_migrations
from app.extensions import db
from tests.conftest import make_config
from tests.databases import fresh_database
from workers.broker import app_context


@pytest.fixture
def committed_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    """A second app on a fresh, migrated database; the suite's app is restored afterwards."""
    with fresh_database(tmp_path, "workers") as url:
        desk_migrations.upgrade(url)
        private = create_app(make_config(url, tmp_path / "instance"))
        try:
            yield private
        finally:
            db.state(private).engine.dispose()
            app_context.attach(app)
