"""Mail tables. The outbox: one row per outbound email, the source of truth for its delivery."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.fields import EncryptedField, EncryptedRow, blind_index_column, encrypted_column
from app.db import Base, intpk, utc

OUTBOX_STATES = ("queued", "sending", "sent", "failed", "refused", "bounced")


class OutboxEmail(EncryptedRow, Base):
    """An email the desk has decided to send: written in the transaction that caused it, sent by a worker.

    `state` moves queued -> sending (claimed by one worker) -> sent | failed, or
    back to queued with a later `due_at` after a temporary failure, or to
    refused when an outbound policy no longer allows it at claim time (never sent). The
    Message-ID is fixed when the row is written, so a re-send after a crashed
    worker carries the same Message-ID and the receiver can de-duplicate.
    The recipient and the bodies are personal data, encrypted under the data
    key of `key_owner` (the controller, or the triage owner 0 when there is
    none, as for tickets); the subject must not carry personal data.
    """

    __tablename__ = "outbox_emails"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'sending', 'sent', 'failed', 'refused', 'bounced')", name="state"),
        Index("ix_outbox_emails_state_due_at", "state", "due_at"),
        Index("ix_outbox_emails_related", "related_type", "related_id"),
    )

    id: Mapped[intpk]
    # The Message-ID (with angle brackets) as its keyed hash (app.crypto.message_ids), unique, and encrypted
    # (`message_id`); `verp_bidx` the keyed hash of its random part, which a VERP bounce address names.
    message_id_bidx: Mapped[bytes | None] = blind_index_column(unique=True)
    verp_bidx: Mapped[bytes | None] = blind_index_column()
    message_id_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    kind: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    controller_id: Mapped[int | None] = mapped_column(ForeignKey("controllers.id", ondelete="SET NULL"), index=True)
    related_type: Mapped[str | None] = mapped_column(String(40))
    related_id: Mapped[int | None] = mapped_column(Integer)

    key_owner: Mapped[int] = mapped_column(Integer)
    to_addr_ct: Mapped[bytes] = encrypted_column()
    body_text_ct: Mapped[bytes] = encrypted_column()
    body_html_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    in_reply_to_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    references_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    # Extra headers decided at enqueue time (Auto-Submitted, ...), already checked for CR/LF.
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[utc]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    smtp_response: Mapped[str | None] = mapped_column(String(500))
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivery_note: Mapped[str | None] = mapped_column(String(200))
    # A delivery status notification about this row (app.mail.bounces): its status code and diagnostic.
    bounce_status: Mapped[str | None] = mapped_column(String(20))
    bounce_diagnostic: Mapped[str | None] = mapped_column(String(500))
    bounced_at: Mapped[dt.datetime | None]
    to_addr_bidx: Mapped[bytes | None] = blind_index_column()
    # Sends that followed a stale claim (the worker holding it died): each may have produced a duplicate.
    stale_claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When retention deleted the bodies of this delivered email (app.deletion.mailstores); the row stays as the record.
    payload_deleted_at: Mapped[dt.datetime | None]

    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[utc]
    updated_at: Mapped[utc]

    message_id = EncryptedField("message_id_ct", owner="key_owner")
    in_reply_to = EncryptedField("in_reply_to_ct", owner="key_owner")
    references = EncryptedField("references_ct", owner="key_owner")
    to_addr = EncryptedField("to_addr_ct", owner="key_owner", blind_index="to_addr_bidx", normalise="email")
    body_text = EncryptedField("body_text_ct", owner="key_owner")
    body_html = EncryptedField("body_html_ct", owner="key_owner")
