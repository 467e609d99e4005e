"""`flask --app wsgi mail ingest < message.eml` (MTA pipe, sysexits codes) and `mail poll` (one IMAP pass)."""

from __future__ import annotations

import logging
import sys

import click
from flask import current_app

from app.clikit import group, operator
from app.db import utcnow
from app.extensions import db
from app.mail.imap import ImapError, ImapSettings, PollResult, poll_once
from app.mail.inbound import EX_TEMPFAIL, IngestSettings, ingest_committed

log = logging.getLogger(__name__)

mail_cli = group("mail", "Inbound mail: the MTA pipe and IMAP polling.")


@mail_cli.command("ingest")
def ingest() -> None:
    """Read one RFC 5322 message from stdin; exit 0 stored (or duplicate), 65 quarantined, 75 try again later."""
    raw = sys.stdin.buffer.read()
    try:
        outcome = ingest_committed(
            db.sessionmaker,
            raw,
            settings=IngestSettings.from_config(current_app.config),
            by=operator("mail ingest"),
            now=utcnow,
            source="pipe",
        )
    except Exception as exc:
        # Nothing was committed: the MTA keeps the message and retries (EX_TEMPFAIL).
        log.error("mail ingest: temporary failure (%s)", type(exc).__name__)
        click.echo(f"temporary failure ({type(exc).__name__}); the message was not stored, retry later", err=True)
        sys.exit(EX_TEMPFAIL)
    if outcome.status == "quarantined":
        click.echo(f"quarantined {outcome.quarantine_id}: {outcome.reason}", err=True)
    else:
        click.echo(f"{outcome.status}: ticket {outcome.ticket_id}, message {outcome.message_pk}")
    sys.exit(outcome.exit_code)


def poll(config: dict[str, object] | None = None) -> PollResult | None:
    """One IMAP pass over IMAP_URL (None when it is unset); each message committed before it is moved."""
    settings_map = config if config is not None else current_app.config
    url = settings_map.get("IMAP_URL")
    if not url:
        return None
    imap = ImapSettings.from_url(str(url), ca_file=str(settings_map.get("IMAP_CA_FILE") or "") or None)
    ingest_settings = IngestSettings.from_config(settings_map)
    by = operator("mail poll")

    def ingest_one(raw: bytes) -> str:
        return ingest_committed(db.sessionmaker, raw, settings=ingest_settings, by=by, now=utcnow, source="imap").status

    return poll_once(imap, ingest_one)


@mail_cli.command("poll")
def poll_command() -> None:
    """One IMAP pass over IMAP_URL: fetch, store (committed), then move each message to the processed folder."""
    try:
        result = poll()
    except ImapError as exc:
        raise click.ClickException(str(exc)) from None
    if result is None:
        raise click.ClickException("IMAP_URL is not set; nothing to poll")
    click.echo(
        f"fetched {result.fetched}: stored {result.stored}, duplicates {result.duplicates}, "
        f"quarantined {result.quarantined}, moved {result.moved}, failed {result.failed}"
    )
    if result.failed:
        sys.exit(EX_TEMPFAIL)
