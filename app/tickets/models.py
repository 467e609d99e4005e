"""Tickets, their messages and attachments, and the encrypted blobs that hold large content.

Every personal value is an encrypted column (requester, subject, bodies,
file names, raw originals, blob chunks); the requester's and each sender's
email also have a blind index for lookup. Read and write them through
`app.tickets.service`, never by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, intpk, utc
from app.tickets.sealed import BlindIndex, Sealed

STATUSES = ("new", "open", "waiting", "closed")
DIRECTIONS = ("inbound", "outbound", "note")


class Ticket(Base):
    """A support case of one controller, or in triage while `controller_id` is NULL."""

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("status IN ('new', 'open', 'waiting', 'closed')", name="status"),
        # The queue: a controller's tickets by status (and assignee), newest first,
        # keyset-paginated on (created_at, id). Each filter combination has a
        # matching index prefix so a page is an index range scan at any size.
        Index("ix_tickets_queue_status", "controller_id", "status", "created_at", "id"),
        Index("ix_tickets_queue_assignee", "controller_id", "assignee_id", "status", "created_at", "id"),
        Index("ix_tickets_queue_all", "controller_id", "created_at", "id"),
    )

    id: Mapped[intpk]
    # T-YYYY-NNNNNN from the year and the row id: unique without a counter to race on.
    reference: Mapped[str | None] = mapped_column(String(24), unique=True)
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(10), default="new")
    assignee_id: Mapped[int | None] = mapped_column(Integer, index=True)
    requester_name: Mapped[str | None] = mapped_column(Sealed())
    requester_email: Mapped[str | None] = mapped_column(Sealed())
    requester_email_index: Mapped[str | None] = mapped_column(BlindIndex(), index=True)
    subject: Mapped[str | None] = mapped_column(Sealed())
    # Random and unguessable: replies to support+<token>@ join this ticket.
    reply_token: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[utc]
    updated_at: Mapped[utc]
    closed_at: Mapped[dt.datetime | None]

    messages: Mapped[list[Message]] = relationship(back_populates="ticket", cascade="all, delete-orphan", order_by="Message.id", passive_deletes=True)


class Message(Base):
    """One inbound email, outbound reply or internal note of a ticket."""

    __tablename__ = "ticket_messages"
    __table_args__ = (CheckConstraint("direction IN ('inbound', 'outbound', 'note')", name="direction"),)

    id: Mapped[intpk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(10))
    # The RFC 5322 Message-ID without angle brackets; unique, so a second ingest is a no-op.
    message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    author_id: Mapped[int | None] = mapped_column(Integer)
    sender_name: Mapped[str | None] = mapped_column(Sealed())
    sender_email: Mapped[str | None] = mapped_column(Sealed())
    sender_email_index: Mapped[str | None] = mapped_column(BlindIndex(), index=True)
    subject: Mapped[str | None] = mapped_column(Sealed())
    body_text: Mapped[str | None] = mapped_column(Sealed())
    reply_text: Mapped[str | None] = mapped_column(Sealed())
    body_html: Mapped[str | None] = mapped_column(Sealed())
    raw_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id", ondelete="SET NULL"), index=True)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    is_auto_reply: Mapped[bool] = mapped_column(default=False)
    # Safe flags and notes about the message (ids, codes, counts): forged sender, dropped parts.
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[utc]

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", cascade="all, delete-orphan", order_by="Attachment.id", passive_deletes=True)


class Attachment(Base):
    """A file of a message; its bytes live encrypted in a blob."""

    __tablename__ = "ticket_attachments"

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(ForeignKey("ticket_messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str | None] = mapped_column(Sealed())
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[utc]

    message: Mapped[Message] = relationship(back_populates="attachments")


class Blob(Base):
    """Encrypted content stored in chunks so large files are never held whole."""

    __tablename__ = "blobs"

    id: Mapped[intpk]
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"), index=True)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int]
    created_at: Mapped[utc]


class BlobChunk(Base):
    """One encrypted chunk (at most BLOB_CHUNK_BYTES of plaintext) of a blob."""

    __tablename__ = "blob_chunks"

    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary())
