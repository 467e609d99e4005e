"""What the outbox reads from the app config: the transport, the sender address and the timing of claims and retries."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.addresses import InvalidAddress, normalise_email
from app.exceptions import DeskError
from app.mail.outbox import DEFAULT_MSGID_DOMAIN
from app.mail.transport import FileTransport, SmtpTransport, Transport, parse_smtp_url
from config.settings import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxTiming:
    """Timing of claims and retries (not to be confused with the outbound policies that allow or refuse an email)."""

    # A claim older than this belongs to a dead worker: longer than a live send can take (`stale_after_for`).
    stale_after: dt.timedelta = dt.timedelta(minutes=10)
    retry_base: dt.timedelta = dt.timedelta(minutes=1)
    retry_max: dt.timedelta = dt.timedelta(hours=6)
    max_attempts: int = 12
    # How long a row may wait out a relay outage (breaker open; those failures do not count against max_attempts)
    # before it gives up: RFC 5321 §4.5.4.1 asks a sender to keep trying for at least 4-5 days (Postfix: 5 days).
    outage_give_up: dt.timedelta = dt.timedelta(days=5)

    def retry_delay(self, attempts: int) -> dt.timedelta:
        """Exponential backoff: base, 2x base, 4x base ... capped at retry_max."""
        return min(self.retry_base * (2 ** max(attempts - 1, 0)), self.retry_max)


# The steps of one SMTP conversation that each may wait up to the timeout: connect, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA.
SMTP_STEPS = 8
# What a send needs besides the SMTP conversation (claim and record transactions, building the message).
STALE_MARGIN = dt.timedelta(seconds=30)


def stale_after_for(smtp_timeout: float | None) -> dt.timedelta:
    """How long a claim may live: the longest a live send can take (every SMTP step at its timeout) plus a margin.

    Default SMTP timeout 30 s -> 270 s (was a fixed 10 minutes, issue 15 item 5); the file outbox -> 60 s.
    A worker killed mid-send leaves its row to be re-sent after this long, so shorter means faster recovery;
    it can never be shorter than a live send, or a slow relay would get every message twice.
    """
    if smtp_timeout is None:
        return dt.timedelta(seconds=60)
    return SMTP_STEPS * dt.timedelta(seconds=smtp_timeout) + STALE_MARGIN


@dataclass(frozen=True)
class OutboundSettings:
    """Everything a send needs from the config: transport, sender address, timing."""

    transport: Transport
    sender: str
    timing: OutboxTiming

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OutboundSettings:
        """SMTP_URL (unset: file outbox in OUTBOX_PATH), PRIVACY_ADDRESS as From, OUTBOX_* timings (OUTBOX_OUTAGE_GIVE_UP_SECONDS: 5 days).

        The stale-claim window follows the SMTP timeout (`stale_after_for`) unless OUTBOX_STALE_SECONDS is set.
        """
        sender = str(config.get("PRIVACY_ADDRESS") or f"privacy@{DEFAULT_MSGID_DOMAIN}")
        transport: Transport
        smtp_timeout: float | None = None
        if config.get("SMTP_URL"):
            smtp = parse_smtp_url(str(config["SMTP_URL"]))
            smtp_timeout = smtp.timeout
            transport = SmtpTransport(smtp, local_hostname=sender.rpartition("@")[2] or None)
        else:
            transport = FileTransport(config.get("OUTBOX_PATH") or Path(str(config["INSTANCE_PATH"])) / "outbox")
        stale = config.get("OUTBOX_STALE_SECONDS")
        timing = OutboxTiming(
            stale_after=dt.timedelta(seconds=float(stale)) if stale else stale_after_for(smtp_timeout),
            retry_base=dt.timedelta(seconds=float(config.get("OUTBOX_RETRY_BASE_SECONDS", 60))),
            retry_max=dt.timedelta(seconds=float(config.get("OUTBOX_RETRY_MAX_SECONDS", 6 * 3600))),
            max_attempts=int(config.get("OUTBOX_MAX_ATTEMPTS", 12)),
            outage_give_up=dt.timedelta(seconds=float(config.get("OUTBOX_OUTAGE_GIVE_UP_SECONDS", 5 * 86400))),
        )
        return cls(transport=transport, sender=sender, timing=timing)


# The desk's own addresses: the outbox sends From and Reply-To them, so they must pass the outbox's own rules.
OWN_ADDRESSES = ("PRIVACY_ADDRESS", "SUPPORT_ADDRESS")


class OwnAddressInvalid(ConfigError, DeskError):
    """One of the desk's own addresses would be refused by the outbox (production refuses to start)."""


def check_own_addresses(config: Mapping[str, Any]) -> list[str]:
    """Validate PRIVACY_ADDRESS and SUPPORT_ADDRESS with the outbox's rules at start-up (issue 15 item 9).

    Production: raise OwnAddressInvalid with a one-line message naming the variable. Development: log a
    warning per problem and return them; the embedded default's `*.localhost` addresses (file outbox) pass.
    """
    production = config.get("DESK_ENV") == "production"
    problems: list[str] = []
    for name in OWN_ADDRESSES:
        value = str(config.get(name) or "")
        if not value or (not production and value.lower().endswith(".localhost")):
            continue
        try:
            normalise_email(value)
        except InvalidAddress as exc:
            problems.append(f"{name} is not an address the outbox can send from ({exc}); forwards would go out without Reply-To")
    if problems and production:
        raise OwnAddressInvalid(problems[0])
    for problem in problems:
        log.warning("%s", problem)
    return problems
