"""`flask --app wsgi mail ingest < message.eml` (MTA pipe, sysexits codes) and `mail poll` (one IMAP pass)."""

from __future__ import annotations

import logging
import sys

import click
from flask import current_app

from app.clikit import group, operator
from app.db import utcnow
from app.extensions import db
from app.mail.imap import ImapError
from app.mail.inbound import EX_TEMPFAIL, IngestSettings, ingest_committed
from app.mail.poll import poll_mailbox

log = logging.getLogger(__name__)

mail_cli = group("mail", "Inbound mail: the MTA pipe and IMAP polling.")


@mail_cli.command("ingest")
def ingest() -> None:
    """Read one RFC 5322 message from stdin; exit 0 stored (or duplicate), 65 quarantined, 75 try again later."""
    raw = sys.stdin.buffer.read()
    try:
        outcome = ingest_committed(
            db.session_scope,
            raw,
            settings=IngestSettings.from_config(current_app.config),
            by=operator("mail ingest"),
            clock=utcnow,
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


@mail_cli.command("poll")
def poll_command() -> None:
    """One IMAP pass over IMAP_URL: fetch, store (committed), then move each message to the processed folder."""
    try:
        result = poll_mailbox(current_app.config, db.session_scope, by=operator("mail poll"), clock=utcnow)
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
