"""Tickets, their messages and attachments (their large content lives in app.blobs).

Every personal value is an encrypted field (app.crypto.fields: requester,
subject, bodies, file names; raw originals and attachment bytes are blobs of
app.blobs under the same key owner); the requester's and each sender's email
also have a blind index for lookup. Values are encrypted
under the data key of `key_owner`: the controller's id, or TRIAGE_KEY_OWNER (0)
while the ticket waits in triage (its own key, never another controller's).
Read and write them through `app.tickets.service`, never by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, FetchedValue, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.crypto.fields import EncryptedField, EncryptedRow, blind_index_column, encrypted_column
from app.db import Base, intpk, utc

STATUSES = ("new", "open", "waiting", "closed")
DIRECTIONS = ("inbound", "outbound", "note")
# The key owner of data that belongs to no controller yet (triage tickets, quarantined mail).
TRIAGE_KEY_OWNER = 0


def key_owner_for(controller_id: int | None) -> int:
    """The key owner of a controller's data (TRIAGE_KEY_OWNER for none)."""
    return TRIAGE_KEY_OWNER if controller_id is None else controller_id


class Ticket(EncryptedRow, Base):
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
        # "My tickets" / "unassigned" in any status (migration 0009): without it a
        # person with few tickets in a large queue meant scanning the whole queue.
        Index("ix_tickets_queue_assignee_any", "controller_id", "assignee_id", "created_at", "id"),
        # The escalation banner counts the tickets whose communication did not reach the controller (migration 0029):
        # only those rows are in the index.
        Index(
            "ix_tickets_communication_undelivered",
            "communication_undelivered_at",
            sqlite_where=text("communication_undelivered_at IS NOT NULL"),
            postgresql_where=text("communication_undelivered_at IS NOT NULL"),
        ),
    )

    id: Mapped[intpk]
    # T-YYYY-NNNNNN from the year and the row id: unique without a counter to race on. On Postgres a trigger
    # sets it in the INSERT, which returns it (migration 0024); elsewhere create_ticket sets it after.
    reference: Mapped[str | None] = mapped_column(String(24), unique=True, server_default=FetchedValue())
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="RESTRICT"))
    key_owner: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="new")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    requester_name_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    requester_email_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    requester_email_bidx: Mapped[bytes | None] = blind_index_column()
    subject_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # Random and unguessable: replies to support+<token>@ join this ticket.
    reply_token: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[utc]
    updated_at: Mapped[utc]
    closed_at: Mapped[dt.datetime | None]
    # When the forward of a communication on this ticket to the controller was first given up (Pexgle §11.2, issue 11
    # item 4; app.dsr.communication_delivery); None once it was passed on another way or a later forward got through.
    communication_undelivered_at: Mapped[dt.datetime | None]

    messages: Mapped[list[Message]] = relationship(back_populates="ticket", cascade="all, delete-orphan", order_by="Message.id", passive_deletes=True)

    requester_name = EncryptedField("requester_name_ct", owner="key_owner")
    requester_email = EncryptedField("requester_email_ct", owner="key_owner", blind_index="requester_email_bidx", normalise="email")
    subject = EncryptedField("subject_ct", owner="key_owner")


class Message(EncryptedRow, Base):
    """One inbound email, outbound reply or internal note of a ticket."""

    __tablename__ = "ticket_messages"
    __table_args__ = (CheckConstraint("direction IN ('inbound', 'outbound', 'note')", name="direction"),)

    id: Mapped[intpk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(10))
    # The RFC 5322 Message-ID without angle brackets: its keyed hash (app.crypto.message_ids), unique, so a second
    # ingest is a no-op, and the value encrypted (`message_id`, for the In-Reply-To of a reply). None for notes.
    message_id_bidx: Mapped[bytes | None] = blind_index_column(unique=True)
    message_id_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # The staff member who wrote an outbound reply or a note (None for inbound mail).
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The ticket's key owner, copied because each encrypted value is bound to its row's owner.
    key_owner: Mapped[int] = mapped_column(Integer)
    sender_name_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    sender_email_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    sender_email_bidx: Mapped[bytes | None] = blind_index_column()
    subject_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    body_text_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    reply_text_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    body_html_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    raw_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id", ondelete="SET NULL"), index=True)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    is_auto_reply: Mapped[bool] = mapped_column(default=False)
    # Safe flags and notes about the message (ids, codes, counts): forged sender, dropped parts.
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[utc]

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", cascade="all, delete-orphan", order_by="Attachment.id", passive_deletes=True)

    message_id = EncryptedField("message_id_ct", owner="key_owner")
    sender_name = EncryptedField("sender_name_ct", owner="key_owner")
    sender_email = EncryptedField("sender_email_ct", owner="key_owner", blind_index="sender_email_bidx", normalise="email")
    subject = EncryptedField("subject_ct", owner="key_owner")
    body_text = EncryptedField("body_text_ct", owner="key_owner")
    reply_text = EncryptedField("reply_text_ct", owner="key_owner")
    body_html = EncryptedField("body_html_ct", owner="key_owner")


class Attachment(EncryptedRow, Base):
    """A file of a message; its bytes live encrypted in a blob."""

    __tablename__ = "ticket_attachments"

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(ForeignKey("ticket_messages.id", ondelete="CASCADE"), index=True)
    key_owner: Mapped[int] = mapped_column(Integer)
    filename_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[utc]

    message: Mapped[Message] = relationship(back_populates="attachments")

    filename = EncryptedField("filename_ct", owner="key_owner")
