"""The transactional outbox, queue side: emails are rows written with the change that caused them.

How a caller sends mail: call `enqueue_email(session, ...)` inside the same
transaction as the change (a reply, a DSR forward, a notice) and let the edge
commit. After the commit a doorbell message asks a worker to send the row
(`app.mail.delivery`); if the broker is down, the outbox sweeper finds the row
later. Nothing is sent if the transaction rolls back.

Every email is offered to the registered outbound policies (`app.mail.policies`)
before it is queued, and again when a worker claims it for sending.

Subjects must be neutral (DESIGN.md: no personal data in email subjects):
pass a ticket reference or a generic phrase ("Your request T-2026-000123",
"Data subject request forwarded"), never a name, address or request detail.
The recipient and the bodies are personal data and are stored encrypted.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from app.addresses import InvalidAddress, normalise_domain, normalise_email
from app.crypto import message_ids
from app.exceptions import DeskError, Refused
from app.jobs.doorbell import Doorbell
from app.mail import policies
from app.mail.dsn import verp_key
from app.mail.models import OutboxEmail
from app.principal import Principal
from app.tickets.models import key_owner_for

log = logging.getLogger(__name__)

SEND_ACTOR = "send_email"
DEFAULT_MSGID_DOMAIN = "desk.localhost"
AutoSubmitted = Literal["auto-generated", "auto-replied", "no"]
# A staff member's reply is written by a person; everything else the desk sends on its own (RFC 3834).
HUMAN_KINDS = frozenset({"reply"})
AUTO_REPLY_KINDS = frozenset({"acknowledgement"})
MAX_REFERENCES = 20
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext
_MSGID = re.compile(r"^<[^\s<>]{1,246}>$")
# Line breaks and controls a header value must never carry (CR/LF injection and their Unicode cousins).
_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# Headers built from the row; extra headers may not override them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Sender",
        "Return-Path",
    )
)


class OutboxError(DeskError):
    """Base of the outbox's errors."""


class InvalidOutboundEmail(OutboxError, Refused, ValueError):
    """The email cannot be queued as given; the message names the field, never its value."""


# --- enqueue -----------------------------------------------------------------


def enqueue_email(
    session: Session,
    *,
    to: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    reply_to: str | None = None,
    controller_id: int | None = None,
    related_type: str | None = None,
    related_id: int | None = None,
    kind: str = "notice",
    headers: Mapping[str, str] | None = None,
    auto_submitted: AutoSubmitted | None = None,
    msgid_domain: str = DEFAULT_MSGID_DOMAIN,
    by: Principal,
    now: dt.datetime,
) -> OutboxEmail:
    """Queue one email to one recipient in the caller's transaction; it is sent after the commit.

    `subject` must be neutral (no personal data). `references` are the
    Message-IDs of the thread, oldest first; `in_reply_to` the one answered.
    Raises InvalidOutboundEmail for a bad address, a CR/LF in any header
    value or a malformed Message-ID, and the error of an outbound policy's
    refusal (an OutboundRefused, e.g. the DSR gate's InstructionRequired);
    nothing is written then.
    """
    if not _KIND.match(kind or ""):
        raise InvalidOutboundEmail("kind must be a short lowercase word (letters, digits, underscore)")
    recipient = _address("to", to)
    reply_address = _address("reply_to", reply_to) if reply_to else None
    clean_subject = _header_value("subject", subject)
    if not clean_subject.strip():
        raise InvalidOutboundEmail("subject is required")
    if len(clean_subject) > 900:
        raise InvalidOutboundEmail("subject is too long (at most 900 characters)")
    if not isinstance(body_text, str):
        raise InvalidOutboundEmail("body_text must be text")
    parent = _message_id("in_reply_to", in_reply_to) if in_reply_to else None
    refs = [_message_id("references", r) for r in references]
    if parent and parent not in refs:
        refs.append(parent)
    if len(refs) > MAX_REFERENCES:
        # Keep the thread root and the most recent ancestors (RFC 5322 §3.6.4 leaves trimming to the sender).
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    extra = _extra_headers(headers or {})
    if auto_submitted not in (None, "auto-generated", "auto-replied", "no"):
        raise InvalidOutboundEmail("auto_submitted must be auto-generated, auto-replied or no")
    flag = auto_submitted or ("no" if kind in HUMAN_KINDS else "auto-replied" if kind in AUTO_REPLY_KINDS else "auto-generated")
    if flag != "no":
        extra["Auto-Submitted"] = flag
        # Outlook honours this rather than Auto-Submitted: no out-of-office replies to automatic mail.
        extra.setdefault("X-Auto-Response-Suppress", "All")
    try:
        domain = normalise_domain(msgid_domain)
    except InvalidAddress:
        raise InvalidOutboundEmail("msgid_domain is not a valid domain name") from None
    # Every registered outbound policy must allow it (the DSR instruction gate: issue 6 item 5); a refusal raises.
    message = policies.OutboundMessage(
        to=recipient, kind=kind, body_text=body_text, related_type=related_type, related_id=related_id, controller_id=controller_id
    )
    policies.POLICIES.check_enqueue(session, message, by=by, now=now)
    token = secrets.token_hex(16)
    msgid = f"<{token}.{now.strftime('%Y%m%d%H%M%S')}@{domain}>"
    row = OutboxEmail(
        message_id=msgid,
        message_id_bidx=message_ids.digest(session, msgid),
        verp_bidx=message_ids.digest(session, verp_key(token)),
        kind=kind,
        state="queued",
        controller_id=controller_id,
        key_owner=key_owner_for(controller_id),
        related_type=related_type,
        related_id=related_id,
        to_addr=recipient,
        reply_to=reply_address,
        subject=clean_subject,
        body_text=body_text,
        body_html=body_html,
        in_reply_to=parent,
        references=" ".join(refs) or None,
        headers=extra,
        attempts=0,
        due_at=now,
        created_by=by.label[:100],
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    ring_after_commit(session, [row.id])
    return row


def _address(name: str, value: str | None) -> str:
    if not isinstance(value, str):
        raise InvalidOutboundEmail(f"{name} must be an email address")
    if _BREAKS.search(value):
        raise InvalidOutboundEmail(f"{name} may not contain line breaks or control characters")
    try:
        return normalise_email(value)
    except InvalidAddress:
        raise InvalidOutboundEmail(f"{name} is not a valid email address") from None


def _header_value(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidOutboundEmail(f"{name} must be text")
    if _BREAKS.search(value):
        raise InvalidOutboundEmail(f"{name} may not contain line breaks (CR/LF) or control characters")
    return value


def _message_id(name: str, value: str) -> str:
    text = _header_value(name, value).strip()
    if text and not text.startswith("<"):
        text = f"<{text}>"
    if not _MSGID.match(text):
        raise InvalidOutboundEmail(f"{name} must hold Message-IDs of the form <id@domain>")
    return text


def _extra_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not _HEADER_NAME.match(name or ""):
            raise InvalidOutboundEmail("a header name may only contain printable ASCII without spaces or colons")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidOutboundEmail(f"header {name} is set by the outbox and cannot be overridden")
        out[name] = _header_value(f"header {name}", value)
    return out


# --- doorbell: tell a worker after the commit --------------------------------

_DOORBELL = Doorbell(
    SEND_ACTOR,
    key="outbox_pending_ids",
    log=log,
    broker_down="outbox: broker unavailable (%s); the sweeper will send outbox %s",
    no_actor="outbox: no %s actor declared; the sweeper will send %d email(s)",
)


def ring_doorbell(outbox_ids: Sequence[int], *, delay: dt.timedelta | None = None) -> int:
    """Ask a worker to send these rows; a broker failure is logged, the sweeper sends them later."""
    return _DOORBELL.ring(outbox_ids, delay=delay)


def ring_after_commit(session: Session, outbox_ids: Sequence[int]) -> None:
    """Ring for these rows once the session's transaction commits (nothing if it rolls back)."""
    _DOORBELL.ring_after_commit(session, outbox_ids)


# --- the message --------------------------------------------------------------


def build_message(row: OutboxEmail, *, sender: str) -> EmailMessage:
    """The RFC 5322 message for a row; identical for every attempt (same Message-ID and Date)."""
    recipient, body_text, message_id = row.to_addr, row.body_text, row.message_id
    if not recipient or body_text is None or not message_id:
        raise ValueError("outbox row without recipient, body or Message-ID")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    if row.reply_to:
        msg["Reply-To"] = row.reply_to
    msg["Subject"] = row.subject
    msg["Date"] = format_datetime(row.created_at.astimezone(dt.UTC))
    msg["Message-ID"] = message_id
    in_reply_to, references = row.in_reply_to, row.references
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (row.headers or {}).items():
        msg[name] = value
    msg.set_content(body_text)
    html = row.body_html
    if html:
        msg.add_alternative(html, subtype="html")
        # A boundary fixed by the Message-ID, so every attempt sends byte-identical mail.
        msg.set_boundary("=_" + hashlib.sha256(message_id.encode()).hexdigest()[:40])
    return msg


def msgid_domain_for(config: Mapping[str, Any]) -> str:
    """The domain for Message-IDs: that of PRIVACY_ADDRESS (the From of every outbound email)."""
    address = str(config.get("PRIVACY_ADDRESS") or "")
    return address.rpartition("@")[2] or DEFAULT_MSGID_DOMAIN
