"""`mail ingest < message.eml` as an MTA pipe runs it: real processes, real exit codes (sysexits)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import make_engine
from app.mail.quarantine import QuarantinedMessage
from app.tickets.models import Message
from config.settings import REPO_ROOT, normalise_database_url
from tests.databases import migrated_database
from tests.mail.conftest import build, corpus


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own: the subprocesses commit for real."""
    with migrated_database(tmp_path, "mailcli") as url:
        yield url


def pipe(raw: bytes, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DESK_", "MASTER_", "SECRET_KEY", "IMAP_"))}
    env.update({"DESK_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40, "MASTER_SECRET": "m" * 40, "DATABASE_URL": database_url})
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "ingest"], input=raw, cwd=REPO_ROOT, env=env, capture_output=True, timeout=120
    )


def count(url: str, model: type) -> int:
    engine = make_engine(normalise_database_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(model)).scalar_one())
    finally:
        engine.dispose()


def test_stored_then_duplicate_exit_zero(database: str, tmp_path: Path) -> None:
    raw = build(message_id="<pipe-1@example.org>")
    first = pipe(raw, database, tmp_path)
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout.startswith(b"stored: ticket ")
    second = pipe(raw, database, tmp_path)
    assert second.returncode == 0 and second.stdout.startswith(b"duplicate: ticket ")
    assert count(database, Message) == 1


def test_malformed_is_kept_in_quarantine_and_accepted(database: str, tmp_path: Path) -> None:
    # Exit 0 once held (issue 15 item 8b): exit 65 had the MTA bounce the original to a possibly forged sender.
    result = pipe(corpus("hostile_no_headers.eml"), database, tmp_path)
    assert result.returncode == 0
    assert b"quarantined" in result.stdout and b"malformed" in result.stdout and result.stderr == b""
    assert count(database, QuarantinedMessage) == 1


def test_unreachable_database_exits_75_so_the_mta_retries(tmp_path: Path) -> None:
    result = pipe(build(), "postgresql://nobody@127.0.0.1:1/none", tmp_path)
    assert result.returncode == 75
    assert b"temporary failure" in result.stdout and result.stderr == b""
