"""Subject-data tables: execution runs (export, erase, rectify), stored exports, download tokens, restrictions.

A run is the request's record of one action taken under a controller's
instruction. An export is done here (its parameters, the subject's address,
encrypted under the controller's key while it works, cleared at the end).
An erasure or a rectification is a run of the deletion engine
(`deletion_run_id`, app.deletion): the engine keeps its parameters, cursor
and full report; this row keeps the request's view of it (state, counts,
what failed or was kept), written by the request's hook after each batch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.cipher import INDEX_BYTES
from app.crypto.fields import EncryptedField, EncryptedRow, encrypted_column
from app.db import Base, intpk, utc

RUN_KINDS = ("export", "erase", "rectify")
RUN_STATES = ("queued", "running", "done", "failed")
# The confirmed instruction decision each kind of run needs (app.dsr.gate.require_instruction).
DECISION_FOR = {"export": "provide_data", "erase": "erase", "rectify": "rectify", "restrict": "restrict"}
EXPORT_FORMATS = ("json", "pdf")
RESTRICTION_KINDS = ("restriction", "objection")


class SubjectRun(EncryptedRow, Base):
    """One execution of an instruction on a subject's data at one controller, with its exact report."""

    __tablename__ = "subject_data_runs"
    __table_args__ = (
        CheckConstraint("kind IN ('export', 'erase', 'rectify')", name="kind"),
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
        # The sweeper: unfinished runs by age.
        Index("ix_subject_data_runs_state_updated_at", "state", "updated_at"),
    )

    id: Mapped[intpk]
    dsr_id: Mapped[int] = mapped_column(ForeignKey("dsrs.id", ondelete="CASCADE"), index=True)
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10), default="queued")
    instruction_id: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[int | None] = mapped_column(Integer)
    key_owner: Mapped[int] = mapped_column(Integer)
    params_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # The engine's run doing an erasure or rectification (None for an export).
    deletion_run_id: Mapped[int | None] = mapped_column(ForeignKey("deletion_runs.id", ondelete="SET NULL"), index=True)
    # What was changed, what failed and what was kept: ids, counts and reason codes only.
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[utc]
    updated_at: Mapped[utc]
    finished_at: Mapped[dt.datetime | None]

    params = EncryptedField("params_ct", owner="key_owner")


class SubjectExport(Base):
    """A generated export file (JSON or PDF), stored as an encrypted blob under the controller's key."""

    __tablename__ = "subject_data_exports"
    __table_args__ = (CheckConstraint("format IN ('json', 'pdf')", name="format"),)

    id: Mapped[intpk]
    run_id: Mapped[int] = mapped_column(ForeignKey("subject_data_runs.id", ondelete="CASCADE"), index=True)
    dsr_id: Mapped[int] = mapped_column(ForeignKey("dsrs.id", ondelete="CASCADE"), index=True)
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    format: Mapped[str] = mapped_column(String(4))
    blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id", ondelete="SET NULL"), index=True)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[utc]
    expires_at: Mapped[utc] = mapped_column(index=True)
    deleted_at: Mapped[dt.datetime | None]


class DownloadToken(Base):
    """An issued single-use download token: the `jti` is consumed by one conditional UPDATE."""

    __tablename__ = "download_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[utc]
    expires_at: Mapped[utc] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None]


class Restriction(Base):
    """A restriction (Art. 18) or objection (Art. 21) on a subject's data at one controller, until lifted.

    `email_bidx` is the controller's blind index of the subject's email, so a
    ticket the subject opens later is recognised as restricted too.
    """

    __tablename__ = "subject_restrictions"
    __table_args__ = (
        CheckConstraint("kind IN ('restriction', 'objection')", name="kind"),
        Index("ix_subject_restrictions_controller_id_email_bidx", "controller_id", "email_bidx"),
    )

    id: Mapped[intpk]
    dsr_id: Mapped[int | None] = mapped_column(ForeignKey("dsrs.id", ondelete="SET NULL"), index=True)
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(12))
    email_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(INDEX_BYTES))
    instruction_id: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[utc]
    lifted_at: Mapped[dt.datetime | None]
    lifted_by: Mapped[int | None] = mapped_column(Integer)


class RestrictedTicket(Base):
    """A ticket covered by a restriction (the subject's tickets when it was recorded)."""

    __tablename__ = "subject_restricted_tickets"

    restriction_id: Mapped[int] = mapped_column(ForeignKey("subject_restrictions.id", ondelete="CASCADE"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True, index=True)


class ErasedSubject(Base):
    """A subject erased at a controller (by the blind index of each of their addresses): new mail from them is flagged.

    Written when an erasure run finishes; mail that arrives later from the
    address is stored, flagged `erased_subject` for the privacy officer, and
    keeps the request from closing as "erased" until it is handled.
    """

    __tablename__ = "subject_erasures"
    __table_args__ = (Index("ix_subject_erasures_controller_id_email_bidx", "controller_id", "email_bidx"),)

    id: Mapped[intpk]
    dsr_id: Mapped[int | None] = mapped_column(ForeignKey("dsrs.id", ondelete="SET NULL"), index=True)
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    email_bidx: Mapped[bytes] = mapped_column(LargeBinary(INDEX_BYTES))
    created_at: Mapped[utc]


class ExportLink(Base):
    """A download link for one export file sent to one of the controller's DSR contacts: valid 7 days, used once.

    Only the SHA-256 of the link's secret is stored; the contact is kept as a
    position in the controller's contact list and a label safe for logs.
    """

    __tablename__ = "subject_data_export_links"

    id: Mapped[intpk]
    export_id: Mapped[int] = mapped_column(ForeignKey("subject_data_exports.id", ondelete="CASCADE"), index=True)
    dsr_id: Mapped[int] = mapped_column(ForeignKey("dsrs.id", ondelete="CASCADE"), index=True)
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    contact_id: Mapped[int | None] = mapped_column(Integer)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    outbox_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[utc]
    expires_at: Mapped[utc]
    used_at: Mapped[dt.datetime | None]
