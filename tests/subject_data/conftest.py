"""An app on its own, really committed database, for tests with threads or database file bytes."""

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
    with fresh_database(tmp_path, "subject") as url:
        desk_migrations.upgrade(url)
        private = create_app(make_config(url, tmp_path / "instance"))
        try:
            yield private
        finally:
            db.state(private).engine.dispose()
            app_context.attach(app)
