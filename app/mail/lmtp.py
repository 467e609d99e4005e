"""An LMTP listener for the MTA (`flask --app wsgi mail lmtp --bind HOST:PORT`): one persistent process, a status per recipient.

Postfix (or any MTA) hands each message over LMTP (RFC 2033) once, with all its
envelope recipients; after the data the listener answers once per recipient,
in order, each after that recipient's delivery was committed through the same
service as `mail ingest` (`ingest_committed`, the recipient as `recipient=`):
250 for stored, duplicate, bounce and quarantined (held for an officer: never
a bounce to a possibly forged sender), 451 when the database or the disk was
unavailable (the MTA keeps the message for that recipient and retries). Built
on aiosmtpd's LMTP class; the ingest runs in worker threads, so one slow
message does not hold the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.mail.inbound import IngestOutcome
from app.mail.pipemode import fault_name

log = logging.getLogger(__name__)

# (raw message, envelope recipient) -> the committed outcome; raises on a temporary fault.
Deliver = Callable[[bytes, str], IngestOutcome]

TEMPORARY = "451 4.3.0 temporary failure; try again later"


def status_line(outcome: IngestOutcome) -> str:
    """The LMTP reply for one recipient's committed outcome (no personal data: the ids are the desk's own)."""
    if outcome.status == "quarantined":
        return f"250 2.0.0 accepted (held {outcome.quarantine_id})"
    return f"250 2.0.0 {outcome.status} (ticket {outcome.ticket_id})"


class DeskHandler:
    """aiosmtpd handler: after DATA, one status per RCPT, each after its ingest committed."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Ingest the message once per recipient (in order) and answer with one line per recipient."""
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        lines: list[str] = []
        for recipient in envelope.rcpt_tos:
            try:
                outcome = await loop.run_in_executor(None, self.deliver, raw, recipient)
            except Exception as exc:
                log.error("lmtp: temporary failure (%s); the MTA keeps the message", fault_name(exc))
                lines.append(TEMPORARY)
            else:
                lines.append(status_line(outcome))
        return "\r\n".join(lines) if lines else "503 5.5.1 no valid recipients"


class LmtpController(Controller):
    """aiosmtpd's threaded controller speaking LMTP instead of SMTP."""

    def factory(self) -> LMTP:
        """One LMTP protocol instance per connection."""
        return LMTP(self.handler, **self.SMTP_kwargs)


def listener(deliver: Deliver, host: str, port: int, *, data_size_limit: int, **kwargs: Any) -> LmtpController:
    """An LMTP listener (not started: call .start() / .stop()) delivering through `deliver`."""
    # aiosmtpd logs every command line, sender and recipient address at INFO: personal data in the journal.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return LmtpController(DeskHandler(deliver), hostname=host, port=port, data_size_limit=data_size_limit, ident="dsr-desk LMTP", **kwargs)
