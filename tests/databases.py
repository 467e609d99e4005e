"""Fresh databases for tests: Postgres when TEST_DATABASE_URL points at a server, else SQLite files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config.settings import normalise_database_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or None
TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL") or None
ON_POSTGRES = bool(TEST_DATABASE_URL and TEST_DATABASE_URL.startswith("postgres"))


@contextmanager
def fresh_database(folder: Path, label: str = "desk") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it afterwards."""
    name = f"dsr_test_{label}_{uuid.uuid4().hex[:10]}"
    if not ON_POSTGRES:
        yield f"sqlite:///{folder / (name + '.sqlite3')}"
        return
    assert TEST_DATABASE_URL is not None
    with server_database(normalise_database_url(TEST_DATABASE_URL, variable="TEST_DATABASE_URL"), name) as url:
        yield url


@contextmanager
def server_database(admin_url: str, name: str) -> Iterator[str]:
    """Database `name` created on the Postgres server of `admin_url`, its URL yielded, dropped (even if in use) afterwards.

    Also what bench/common.py's fresh databases use.
    """
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
