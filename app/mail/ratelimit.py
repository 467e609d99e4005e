"""The last loop breaker: at most N automatic replies to one recipient address in a window (an outbound policy).

Two robots answering each other (our acknowledgement, their "ticket received",
our acknowledgement again, ...) are stopped earlier by recognising automatic
mail (`app.mail.autoreply`) and by threading replies to what the desk sent; a
robot that looks like a person is stopped here, as mature helpdesks do: an
automatic reply (the kinds in `app.mail.outbox.AUTO_REPLY_KINDS`, e.g. a DSR
acknowledgement) to an address that already had `limit` of them within
`window` is refused (never queued, or `refused` at claim time), audit-logged.
Mail written by staff and the desk's forwards and notices to controllers are
not limited. The recipient is counted by its blind index under the row's key
owner (no address in the clear).

Settings (environment): `AUTO_REPLY_LIMIT` (default 1; 0 turns the limit off)
and `AUTO_REPLY_WINDOW_HOURS` (default 24).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.mail.models import OutboxEmail
from app.mail.outbox import AUTO_REPLY_KINDS
from app.mail.policies import OutboundMessage, OutboundRefused, Refusal
from app.tickets.models import key_owner_for

POLICY_NAME = "mail.auto_reply_limit"
DEFAULT_LIMIT = 1
DEFAULT_WINDOW_HOURS = 24


class AutoReplyLimited(OutboundRefused):
    """The recipient already had the allowed number of automatic replies in the window (a mail-loop breaker)."""


@dataclass(frozen=True)
class AutoReplyLimit:
    """At most `limit` automatic replies per recipient address within `window` (limit 0: no limit)."""

    limit: int = DEFAULT_LIMIT
    window: dt.timedelta = dt.timedelta(hours=DEFAULT_WINDOW_HOURS)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AutoReplyLimit:
        """From AUTO_REPLY_LIMIT and AUTO_REPLY_WINDOW_HOURS (ValueError when either is not a non-negative number)."""
        limit = int(config.get("AUTO_REPLY_LIMIT", DEFAULT_LIMIT) if config.get("AUTO_REPLY_LIMIT") not in (None, "") else DEFAULT_LIMIT)
        hours = float(config.get("AUTO_REPLY_WINDOW_HOURS") or DEFAULT_WINDOW_HOURS)
        if limit < 0 or hours <= 0:
            raise ValueError("AUTO_REPLY_LIMIT must be 0 or more and AUTO_REPLY_WINDOW_HOURS more than 0")
        return cls(limit, dt.timedelta(hours=hours))

    def __call__(self, session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
        """The outbound policy: a Refusal when this automatic reply would exceed the limit for its recipient."""
        if self.limit == 0 or message.kind not in AUTO_REPLY_KINDS:
            return None
        owner = key_owner_for(message.controller_id)
        stmt = (
            select(func.count())
            .select_from(OutboxEmail)
            .where(
                OutboxEmail.to_addr.matches(session, message.to, controller_id=owner),
                OutboxEmail.kind.in_(AUTO_REPLY_KINDS),
                OutboxEmail.state != "refused",
                OutboxEmail.created_at > now - self.window,
            )
        )
        if message.outbox_id is not None:  # at claim time: only the replies queued before this one count
            stmt = stmt.where(OutboxEmail.id < message.outbox_id)
        earlier = int(session.scalar(stmt) or 0)
        if earlier < self.limit:
            return None
        return Refusal(
            reason="auto_reply_limit",
            error=AutoReplyLimited(f"automatic reply not sent: the recipient already had {earlier} in the last {self.window}"),
            details={"kind": message.kind, "earlier": earlier, "limit": self.limit},
        )
