"""The transactional outbox: emails are rows written with the change that caused them, then sent by a worker.

How a caller sends mail: call `enqueue_email(session, ...)` inside the same
transaction as the change (a reply, a DSR forward, a notice) and let the edge
commit. After the commit a doorbell message asks a worker to send the row;
if the broker is down, the outbox sweeper finds the row later. Nothing is
sent if the transaction rolls back.

Subjects must be neutral (DESIGN.md: no personal data in email subjects):
pass a ticket reference or a generic phrase ("Your request T-2026-000123",
"Data subject request forwarded"), never a name, address or request detail.
The recipient and the bodies are personal data and are stored encrypted.

Exactly-once, as far as SMTP allows: a worker claims a row with a conditional
UPDATE (queued -> sending), so two workers never both send it. A worker that
dies mid-send leaves the row in `sending` with its claim time; once the claim
is older than `stale_after` (longer than the actor's time limit, so its owner
is surely gone) the sweeper re-sends it with the same Message-ID and the row
records `delivery_note = 'resent after stale claim'`. Residual risk: if the
worker died after the SMTP server accepted the message but before the row
was marked sent, the recipient gets two copies with one Message-ID (most
receivers and mail clients collapse them). The file outbox has no such
window: the `.eml` file named after the Message-ID is the proof of delivery.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, func, or_, select, update
from sqlalchemy.orm import Session

from app.addresses import InvalidAddress, normalise_domain, normalise_email
from app.audit.service import record
from app.crypto.cipher import CryptoError
from app.db import utcnow
from app.dsr.gate import check_outbound
from app.jobs.doorbell import Doorbell
from app.mail.models import OutboxEmail
from app.mail.transport import (
    DeliveryFailure,
    FileTransport,
    PermanentFailure,
    SendResult,
    SmtpTransport,
    Transport,
    parse_smtp_url,
)
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


class OutboxError(Exception):
    """Base of the outbox's errors."""


class InvalidOutboundEmail(OutboxError, ValueError):
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
    value or a malformed Message-ID; nothing is written then.
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
    # Issue 6 item 5: nothing reaches a DSR's subject without a confirmed controller instruction (raises InstructionRequired).
    check_outbound(session, to=recipient, kind=kind, body_text=body_text, related_type=related_type, related_id=related_id, by=by, now=now)
    row = OutboxEmail(
        message_id=f"<{secrets.token_hex(16)}.{now.strftime('%Y%m%d%H%M%S')}@{domain}>",
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
    _DOORBELL.ring_after_commit(session, [row.id])
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


# --- the message --------------------------------------------------------------


def build_message(row: OutboxEmail, *, sender: str) -> EmailMessage:
    """The RFC 5322 message for a row; identical for every attempt (same Message-ID and Date)."""
    recipient, body_text = row.to_addr, row.body_text
    if not recipient or body_text is None:
        raise ValueError("outbox row without recipient or body")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    if row.reply_to:
        msg["Reply-To"] = row.reply_to
    msg["Subject"] = row.subject
    msg["Date"] = format_datetime(row.created_at.astimezone(dt.UTC))
    msg["Message-ID"] = row.message_id
    if row.in_reply_to:
        msg["In-Reply-To"] = row.in_reply_to
    if row.references:
        msg["References"] = row.references
    for name, value in (row.headers or {}).items():
        msg[name] = value
    msg.set_content(body_text)
    html = row.body_html
    if html:
        msg.add_alternative(html, subtype="html")
        # A boundary fixed by the Message-ID, so every attempt sends byte-identical mail.
        msg.set_boundary("=_" + hashlib.sha256(row.message_id.encode()).hexdigest()[:40])
    return msg


# --- settings from the app config ---------------------------------------------


@dataclass(frozen=True)
class OutboxPolicy:
    """Timing of claims and retries."""

    # Must exceed the send actor's time limit: a claim older than this belongs to a dead worker.
    stale_after: dt.timedelta = dt.timedelta(minutes=10)
    retry_base: dt.timedelta = dt.timedelta(minutes=1)
    retry_max: dt.timedelta = dt.timedelta(hours=6)
    max_attempts: int = 12

    def retry_delay(self, attempts: int) -> dt.timedelta:
        """Exponential backoff: base, 2x base, 4x base ... capped at retry_max."""
        return min(self.retry_base * (2 ** max(attempts - 1, 0)), self.retry_max)


@dataclass(frozen=True)
class OutboundSettings:
    """Everything a send needs from the config: transport, sender address, timing."""

    transport: Transport
    sender: str
    policy: OutboxPolicy

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OutboundSettings:
        """SMTP_URL (unset: file outbox in OUTBOX_PATH), PRIVACY_ADDRESS as From, OUTBOX_* timings."""
        sender = str(config.get("PRIVACY_ADDRESS") or f"privacy@{DEFAULT_MSGID_DOMAIN}")
        transport: Transport
        if config.get("SMTP_URL"):
            transport = SmtpTransport(parse_smtp_url(str(config["SMTP_URL"])), local_hostname=sender.rpartition("@")[2] or None)
        else:
            transport = FileTransport(config.get("OUTBOX_PATH") or Path(str(config["INSTANCE_PATH"])) / "outbox")
        policy = OutboxPolicy(
            stale_after=dt.timedelta(seconds=float(config.get("OUTBOX_STALE_SECONDS", 600))),
            retry_base=dt.timedelta(seconds=float(config.get("OUTBOX_RETRY_BASE_SECONDS", 60))),
            retry_max=dt.timedelta(seconds=float(config.get("OUTBOX_RETRY_MAX_SECONDS", 6 * 3600))),
            max_attempts=int(config.get("OUTBOX_MAX_ATTEMPTS", 12)),
        )
        return cls(transport=transport, sender=sender, policy=policy)


def msgid_domain_for(config: Mapping[str, Any]) -> str:
    """The domain for Message-IDs: that of PRIVACY_ADDRESS (the From of every outbound email)."""
    address = str(config.get("PRIVACY_ADDRESS") or "")
    return address.rpartition("@")[2] or DEFAULT_MSGID_DOMAIN


# --- claim, record, deliver ---------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """This worker's exclusive right to send one row (until it goes stale)."""

    outbox_id: int
    token: str
    message_id: str
    attempt: int
    after_stale_claim: bool


def claim(session: Session, outbox_id: int, *, now: dt.datetime, policy: OutboxPolicy) -> Claim | None:
    """Take a due row for sending (queued -> sending) with a conditional UPDATE; None when not ours to send."""
    row = session.get(OutboxEmail, outbox_id, populate_existing=True)
    if row is None or row.state in ("sent", "failed"):
        return None
    if row.state == "queued" and row.due_at > now:
        return None
    stale = row.state == "sending"
    if stale and (row.claimed_at is None or row.claimed_at > now - policy.stale_after):
        return None  # another worker holds a live claim
    guard = [
        OutboxEmail.id == row.id,
        OutboxEmail.state == row.state,
        OutboxEmail.attempts == row.attempts,
        OutboxEmail.claim_token.is_(None) if row.claim_token is None else OutboxEmail.claim_token == row.claim_token,
    ]
    if row.attempts >= policy.max_attempts:
        session.execute(
            update(OutboxEmail)
            .where(*guard)
            .values(state="failed", claim_token=None, updated_at=now, delivery_note=f"gave up after {row.attempts} attempts"[:200])
            .execution_options(synchronize_session=False)
        )
        session.flush()
        log.warning("outbox %s failed: gave up after %s attempts", row.id, row.attempts)
        return None
    token = secrets.token_hex(16)
    result = session.execute(
        update(OutboxEmail)
        .where(*guard)
        .values(
            state="sending",
            claim_token=token,
            claimed_at=now,
            attempts=row.attempts + 1,
            updated_at=now,
            delivery_note="resent after stale claim" if stale else row.delivery_note,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None  # another worker won the race
    if stale:
        log.warning("outbox %s: claim went stale; sending again with the same Message-ID", row.id)
    return Claim(outbox_id=row.id, token=token, message_id=row.message_id, attempt=row.attempts + 1, after_stale_claim=stale)


def record_sent(session: Session, won: Claim, result: SendResult, *, now: dt.datetime) -> bool:
    """Mark the claimed row sent; False if the claim was taken over meanwhile (a possible duplicate, noted)."""
    if result.already_delivered:
        note = "found already delivered after stale claim; not sent again"
    elif won.after_stale_claim:
        note = "resent after stale claim"
    elif won.attempt > 1:
        note = f"sent on attempt {won.attempt} after temporary failures"
    else:
        note = "sent on first attempt"
    done = session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id, OutboxEmail.state == "sending", OutboxEmail.claim_token == won.token)
        .values(state="sent", sent_at=now, smtp_response=result.response[:500], delivery_note=note, claim_token=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) == 1:
        return True
    # Our claim went stale and another worker took the row over: both may have sent it.
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id)
        .values(delivery_note="possible duplicate: a stale claim also completed its send", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    log.warning("outbox %s: sent by a worker whose claim had been taken over; possible duplicate", won.outbox_id)
    return False


def record_failure(session: Session, won: Claim, failure: DeliveryFailure, *, now: dt.datetime, policy: OutboxPolicy) -> Literal["queued", "failed"]:
    """After a failed attempt: back to queued with backoff, or failed for good. Returns the new state."""
    give_up = failure.permanent or won.attempt >= policy.max_attempts
    values: dict[str, Any] = {"last_error": failure.reason[:500], "claim_token": None, "claimed_at": None, "updated_at": now}
    state: Literal["queued", "failed"]
    if give_up:
        state = "failed"
        values.update(state=state, delivery_note="refused permanently" if failure.permanent else f"gave up after {won.attempt} attempts")
    else:
        state = "queued"
        values.update(state=state, due_at=now + policy.retry_delay(won.attempt))
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id, OutboxEmail.state == "sending", OutboxEmail.claim_token == won.token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    log.warning("outbox %s attempt %s failed (%s): %s", won.outbox_id, won.attempt, state, failure.reason)
    _audit_failure(session, won, state, now=now)
    return state


def _audit_failure(session: Session, won: Claim, state: str, *, now: dt.datetime) -> None:
    row_controller = session.scalar(select(OutboxEmail.controller_id).where(OutboxEmail.id == won.outbox_id))
    record(
        session,
        by=Principal.system("outbox"),
        action="outbox.failed" if state == "failed" else "outbox.retry",
        target_type="outbox_email",
        target_id=won.outbox_id,
        controller_id=row_controller,
        details={"attempt": won.attempt},
        now=now,
    )


SessionScope = Callable[[], AbstractContextManager[Session]]
Outcome = Literal["sent", "queued", "failed", "skipped"]


def deliver(sessions: SessionScope, outbox_id: int, *, settings: OutboundSettings, clock: Callable[[], dt.datetime] = utcnow) -> Outcome:
    """Send one outbox row if it is due and unclaimed: claim (commit), send, record (commit).

    This is an edge, not a service: it commits between steps so a crash
    mid-send leaves a visible `sending` claim instead of a rolled-back nothing.
    """
    with sessions() as session:
        won = claim(session, outbox_id, now=clock(), policy=settings.policy)
        if won is None:
            return "skipped"
        row = session.get(OutboxEmail, outbox_id, populate_existing=True)
        assert row is not None
        try:
            message = build_message(row, sender=settings.sender)
            recipient = str(message["To"])
        except (ValueError, TypeError, CryptoError) as exc:
            # CryptoError: the controller's key was shredded; the mail can never be sent.
            return _fail(session, won, PermanentFailure(f"the message could not be built ({type(exc).__name__})"), settings, clock)
    if won.after_stale_claim and settings.transport.already_delivered(won.message_id):
        result = SendResult(response="already delivered before the stale claim", already_delivered=True)
    else:
        try:
            result = settings.transport.send(message, sender=settings.sender, recipient=recipient)
        except DeliveryFailure as exc:
            with sessions() as session:
                return _fail(session, won, exc, settings, clock)
    with sessions() as session:
        record_sent(session, won, result, now=clock())
    return "sent"


def _fail(session: Session, won: Claim, failure: DeliveryFailure, settings: OutboundSettings, clock: Callable[[], dt.datetime]) -> Outcome:
    state = record_failure(session, won, failure, now=clock(), policy=settings.policy)
    if state == "queued":
        # Rung after the caller's scope commits; a lost doorbell is covered by the sweeper.
        session.info.setdefault(_RETRY_KEY, []).append((won.outbox_id, settings.policy.retry_delay(won.attempt)))
    return state


_RETRY_KEY = "outbox_retry_doorbells"


@event.listens_for(Session, "after_commit")
def _ring_retries_after_commit(session: Session) -> None:
    for outbox_id, delay in session.info.pop(_RETRY_KEY, None) or ():
        ring_doorbell([outbox_id], delay=delay)


# --- sweeper and figures ---------------------------------------------------------


class OutboxEmailNotFound(OutboxError):
    """No outbox row with that id."""


class NotRequeueable(OutboxError):
    """Only a failed email can be queued again; the message says its state."""


def requeue(session: Session, outbox_id: int, *, by: Principal, now: dt.datetime) -> OutboxEmail:
    """Give a failed email a fresh set of attempts (after the cause is fixed); same Message-ID, audit-logged."""
    row = session.get(OutboxEmail, outbox_id)
    if row is None:
        raise OutboxEmailNotFound(f"no outbox email {outbox_id}")
    if row.state != "failed":
        raise NotRequeueable(f"outbox email {outbox_id} is {row.state}, not failed")
    row.state, row.attempts, row.due_at, row.updated_at = "queued", 0, now, now
    row.delivery_note = "requeued by an operator after failing"
    session.flush()
    record(session, by=by, action="outbox.requeued", target_type="outbox_email", target_id=row.id, controller_id=row.controller_id, now=now)
    _DOORBELL.ring_after_commit(session, [row.id])
    return row


def due_for_delivery(session: Session, *, now: dt.datetime, policy: OutboxPolicy, limit: int = 1000) -> list[int]:
    """Ids of rows a worker should look at: queued and due, or sending with a stale claim."""
    stmt = (
        select(OutboxEmail.id)
        .where(
            or_(
                (OutboxEmail.state == "queued") & (OutboxEmail.due_at <= now),
                (OutboxEmail.state == "sending") & (OutboxEmail.claimed_at <= now - policy.stale_after),
            )
        )
        .order_by(OutboxEmail.due_at, OutboxEmail.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def sweep(session: Session, *, now: dt.datetime, policy: OutboxPolicy) -> tuple[int, int]:
    """Ring the doorbell for every due row; returns (rows due, doorbells rung). Reads only."""
    ids = due_for_delivery(session, now=now, policy=policy)
    return len(ids), ring_doorbell(ids) if ids else 0


def backlog(session: Session, *, now: dt.datetime) -> dict[str, int]:
    """Counts for /healthz: rows per state and how many queued rows are already due."""
    counts = {state: 0 for state in ("queued", "sending", "failed")}
    # IN (not != 'sent') so the (state, due_at) index serves it however many rows were sent.
    for state, n in session.execute(select(OutboxEmail.state, func.count()).where(OutboxEmail.state.in_(tuple(counts))).group_by(OutboxEmail.state)):
        counts[state] = int(n)
    due = session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.state == "queued", OutboxEmail.due_at <= now))
    counts["due"] = int(due or 0)
    return counts
