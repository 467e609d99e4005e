"""The append-only audit log: one row per event, chained by SHA-256."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.audit.chain import Link, personal_digest
from app.db import Base, intpk, utc


class AuditEvent(Base):
    """Who did what to which target, when; never personal data (ids, counts, short codes).

    `controller_id` has no foreign key on purpose: a controller's rows may be erased
    while its audit trail must stay, and the triggers refuse the UPDATE that
    ON DELETE SET NULL would need. `details_json` keeps the canonical text so the
    hash input is exactly what is stored.

    `personal_ct` is the event's personal part, if any (app.audit.personal): AES-256-GCM
    under the key of the event's UTC month (app.crypto.periods), bound to this event's seq.
    The hash covers its SHA-256, so shredding the month's key leaves the chain verifying.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_controller_id_seq", "controller_id", "seq"),
        Index("ix_audit_events_target_seq", "target_type", "target_id", "seq"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    id: Mapped[intpk]
    seq: Mapped[int] = mapped_column(BigInteger(), unique=True)
    occurred_at: Mapped[utc]
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(BigInteger())
    actor_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    controller_id: Mapped[int | None] = mapped_column(BigInteger())
    details_json: Mapped[str] = mapped_column(Text(), default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    personal_ct: Mapped[bytes | None] = mapped_column(LargeBinary)

    @property
    def details(self) -> dict[str, Any]:
        """The details object (ids, counts, short codes)."""
        value: dict[str, Any] = json.loads(self.details_json)
        return value

    def link(self) -> Link:
        """The hashed fields of this row, as stored."""
        return Link(
            seq=self.seq,
            at=self.occurred_at,
            actor_kind=self.actor_kind,
            actor_id=self.actor_id,
            actor_name=self.actor_name,
            action=self.action,
            target_type=self.target_type,
            target_id=self.target_id,
            controller_id=self.controller_id,
            details=self.details,
            prev_hash=self.prev_hash,
            personal=personal_digest(self.personal_ct),
        )
