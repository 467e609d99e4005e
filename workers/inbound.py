"""Inbound mail actor: one IMAP pass, sent by the scheduler; a no-op while IMAP_URL is unset."""

from __future__ import annotations

import logging

import dramatiq

from app.mail.commands import poll
from app.mail.imap import ImapError

log = logging.getLogger(__name__)


@dramatiq.actor(max_retries=0, time_limit=300_000)
def poll_imap() -> None:
    """Fetch, store (committed) and then move each message; the next tick retries whatever is left."""
    try:
        result = poll()
    except ImapError as exc:
        log.warning("IMAP poll failed: %s", exc)
        return
    if result is not None and result.fetched:
        log.info(
            "IMAP poll: fetched %d, stored %d, duplicates %d, quarantined %d, failed %d",
            result.fetched,
            result.stored,
            result.duplicates,
            result.quarantined,
            result.failed,
        )
