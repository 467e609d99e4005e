"""Inbound mail actor: one IMAP pass, sent by the scheduler; a no-op while IMAP_URL is unset."""

from __future__ import annotations

import logging

import dramatiq
from flask import current_app

from app.db import utcnow
from app.extensions import db
from app.mail.imap import ImapError
from app.mail.poll import poll_mailbox
from app.principal import Principal

log = logging.getLogger(__name__)


@dramatiq.actor(max_retries=0, time_limit=300_000)
def poll_imap() -> None:
    """Fetch, store (committed) and then move each message; the next tick retries whatever is left."""
    try:
        result = poll_mailbox(current_app.config, db.session_scope, by=Principal.system("imap poll"), clock=utcnow)
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
