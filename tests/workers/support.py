"""Helpers for worker tests: worker threads in this process, and the environment of a desk process of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from flask import Flask

from app.jobs.broker import start_worker
from tests.conftest import TEST_MASTER_SECRET


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
