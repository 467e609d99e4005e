"""The IMAP poll as a service: one pass over IMAP_URL, each message ingested and committed before it is moved.

Called by `mail poll` (app.mail.commands) and by the inbound actor (workers.inbound),
which therefore share one path and no CLI module.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.jobs.batch import Clock, SessionScope
from app.mail.imap import ImapSettings, PollResult, poll_once
from app.mail.inbound import IngestSettings, ingest_committed
from app.principal import Principal


def poll_mailbox(config: Mapping[str, object], sessions: SessionScope, *, by: Principal, clock: Clock) -> PollResult | None:
    """One IMAP pass over IMAP_URL (IMAP_CA_FILE, the ingest limits and addresses from `config`); None when IMAP_URL is unset.

    Raises ImapError (a message safe to show) when IMAP_URL is unusable or the server refuses.
    """
    url = config.get("IMAP_URL")
    if not url:
        return None
    imap = ImapSettings.from_url(str(url), ca_file=str(config.get("IMAP_CA_FILE") or "") or None)
    settings = IngestSettings.from_config(config)

    def ingest_one(raw: bytes) -> str:
        return ingest_committed(sessions, raw, settings=settings, by=by, clock=clock, source="imap").status

    return poll_once(imap, ingest_one)
