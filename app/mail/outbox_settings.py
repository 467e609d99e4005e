"""What the outbox reads from the app config: the transport, the sender address and the timing of claims and retries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.mail.outbox import DEFAULT_MSGID_DOMAIN
from app.mail.transport import FileTransport, SmtpTransport, Transport, parse_smtp_url


@dataclass(frozen=True)
class OutboxTiming:
    """Timing of claims and retries (not to be confused with the outbound policies that allow or refuse an email)."""

    # Must exceed the send actor's time limit: a claim older than this belongs to a dead worker.
    stale_after: dt.timedelta = dt.timedelta(minutes=10)
    retry_base: dt.timedelta = dt.timedelta(minutes=1)
    retry_max: dt.timedelta = dt.timedelta(hours=6)
    max_attempts: int = 12

    def retry_delay(self, attempts: int) -> dt.timedelta:
        """Exponential backoff: base, 2x base, 4x base ... capped at retry_max."""
        return min(self.retry_base * (2 ** max(attempts - 1, 0)), self.retry_max)


@dataclass(frozen=True)
class OutboundSettings:
    """Everything a send needs from the config: transport, sender address, timing."""

    transport: Transport
    sender: str
    timing: OutboxTiming

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OutboundSettings:
        """SMTP_URL (unset: file outbox in OUTBOX_PATH), PRIVACY_ADDRESS as From, OUTBOX_* timings."""
        sender = str(config.get("PRIVACY_ADDRESS") or f"privacy@{DEFAULT_MSGID_DOMAIN}")
        transport: Transport
        if config.get("SMTP_URL"):
            transport = SmtpTransport(parse_smtp_url(str(config["SMTP_URL"])), local_hostname=sender.rpartition("@")[2] or None)
        else:
            transport = FileTransport(config.get("OUTBOX_PATH") or Path(str(config["INSTANCE_PATH"])) / "outbox")
        timing = OutboxTiming(
            stale_after=dt.timedelta(seconds=float(config.get("OUTBOX_STALE_SECONDS", 600))),
            retry_base=dt.timedelta(seconds=float(config.get("OUTBOX_RETRY_BASE_SECONDS", 60))),
            retry_max=dt.timedelta(seconds=float(config.get("OUTBOX_RETRY_MAX_SECONDS", 6 * 3600))),
            max_attempts=int(config.get("OUTBOX_MAX_ATTEMPTS", 12)),
        )
        return cls(transport=transport, sender=sender, timing=timing)
