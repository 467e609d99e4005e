"""The deletion engine's table: one row per run, with its authority, scope, action, state and report.

A run's parameters (the subject's identifiers, the terms to redact, the
corrected values, the tickets named) are personal data or may be: encrypted
under the key of `key_owner` (the controller of the scope, or the triage
owner 0 when there is none) while the run works, and cleared when it
finishes, so a finished run keeps only ids, counts and reason codes. Its
cursor (which phase, after which id, the plan fixed at the start) is a
`job_state` row named `deletion.run.<id>` while it works.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.fields import EncryptedField, EncryptedRow, encrypted_column
from app.db import Base, intpk, utc

# Who allowed the run: a confirmed controller instruction (a DSR), a retention policy (its version), a
# termination of a controller's contract, the release of a legal hold, or an operator's command.
AUTHORITY_KINDS = ("instruction", "retention_policy", "termination", "hold_release", "operator")
# What it covers: one subject within one controller, a set of tickets, a whole controller, or some records of one
# retention category (app.deletion.categories: quarantined mail, outbox payloads, DSR records, sessions ...).
SCOPE_KINDS = ("subject", "tickets", "controller", "records")
# delete: the rows go; anonymise: identity fields cleared, the rest kept; redact: the subject's identifiers
# replaced in every text and their files destroyed (erasure); rectify: the old identifiers replaced by the
# corrected ones (the old values, raw originals included, destroyed).
ACTIONS = ("delete", "anonymise", "redact", "rectify")
STATES = ("queued", "running", "done", "failed")
UNFINISHED = ("queued", "running")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class DeletionRun(EncryptedRow, Base):
    """One run of the deletion engine, with its exact report (see app.deletion.report)."""

    __tablename__ = "deletion_runs"
    __table_args__ = (
        CheckConstraint(f"authority_kind IN ({_in(AUTHORITY_KINDS)})", name="authority_kind"),
        CheckConstraint(f"scope_kind IN ({_in(SCOPE_KINDS)})", name="scope_kind"),
        CheckConstraint(f"action IN ({_in(ACTIONS)})", name="action"),
        CheckConstraint(f"state IN ({_in(STATES)})", name="state"),
        # The sweeper: unfinished runs by age.
        Index("ix_deletion_runs_state_updated_at", "state", "updated_at"),
        # A domain's runs under one authority (a DSR's instruction, a policy version).
        Index("ix_deletion_runs_authority", "authority_kind", "authority_id"),
    )

    id: Mapped[intpk]
    authority_kind: Mapped[str] = mapped_column(String(20))
    authority_id: Mapped[int | None] = mapped_column(Integer)
    scope_kind: Mapped[str] = mapped_column(String(12))
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"), index=True)
    action: Mapped[str] = mapped_column(String(12))
    state: Mapped[str] = mapped_column(String(10), default="queued")
    # Who started it, as a log-safe label (staff:<id>, system:<job>).
    requested_by: Mapped[str] = mapped_column(String(100))
    key_owner: Mapped[int] = mapped_column(Integer)
    params_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # Counts per store, what failed, what was kept and why, what is left for review: ids, counts and codes only.
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[utc]
    updated_at: Mapped[utc]
    finished_at: Mapped[dt.datetime | None]

    params = EncryptedField("params_ct", owner="key_owner")

    @property
    def is_finished(self) -> bool:
        """True once the run is done or failed (nothing left to do)."""
        return self.state not in UNFINISHED
