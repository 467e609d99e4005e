"""Fixtures: `app`, `connection`, `session` (one rolled-back transaction per test), `client`, `runner`.

The suite runs against Postgres + Redis when TEST_DATABASE_URL / TEST_BROKER_URL
point at them, and against SQLite + the in-process broker otherwise. Each run
creates its own database (and Redis namespace) and drops it at the end.

Tests that need real commits seen by other threads or processes (workers,
concurrency) must not use `session`: they make their own database with
`tests.databases.fresh_database`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app import create_app
from app import migrations as desk_migrations
from app.extensions import db
from config.settings import DevelopmentConfig
from tests import NAMESPACE
from tests.databases import TEST_BROKER_URL, fresh_database

TEST_MASTER_SECRET = "test-master-secret-0123456789abcdef-0123456789"


def make_config(database_url: str, instance: Path, **overrides: Any) -> dict[str, Any]:
    """Settings as the environment would give them, plus test switches."""
    env = {
        "DESK_INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key",
        "MASTER_SECRET": TEST_MASTER_SECRET,
        "DRAMATIQ_BROKER_URL": TEST_BROKER_URL or "",
        "DRAMATIQ_NAMESPACE": NAMESPACE,
    }
    env.update({k: v for k, v in overrides.items() if k.isupper() and isinstance(v, str)})
    settings = DevelopmentConfig.from_env(env)
    settings.update(TESTING=True, WTF_CSRF_ENABLED=False, DRAMATIQ_NAMESPACE=NAMESPACE)
    settings.update({k: v for k, v in overrides.items() if not isinstance(v, str)})
    return settings


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database at the migration head, for the whole run."""
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        desk_migrations.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The app on the test database."""
    application = create_app(make_config(database_url, tmp_path_factory.mktemp("instance")))
    yield application
    db.state(application).engine.dispose()


@pytest.fixture
def connection(app: Flask) -> Iterator[Connection]:
    """One outer transaction per test; every session of the test joins it and it is rolled back."""
    state = db.state(app)
    conn = state.engine.connect()
    outer = conn.begin()
    state.sessionmaker.configure(bind=conn, join_transaction_mode="create_savepoint")
    try:
        yield conn
    finally:
        state.sessionmaker.configure(bind=state.engine, join_transaction_mode="conservative_savepoint")
        outer.rollback()
        conn.close()


@pytest.fixture
def session(app: Flask, connection: Connection) -> Iterator[Session]:
    """A session inside the test's transaction."""
    s = db.state(app).sessionmaker()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def client(app: Flask, connection: Connection) -> FlaskClient:
    """A test client whose requests share the test's transaction."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask, connection: Connection) -> FlaskCliRunner:
    """A CLI runner whose commands share the test's transaction."""
    return app.test_cli_runner()
