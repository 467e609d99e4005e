"""Helpers for worker tests: worker threads in this process, and the environment of a desk process of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from flask import Flask

from app.extensions import db
from app.jobs.broker import start_worker
from app.mail.models import OutboxEmail
from tests.conftest import TEST_MASTER_SECRET

# The outbox tests' stale-claim limit (mail_app): short, so a dead worker's claim goes stale within a test.
STALE_SECONDS = 2.0


@contextmanager
def worker() -> Iterator[dramatiq.Worker]:
    """Two worker threads on the suite's broker while the block runs."""
    running = start_worker(threads=2)
    try:
        yield running
    finally:
        running.stop()


def process_env(app: Flask, **settings: str) -> dict[str, str]:
    """The environment for a desk subprocess on the app's database and instance folder, with none of the broker or SMTP settings of this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRAMATIQ_", "SMTP_", "DATABASE_"))}
    env.update(
        DATABASE_URL=app.config["DATABASE_URL"],
        DESK_INSTANCE_PATH=app.config["INSTANCE_PATH"],
        SECRET_KEY="test-secret-key",
        MASTER_SECRET=TEST_MASTER_SECRET,
        **settings,
    )
    return env


def row_of(app: Flask, outbox_id: int) -> OutboxEmail:
    """The outbox row as committed, read in a session of its own."""
    with app.app_context(), db.session_scope() as session:
        row = session.get(OutboxEmail, outbox_id)
        assert row is not None
        return readable(row)


def readable(row: OutboxEmail) -> OutboxEmail:
    """The row with its encrypted Message-ID fields decrypted while its session is open, so the test may read them after."""
    _ = (row.message_id, row.in_reply_to, row.references)
    return row
