"""Fixtures for worker tests: the loopback SMTP server the outbox sends to, and an app that sends through it."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from flask import Flask

from tests.workers.smtp_support import SmtpServer, running_smtp
from tests.workers.support import STALE_SECONDS


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server on loopback, stopped after the test."""
    with running_smtp() as server:
        yield server


@pytest.fixture
def mail_app(committed_app: Flask, smtp: SmtpServer) -> Flask:
    """The private app sending through the loopback SMTP server, with short retry and stale timings."""
    committed_app.config.update(
        SMTP_URL=f"smtp://127.0.0.1:{smtp.port}?timeout=10",
        PRIVACY_ADDRESS="privacy@desk.example",
        OUTBOX_RETRY_BASE_SECONDS=0.3,
        OUTBOX_STALE_SECONDS=STALE_SECONDS,
    )
    dramatiq.get_broker().flush_all()  # doorbells other tests left behind are not ours
    return committed_app
