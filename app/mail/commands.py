"""`mail ingest [--recipient ADDR] < message.eml` (MTA pipe, sysexits codes), `mail lmtp` (the LMTP listener), `mail poll` (IMAP)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click
from flask import current_app

from app.clikit import group, operator
from app.db import retry_contention, utcnow
from app.extensions import db
from app.mail.imap import ImapError
from app.mail.inbound import IngestOutcome, IngestSettings, ingest_committed
from app.mail.lmtp import listener
from app.mail.pipemode import EX_CONFIG, EX_TEMPFAIL, fault_name
from app.mail.poll import poll_mailbox

log = logging.getLogger(__name__)

mail_cli = group("mail", "Inbound mail: the MTA pipe and IMAP polling.")


@mail_cli.command("ingest")
@click.option("--recipient", metavar="ADDR", help="The envelope recipient the MTA delivers for (Postfix: ${recipient}).")
def ingest(recipient: str | None) -> None:
    """Read one RFC 5322 message from stdin; exit 0 stored, duplicate or quarantined, 75 try again later, 78 misconfigured.

    Nothing internal is printed on stderr (app.mail.pipemode): one status line on stdout, the rest to the log.
    """
    try:
        settings = IngestSettings.from_config(current_app.config)
    except (TypeError, ValueError) as exc:
        log.error("mail ingest: configuration error (%s)", type(exc).__name__)
        click.echo("4.3.5 the desk's configuration is incomplete; the message was not stored, retry later")
        sys.exit(EX_CONFIG)
    raw = sys.stdin.buffer.read()
    try:
        outcome = retry_contention(
            lambda: ingest_committed(db.session_scope, raw, settings=settings, by=operator("mail ingest"), clock=utcnow, source="pipe", recipient=recipient)
        )
    except Exception as exc:
        # Nothing was committed: the MTA keeps the message and retries (EX_TEMPFAIL).
        log.error("mail ingest: temporary failure (%s)", fault_name(exc))
        click.echo("4.3.0 temporary failure; the message was not stored, retry later")
        sys.exit(EX_TEMPFAIL)
    if outcome.status == "quarantined":
        click.echo(f"quarantined {outcome.quarantine_id}: {outcome.reason}")
    else:
        claimed = f" ({outcome.claim.code})" if outcome.claim is not None else ""
        click.echo(f"{outcome.status}: ticket {outcome.ticket_id}, message {outcome.message_pk}{claimed}")
    sys.exit(outcome.exit_code)


@mail_cli.command("lmtp")
@click.option("--bind", "bind", default="127.0.0.1:2424", show_default=True, metavar="HOST:PORT", help="Where to listen for the MTA.")
def lmtp_command(bind: str) -> None:
    """Listen for the MTA over LMTP (one status per recipient) until SIGTERM or Ctrl-C; the production path for inbound mail."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("must be HOST:PORT, for example 127.0.0.1:2424", param_hint="--bind")
    # The real app behind the proxy: the listener answers in its own threads, outside this context. Flask types
    # current_app as the app itself, so the proxy method is unknown to mypy.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = IngestSettings.from_config(app.config)

    def deliver(raw: bytes, recipient: str) -> IngestOutcome:
        with app.app_context():
            return retry_contention(
                lambda: ingest_committed(db.session_scope, raw, settings=settings, by=operator("mail lmtp"), clock=utcnow, source="lmtp", recipient=recipient)
            )

    server = listener(deliver, host.strip("[]"), int(port), data_size_limit=settings.max_message_bytes)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    server.start()
    click.echo(f"mail lmtp: listening on {bind}")
    try:
        while not stopped.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    click.echo("mail lmtp: stopped")


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
