"""Fixtures: `app`, `connection`, `session` (one rolled-back transaction per test), `client`, `runner`, `auth`.

Every page but /login, the MFA steps, /healthz and /subprocessors needs a
logged-in, MFA-verified staff member. In a web test, log in first:

    def test_something(client, auth, session):
        auth.login("admin")                         # a new admin, logged in through the real forms
        auth.login("agent", controllers=[c])        # an agent who sees only controller c
        user = auth.login(make_user(session, "privacy_officer"))   # or an existing user
        auth.logout()

`auth.login` returns the User; the client then carries the session cookie.

The suite runs against Postgres + Redis when TEST_DATABASE_URL / TEST_BROKER_URL
point at them, and against SQLite + the in-process broker otherwise. Each run
creates its own database (and Redis namespace) and drops it at the end.

Tests that need real commits seen by other threads or processes (workers,
concurrency) must not use `session`: they take `committed_app`, an app on a
fresh database of its own (or `app_on_own_database` with settings of their own).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app import create_app
from app.auth import mfa
from app.auth.models import User
from app.controllers.models import Controller
from app.crypto.kept_active import forget_kept_keys
from app.db import utcnow
from app.extensions import db
from app.jobs.broker import app_context
from config.settings import DevelopmentConfig
from tests import NAMESPACE
from tests.databases import TEST_BROKER_URL, drop_template, migrated_database
from tests.factories import TEST_PASSWORD, make_user

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
        "BCRYPT_COST": "4",  # bcrypt's minimum: fast tests (production refuses less than 12)
    }
    env.update({k: v for k, v in overrides.items() if k.isupper() and isinstance(v, str)})
    settings = DevelopmentConfig.from_env(env)
    settings.update(TESTING=True, WTF_CSRF_ENABLED=False, DRAMATIQ_NAMESPACE=NAMESPACE)
    settings.update({k: v for k, v in overrides.items() if not isinstance(v, str)})
    return settings


@pytest.fixture(scope="session", autouse=True)
def _migrated_template() -> Iterator[None]:
    """The run's migrated template database (tests.databases.migrated_database copies it), removed at the end."""
    yield
    drop_template()


@pytest.fixture(autouse=True)
def _no_kept_keys() -> Iterator[None]:
    """Each test starts as a new process would, with no data key kept (app.crypto.kept_active): a key kept from an
    earlier test's rolled-back transaction is rightly refused by the write's check and written again, which would
    make a statement count depend on the order the tests ran in."""
    forget_kept_keys()
    yield


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database at the migration head, for the whole run."""
    with migrated_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The app on the test database."""
    application = create_app(make_config(database_url, tmp_path_factory.mktemp("instance")))
    yield application
    db.state(application).engine.dispose()


@contextmanager
def app_on_own_database(app: Flask, folder: Path, label: str, **overrides: Any) -> Iterator[Flask]:
    """A second app on a fresh, migrated database that really commits; the suite's `app` is restored afterwards.

    Worker threads and other processes commit in their own sessions, so such tests
    cannot share the rolled-back test transaction. The app-context middleware is a
    process global: creating the private app points it there, and this points it
    back at the suite's app at the end.
    """
    with migrated_database(folder, label) as url:
        private = create_app(make_config(url, folder / "instance", **overrides))
        try:
            yield private
        finally:
            db.state(private).engine.dispose()
            app_context.attach(app)


@pytest.fixture
def committed_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    """An app on a fresh, migrated database of its own, for tests whose commits must be real (workers, rollbacks, file bytes)."""
    with app_on_own_database(app, tmp_path, "committed") as private:
        yield private


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


class AuthActions:
    """Log a test client in and out through the real two-step login (password, then TOTP)."""

    def __init__(self, client: FlaskClient, session: Session) -> None:
        self.client = client
        self.session = session

    def login(self, who: User | str = "admin", *, controllers: Sequence[int | Controller] = ()) -> User:
        """Log in as `who` (a role name makes a new enrolled user of that role); returns the user."""
        user = who if isinstance(who, User) else make_user(self.session, who, controllers=controllers)
        assert user.totp_secret, "auth.login needs an enrolled user (make_user(..., enrolled=True))"
        # A TOTP step is accepted once: forget the last one so a helper login never looks like a replay.
        user.totp_last_step = None
        self.session.flush()
        response = self.client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)
        response = self.client.post("/login/mfa", data={"code": mfa.code_at(user.totp_secret, utcnow())})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.session.expire_all()
        return user

    def logout(self) -> None:
        """End the session through the logout button."""
        self.client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient, session: Session) -> AuthActions:
    """Login helper for web tests: `auth.login("agent", controllers=[c])`, `auth.logout()`."""
    return AuthActions(client, session)
