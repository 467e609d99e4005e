"""Fixtures for worker tests: the loopback SMTP server the outbox sends to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.workers.smtp_support import SmtpServer, running_smtp


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server on loopback, stopped after the test."""
    with running_smtp() as server:
        yield server
