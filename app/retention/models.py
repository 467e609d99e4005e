"""Retention's tables: policy versions, legal holds, and the ledger of runs.

- `retention_policies`: every change is a new row (version n+1 of its category and controller; NULL
  controller: the desk-wide policy). The newest row wins; none: the shipped default (`app.retention.periods`),
  written as version 1 the first time a run uses it, so every engine run names the exact version behind it.
- `retention_holds`: a legal hold on a controller, a ticket or a subject within a controller (their address
  encrypted under the controller's key, with the controller's email blind index to match on).
- `retention_runs`: the ledger: start, end, state, filters, the policy versions used, counts per category and
  controller, held counts, errors, and the cursor a resumed run continues from.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.fields import EncryptedField, EncryptedRow, blind_index_column, encrypted_column
from app.db import Base, intpk, utc

HOLD_KINDS = ("controller", "ticket", "subject")
HOLD_BASES = ("accounting", "aml_kyc", "clickwrap_log", "litigation", "regulator_request", "other")
RUN_STATES = ("running", "done", "stopped", "failed")


class RetentionPolicy(Base):
    """One version of the policy of a category, desk-wide (controller_id NULL) or for one controller."""

    __tablename__ = "retention_policies"
    __table_args__ = (
        CheckConstraint("action IN ('delete', 'anonymise')", name="action"),
        CheckConstraint("period_days > 0", name="period_days"),
        UniqueConstraint("category", "controller_id", "version", name="uq_retention_policies_version"),
        Index("ix_retention_policies_category", "category", "controller_id", "version"),
    )

    id: Mapped[intpk]
    category: Mapped[str] = mapped_column(String(40))
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    period_days: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(12))
    legal_basis: Mapped[str] = mapped_column(Text)
    # An override withdrawn: the controller follows the desk-wide policy again.
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[utc]


class RetentionHold(EncryptedRow, Base):
    """A legal hold: nothing it covers is deleted by any run of the engine while it is active."""

    __tablename__ = "retention_holds"
    __table_args__ = (
        CheckConstraint("kind IN ('controller', 'ticket', 'subject')", name="kind"),
        CheckConstraint("basis IN ('accounting', 'aml_kyc', 'clickwrap_log', 'litigation', 'regulator_request', 'other')", name="basis"),
        Index("ix_retention_holds_active", "lifted_at", "controller_id"),
    )

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(12))
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    key_owner: Mapped[int] = mapped_column(Integer)
    subject_email_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    subject_email_bidx: Mapped[bytes | None] = blind_index_column()
    basis: Mapped[str] = mapped_column(String(20))
    # Free text naming the matter (case number, regulator's letter): no personal data.
    basis_text: Mapped[str] = mapped_column(Text, default="")
    placed_by: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[utc]
    # NULL: until lifted (litigation, a regulator's request).
    until: Mapped[dt.datetime | None]
    lifted_at: Mapped[dt.datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(100))

    subject_email = EncryptedField("subject_email_ct", owner="key_owner", blind_index="subject_email_bidx", normalise="email")

    @property
    def last_day(self) -> dt.date | None:
        """The last day the hold keeps the data (its end is the start of the next day, UTC); None: until lifted."""
        return (self.until - dt.timedelta(seconds=1)).date() if self.until else None

    def active(self, now: dt.datetime) -> bool:
        """Whether the hold still keeps what it covers at `now`."""
        return self.lifted_at is None and (self.until is None or self.until > now)


class RetentionRun(Base):
    """One retention run in the ledger (dry runs are not recorded)."""

    __tablename__ = "retention_runs"
    __table_args__ = (CheckConstraint("state IN ('running', 'done', 'stopped', 'failed')", name="state"),)

    id: Mapped[intpk]
    state: Mapped[str] = mapped_column(String(10), default="running")
    requested_by: Mapped[str] = mapped_column(String(100))
    only_controller_id: Mapped[int | None] = mapped_column(Integer)
    only_category: Mapped[str | None] = mapped_column(String(40))
    # {category: {controller id or "*": policy version id}}
    policy_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {category: {controller id: {"due": n, "changed": n, "held": n}}}
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Where a resumed run continues: {"category": ..., "controller": ..., "after": ticket id, "engine_run": id}
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[utc]
    updated_at: Mapped[utc]
    finished_at: Mapped[dt.datetime | None]
