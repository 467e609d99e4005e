"""Quarantined inbound mail: kept encrypted with its reason until a privacy officer releases or deletes it.

API for the quarantine page (services flush and audit; the caller commits):
- `hold(session, raw, reason=, detail=, source=, by=, now=) -> QuarantinedMessage`
- `list_held(session, limit=, before_id=) -> list[QuarantinedMessage]`, `get(session, id)`
- `raw_chunks(session, item)` streams the original for download
- `held(session, id)` and `mark_released(session, item, ticket_id=, message_pk=, by=, now=)`: the two ends of a
  release; `app.mail.inbound.release_quarantined` ingests the message between them as if it were new mail,
  skipping the check that held it (the officer vouched for it)
- `delete(session, id, by=, now=)` destroys the stored original; the row stays as a tombstone
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.audit.service import record
from app.blobs.store import delete_blob, iter_blob, store_blob
from app.db import Base, intpk, utc
from app.exceptions import DeskError, NotFound
from app.principal import Principal
from app.tickets.models import TRIAGE_KEY_OWNER

# Reason codes (short, no personal data; shown on the page and in the audit log).
REASONS = {
    "malformed": "the message could not be parsed as RFC 5322 mail",
    "no_sender": "the message has no usable From address",
    "too_large": "the message is larger than the desk accepts",
    "empty": "the message is empty",
    "loop": "the message looks like a mail loop",
    "from_own_address": "the message comes from one of the desk's own addresses (never a new ticket: a loop)",
    "bounce_unmatched": "a delivery status notification that names no email the desk sent",
    "unprocessable": "the desk could not process the message (kept for a privacy officer; the sender is not bounced)",
    "controller_shredded": "mail for a controller whose data keys were destroyed (crypto-shredded): nothing is stored under them",
}
# Held without telling the MTA to bounce (exit 0): bouncing these would feed a loop or tell a sender about our fault.
SILENT_REASONS = frozenset({"from_own_address", "bounce_unmatched"})
STATES = ("held", "released", "deleted")


class QuarantineError(DeskError):
    """Base of the quarantine service's errors."""


class QuarantineNotFound(QuarantineError, NotFound):
    """No held message with that id."""


class QuarantinedMessage(Base):
    """A message refused by ingest, stored (encrypted, platform key) with the reason."""

    __tablename__ = "mail_quarantine"
    __table_args__ = (
        CheckConstraint("state IN ('held', 'released', 'deleted')", name="state"),
        Index("ix_mail_quarantine_state_id", "state", "id"),
        Index("ix_mail_quarantine_sha256", "sha256"),
    )

    id: Mapped[intpk]
    state: Mapped[str] = mapped_column(String(10), default="held")
    reason: Mapped[str] = mapped_column(String(40))
    # A technical description from the parser (no header values, no addresses).
    detail: Mapped[str] = mapped_column(String(500), default="")
    source: Mapped[str] = mapped_column(String(10))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    raw_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id", ondelete="SET NULL"), index=True)
    received_at: Mapped[utc]
    decided_at: Mapped[dt.datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    ticket_id: Mapped[int | None] = mapped_column(Integer)


def hold(session: Session, raw: bytes, *, reason: str, detail: str, source: str, by: Principal, now: dt.datetime) -> QuarantinedMessage:
    """Keep a refused message encrypted with its reason; audit-logged (ids and the reason code only)."""
    if reason not in REASONS:
        raise ValueError(f"unknown quarantine reason {reason!r}")
    sha256 = hashlib.sha256(raw).hexdigest()
    # The same refused bytes delivered again (an MTA retry) are one quarantine entry.
    same = session.scalar(select(QuarantinedMessage).where(QuarantinedMessage.sha256 == sha256, QuarantinedMessage.state == "held").limit(1))
    if same is not None:
        return same
    blob = store_blob(session, raw, key_owner=TRIAGE_KEY_OWNER, now=now)
    item = QuarantinedMessage(
        reason=reason,
        detail=detail[:500],
        source=source[:10],
        size=len(raw),
        sha256=sha256,
        raw_blob_id=blob.id,
        received_at=now,
    )
    session.add(item)
    session.flush()
    record(session, by=by, action="quarantine.hold", target_type="mail_quarantine", target_id=item.id, details={"reason": reason, "size": len(raw)}, now=now)
    return item


def list_held(session: Session, *, limit: int = 50, before_id: int | None = None, state: str = "held") -> list[QuarantinedMessage]:
    """Quarantined messages in one state, newest first, keyset-paginated by id."""
    stmt = select(QuarantinedMessage).where(QuarantinedMessage.state == state)
    if before_id is not None:
        stmt = stmt.where(QuarantinedMessage.id < before_id)
    return list(session.scalars(stmt.order_by(QuarantinedMessage.id.desc()).limit(max(1, min(limit, 200)))))


def get(session: Session, item_id: int) -> QuarantinedMessage:
    """One quarantined message, or QuarantineNotFound."""
    item = session.get(QuarantinedMessage, item_id)
    if item is None:
        raise QuarantineNotFound(f"no quarantined message {item_id}")
    return item


def raw_chunks(session: Session, item: QuarantinedMessage) -> Iterator[bytes]:
    """The original bytes, decrypted a chunk at a time (empty once deleted)."""
    return iter_blob(session, item.raw_blob_id) if item.raw_blob_id else iter(())


def held(session: Session, item_id: int) -> QuarantinedMessage:
    """A message still held (neither released nor deleted), or QuarantineNotFound."""
    item = get(session, item_id)
    if item.state != "held":
        raise QuarantineNotFound(f"quarantined message {item_id} is already {item.state}")
    return item


def mark_released(session: Session, item: QuarantinedMessage, *, ticket_id: int, message_pk: int | None, by: Principal, now: dt.datetime) -> None:
    """Record that a held message was ingested onto `ticket_id` and destroy the quarantine's copy; audit-logged."""
    item.state, item.decided_at, item.decided_by, item.ticket_id = "released", now, by.label[:100], ticket_id
    if item.raw_blob_id is not None:
        # The ticket's message now holds its own encrypted copy (under the controller's key).
        blob_id, item.raw_blob_id = item.raw_blob_id, None
        session.flush()
        delete_blob(session, blob_id)
    session.flush()
    record(
        session,
        by=by,
        action="quarantine.release",
        target_type="mail_quarantine",
        target_id=item.id,
        details={"ticket_id": ticket_id, "message_id": message_pk, "reason": item.reason},
        now=now,
    )


def delete(session: Session, item_id: int, *, by: Principal, now: dt.datetime) -> None:
    """Destroy the stored original of a held message; the row stays as an audit-visible tombstone."""
    item = held(session, item_id)
    blob_id = item.raw_blob_id
    item.state, item.decided_at, item.decided_by, item.raw_blob_id = "deleted", now, by.label[:100], None
    session.flush()
    if blob_id is not None:
        delete_blob(session, blob_id)
    record(session, by=by, action="quarantine.delete", target_type="mail_quarantine", target_id=item.id, details={"reason": item.reason}, now=now)
