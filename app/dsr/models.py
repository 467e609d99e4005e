"""Data-subject requests, the controllers they are forwarded to, controller instructions and history.

The subject's identity is personal data: encrypted, with a blind index on the
email. It is encrypted under the PLATFORM key because a request exists before
its controller is known (triage, with the 24 h clock running) and because the
instruction gate must recognise a subject across every controller with one
indexed lookup. Values tied to one controller (instruction texts, standing
acknowledgement templates) use that controller's key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, FetchedValue, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.crypto.fields import PLATFORM, EncryptedField, EncryptedRow, blind_index_column, encrypted_column
from app.db import Base, intpk, utc

TYPES = ("access", "rectification", "erasure", "restriction", "objection", "portability")
STATES = ("triage", "awaiting_forward", "forwarded", "instructed", "closed")
# States in which the 24 h forward is still owed.
UNFORWARDED = ("triage", "awaiting_forward")
OPEN_STATES = ("triage", "awaiting_forward", "forwarded", "instructed")
SOURCES = ("privacy_address", "staff")
# pending: controller known, nothing queued; queued: outbox rows written, no relay acceptance yet;
# forwarded: the relay accepted it for at least one DSR contact; refused: the relay refused every contact.
FORWARD_STATES = ("pending", "queued", "forwarded", "refused")
INSTRUCTION_STATES = ("pending", "unverified", "confirmed", "flagged")
DECISIONS = ("respond", "provide_data", "erase", "rectify", "restrict", "no_action")


class Dsr(EncryptedRow, Base):
    """One data-subject request with its 24-hour forwarding clock."""

    __tablename__ = "dsrs"
    __table_args__ = (
        CheckConstraint("state IN ('triage', 'awaiting_forward', 'forwarded', 'instructed', 'closed')", name="state"),
        CheckConstraint("source IN ('privacy_address', 'staff')", name="source"),
        # The sweeper: unforwarded requests of one state by deadline (an index range per state).
        Index("ix_dsrs_state_due_at", "state", "due_at"),
        # The dashboard: open requests by time left.
        Index("ix_dsrs_is_open_due_at", "is_open", "due_at"),
        # The 12-week chart: an index-only scan over the window.
        Index("ix_dsrs_received_at_forward_seconds", "received_at", "forward_seconds"),
        # The sweeper's escalation and missed-deadline checks: only rows still to act on, by deadline.
        Index("ix_dsrs_state_escalated_at_due_at", "state", "escalated_at", "due_at"),
        Index("ix_dsrs_state_missed_at_due_at", "state", "missed_at", "due_at"),
    )

    id: Mapped[intpk]
    # DSR-YYYY-NNNNNN from the year and the row id; used in email subjects instead of anything personal.
    # On Postgres a trigger fills it in the INSERT (migration 0026); elsewhere the desk writes it after the insert.
    reference: Mapped[str | None] = mapped_column(String(24), unique=True, server_default=FetchedValue())
    types: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(20), default="triage")
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(20))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("ticket_messages.id", ondelete="SET NULL"), index=True)

    subject_name_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    subject_email_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    subject_email_bidx: Mapped[bytes | None] = blind_index_column()
    subject_identifiers_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # What the subject asked, data-minimised by staff (or the first lines of the message).
    request_text_ct: Mapped[bytes | None] = encrypted_column(nullable=True)

    received_at: Mapped[utc]
    due_at: Mapped[utc]
    forwarded_at: Mapped[dt.datetime | None]
    # forwarded_at - received_at, for the chart (median time to forward) without reading every row.
    forward_seconds: Mapped[int | None] = mapped_column(Integer)
    escalated_at: Mapped[dt.datetime | None]
    # When the sweeper found the 24 h deadline passed unforwarded (the request *missed* it; there is no extension).
    missed_at: Mapped[dt.datetime | None]
    missed_reason_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # Set with missed_at, cleared when the reason is recorded: the dashboard counts these by index.
    missed_reason_missing: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    closed_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[utc]
    updated_at: Mapped[utc]

    forwards: Mapped[list[DsrForward]] = relationship(back_populates="dsr", cascade="all, delete-orphan", order_by="DsrForward.id")
    events: Mapped[list[DsrEvent]] = relationship(back_populates="dsr", cascade="all, delete-orphan", order_by="DsrEvent.id")
    instructions: Mapped[list[Instruction]] = relationship(back_populates="dsr", cascade="all, delete-orphan", order_by="Instruction.id")

    subject_name = EncryptedField("subject_name_ct", owner=PLATFORM)
    subject_email = EncryptedField("subject_email_ct", owner=PLATFORM, blind_index="subject_email_bidx", normalise="email")
    subject_identifiers = EncryptedField("subject_identifiers_ct", owner=PLATFORM)
    request_text = EncryptedField("request_text_ct", owner=PLATFORM)
    # Values keep the column's name before migration 0012 in their associated data (a migration cannot re-encrypt).
    missed_reason = EncryptedField("missed_reason_ct", owner=PLATFORM, bound_as="breach_reason_ct")

    @property
    def controller_ids(self) -> list[int]:
        """The controllers this request concerns (one forward row each)."""
        return [f.controller_id for f in self.forwards]


class DsrForward(Base):
    """The forward of one request to one controller: created pending, queued exactly once, forwarded when the relay accepts it."""

    __tablename__ = "dsr_forwards"
    __table_args__ = (
        UniqueConstraint("dsr_id", "controller_id", name="uq_dsr_forwards_dsr_id_controller_id"),
        CheckConstraint("state IN ('pending', 'queued', 'forwarded', 'refused')", name="state"),
        Index("ix_dsr_forwards_state_created_at", "state", "created_at"),
    )

    id: Mapped[intpk]
    dsr_id: Mapped[int] = mapped_column(ForeignKey("dsrs.id", ondelete="CASCADE"))
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    # When the controller's relay accepted the forward for its first DSR contact (None until then).
    forwarded_at: Mapped[dt.datetime | None]
    # The keyed hash (app.crypto.message_ids) of the forward's Message-ID (the first contact's); replies thread on it.
    message_id_bidx: Mapped[bytes | None] = blind_index_column()
    outbox_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[utc]

    dsr: Mapped[Dsr] = relationship(back_populates="forwards")


class DsrEvent(Base):
    """One line of a request's history: a code, who, when and safe details (ids, codes, counts)."""

    __tablename__ = "dsr_events"

    id: Mapped[intpk]
    dsr_id: Mapped[int] = mapped_column(ForeignKey("dsrs.id", ondelete="CASCADE"), index=True)
    at: Mapped[utc]
    code: Mapped[str] = mapped_column(String(40))
    by_label: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    dsr: Mapped[Dsr] = relationship(back_populates="events")


class Instruction(EncryptedRow, Base):
    """A controller's reply to a forward: pending until a privacy officer confirms or flags it.

    `verified` is true only when the sender is a registered contact of that
    controller; an unverified instruction is kept as evidence and can never be
    confirmed. Texts are encrypted under the key of `key_owner` (the controller,
    or 0 when the sender matched no controller).
    """

    __tablename__ = "dsr_instructions"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'unverified', 'confirmed', 'flagged')", name="state"),
        CheckConstraint(
            "decision IS NULL OR decision IN ('respond', 'provide_data', 'erase', 'rectify', 'restrict', 'no_action')",
            name="decision",
        ),
        Index("ix_dsr_instructions_dsr_id_state", "dsr_id", "state"),
    )

    id: Mapped[intpk]
    dsr_id: Mapped[int] = mapped_column(ForeignKey("dsrs.id", ondelete="CASCADE"))
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"), index=True)
    key_owner: Mapped[int] = mapped_column(Integer)
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("ticket_messages.id", ondelete="SET NULL"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    # The receiving MTA's verdicts, e.g. "dkim=pass spf=pass dmarc=pass"; None when it gave none.
    auth_verdict: Mapped[str | None] = mapped_column(String(200))
    reply_text_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    sender_email_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    sender_email_bidx: Mapped[bytes | None] = blind_index_column()
    decision: Mapped[str | None] = mapped_column(String(20))
    # For `respond`: the text the controller told us to send to the subject.
    response_text_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    flag_reason_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    decided_by: Mapped[int | None] = mapped_column(Integer)
    decided_at: Mapped[dt.datetime | None]
    received_at: Mapped[utc]

    dsr: Mapped[Dsr] = relationship(back_populates="instructions")

    reply_text = EncryptedField("reply_text_ct", owner="key_owner")
    sender_email = EncryptedField("sender_email_ct", owner="key_owner", blind_index="sender_email_bidx", normalise="email")
    response_text = EncryptedField("response_text_ct", owner="key_owner")
    flag_reason = EncryptedField("flag_reason_ct", owner="key_owner")


class StandingInstruction(EncryptedRow, Base):
    """A controller's standing instruction allowing a neutral acknowledgement to its subjects, with the template."""

    __tablename__ = "dsr_standing_instructions"

    id: Mapped[intpk]
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="acknowledgement")
    template_ct: Mapped[bytes] = encrypted_column()
    # Where the controller said so (an instruction reply), when known.
    source_instruction_id: Mapped[int | None] = mapped_column(ForeignKey("dsr_instructions.id", ondelete="SET NULL"))
    recorded_by: Mapped[int | None] = mapped_column(Integer)
    recorded_at: Mapped[utc]
    revoked_at: Mapped[dt.datetime | None]

    template = EncryptedField("template_ct", owner="controller_id")


class DsrSuggestion(Base):
    """The classifier's hint that an ordinary ticket looks like a DSR, for staff to confirm or dismiss."""

    __tablename__ = "dsr_suggestions"
    __table_args__ = (CheckConstraint("state IN ('open', 'accepted', 'dismissed')", name="state"),)

    id: Mapped[intpk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    types: Mapped[list[str]] = mapped_column(JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    score: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[utc]
