"""Fresh databases for tests: Postgres when TEST_DATABASE_URL points at a server, else SQLite files.

`fresh_database` is empty (for tests of the migrations themselves); `migrated_database` is at the migration head,
a copy of one template the migrations built once for the test process (the same schema, a fraction of the time:
running the migrations took about 2 s per database on SQLite and 0.8 s on Postgres, and a run makes well over a
hundred such databases). `drop_template` removes the template at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from sqlalchemy import NullPool, create_engine, text
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
    with server_database(normalise_database_url(TEST_DATABASE_URL, variable="TEST_DATABASE_URL"), name, lazy_commit=True) as url:
        yield url


@contextmanager
def server_database(admin_url: str, name: str, *, template: str | None = None, lazy_commit: bool = False) -> Iterator[str]:
    """Database `name` created on the Postgres server of `admin_url` (a copy of database `template` when given), its
    URL yielded, dropped (even if in use) afterwards.

    `lazy_commit` (the tests' databases): its sessions commit without waiting for the WAL to reach the disk
    (synchronous_commit = off). A commit is still atomic and seen by every other session and process at once; only a
    crash of the server itself could lose the last few, and no test crashes the server. Benchmarks keep the default.
    Also what bench/common.py's fresh databases use.
    """
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        if lazy_commit:
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# The template of this test process: a migrated SQLite file, or a migrated Postgres database (its name).
_template: str | None = None
_template_folder: tempfile.TemporaryDirectory[str] | None = None


@contextmanager
def migrated_database(folder: Path, label: str = "desk") -> Iterator[str]:
    """A fresh database at the migration head (a copy of the process's template), its URL yielded, dropped afterwards.

    The template is made by the migrations (app.migrations.upgrade), as every database of the desk is; a copy has
    exactly its schema and no rows.
    """
    template = _migrated_template()
    name = f"dsr_test_{label}_{uuid.uuid4().hex[:10]}"
    if not ON_POSTGRES:
        target = folder / (name + ".sqlite3")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # owner-only, as app.db makes them
        with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
            source.backup(copy)
        yield f"sqlite:///{target}"
        return
    assert TEST_DATABASE_URL is not None
    with server_database(normalise_database_url(TEST_DATABASE_URL, variable="TEST_DATABASE_URL"), name, template=template, lazy_commit=True) as url:
        yield url


def _migrated_template() -> str:
    """The SQLite file or Postgres database name of this process's migrated template, made on first use."""
    global _template, _template_folder
    if _template is not None:
        return _template
    from app import migrations  # the app's import chain is not needed by tests that never ask for a database

    name = f"dsr_test_template_{uuid.uuid4().hex[:10]}"
    if not ON_POSTGRES:
        _template_folder = tempfile.TemporaryDirectory(prefix="dsr-test-template-")
        path = Path(_template_folder.name) / f"{name}.sqlite3"
        migrations.upgrade(f"sqlite:///{path}")
        # One self-contained file: the migrations' WAL folded back in, so a backup copies everything.
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _template = str(path)
        return _template
    assert TEST_DATABASE_URL is not None
    admin_url = normalise_database_url(TEST_DATABASE_URL, variable="TEST_DATABASE_URL")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))  # as the copies (server_database)
    admin.dispose()
    _template = name
    try:
        migrations.upgrade(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    except BaseException:
        drop_template()
        raise
    return name


def drop_template() -> None:
    """Remove this process's template (nothing when none was made)."""
    global _template, _template_folder
    if _template is None:
        return
    if ON_POSTGRES:
        assert TEST_DATABASE_URL is not None
        admin = create_engine(normalise_database_url(TEST_DATABASE_URL, variable="TEST_DATABASE_URL"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)'))
        admin.dispose()
    elif _template_folder is not None:
        _template_folder.cleanup()
        _template_folder = None
    _template = None
