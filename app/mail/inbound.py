"""Inbound mail -> tickets: parse, de-duplicate, thread or route, store encrypted; quarantine what cannot be taken.

`ingest_message` is the service (flushes only): it stores the message on its
ticket and then offers it to the intake handlers the domains registered
(`app.mail.intake`; a DSR, an instruction, ...) in the same transaction.
`ingest_committed` is the batch job used by `mail ingest`, `mail poll` and the
IMAP actor: one transaction per message, committed before the caller
acknowledges the message to its source (exit code to the MTA, IMAP move), so
nothing accepted is lost. `release_quarantined` ingests a held message after
an officer vouched for it.

Outcomes and sysexits codes for the MTA:
- stored (a new ticket or a reply on one), or duplicate (the same bytes are already stored): EX_OK 0;
  a *different* message reusing a stored Message-ID is stored on that thread under an id of its own, noted;
- bounce (a delivery status notification, recorded on the outbox row it reports on; never a ticket): EX_OK 0;
- quarantined (kept encrypted with its reason for a privacy officer): EX_OK 0 as well: once it is safely held
  the officer decides; a bounce by the MTA would send the original to a possibly forged sender;
- the database or the disk was unavailable before the commit: EX_TEMPFAIL 75, so the MTA retries. Nothing in a
  message leads there: a message the desk fails to process for any other reason is held in the quarantine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.audit.service import appended_at_end
from app.crypto import message_ids
from app.crypto.cipher import KeyShredded
from app.jobs.batch import Clock, SessionScope, in_transaction
from app.mail import bounces, quarantine
from app.mail.ingest_lookup import look_up
from app.mail.intake import REGISTRY, Claim, Inbound, IntakeRegistry
from app.mail.parse import MalformedMessage, ParsedMail, parse_mail
from app.mail.threading import find_sent, find_thread, reflected_own, reused_thread, route_new
from app.principal import Principal
from app.tickets import referenced
from app.tickets import service as tickets
from app.tickets.models import Attachment, Message, Ticket

log = logging.getLogger(__name__)

EX_OK, EX_DATAERR, EX_TEMPFAIL = 0, 65, 75
DEFAULT_ATTACHMENT_MAX_BYTES = 25 * 1024 * 1024
REOPENING_STATUSES = ("waiting", "closed")
_CID_SRC = re.compile(r"""(\b(?:src|background)\s*=\s*["']?)cid:([^"'\s>]{1,250})""", re.IGNORECASE)


@dataclass(frozen=True)
class IngestSettings:
    """Limits and addresses of the inbound path (from app.config)."""

    support_address: str
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES
    mail_max_bytes: int | None = None
    # New mail to this address opens a DSR (Pexgle §11.3); None: the support address is the privacy address.
    privacy_address: str | None = None

    @property
    def dsr_address(self) -> str:
        """The address whose new mail is a data-subject request."""
        return self.privacy_address or self.support_address

    def is_own_address(self, address: str) -> bool:
        """Whether `address` is one of the desk's own (the support or privacy address, with or without a +tag)."""
        local, _, domain = address.strip().lower().rpartition("@")
        for own in {self.support_address, self.dsr_address}:
            own_local, _, own_domain = own.strip().lower().rpartition("@")
            if domain == own_domain and local.split("+", 1)[0] == own_local.split("+", 1)[0]:
                return True
        return False

    @property
    def max_message_bytes(self) -> int:
        """The largest message taken as mail: the attachment limit in base64, with headroom for text and dropped parts."""
        return self.mail_max_bytes or self.attachment_max_bytes * 4 + 10 * 1024 * 1024

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> IngestSettings:
        """From SUPPORT_ADDRESS (default: PRIVACY_ADDRESS), PRIVACY_ADDRESS, ATTACHMENT_MAX_BYTES and MAIL_MAX_BYTES."""
        privacy = config.get("PRIVACY_ADDRESS") or "privacy@desk.localhost"
        return cls(
            support_address=config.get("SUPPORT_ADDRESS") or privacy,
            privacy_address=privacy,
            attachment_max_bytes=int(config.get("ATTACHMENT_MAX_BYTES") or DEFAULT_ATTACHMENT_MAX_BYTES),
            mail_max_bytes=int(config["MAIL_MAX_BYTES"]) if config.get("MAIL_MAX_BYTES") else None,
        )


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one message."""

    status: str  # stored | duplicate | bounce | quarantined
    ticket_id: int | None = None
    message_pk: int | None = None
    quarantine_id: int | None = None
    reason: str | None = None
    new_ticket: bool = False
    how: str | None = None
    claim: Claim | None = None  # the intake handler that took the message, and what it did

    @property
    def exit_code(self) -> int:
        """The sysexits code for an MTA pipe: EX_OK for every outcome, since a quarantined message is safely kept (exit 65
        would have the MTA bounce the original to a sender who may be forged; a privacy officer releases or deletes it)."""
        return EX_OK


def _unparseable_as_mail(raw: bytes, reason: str) -> ParsedMail:
    # A released message the parser refused: keep its text readable on a triage ticket.
    text = raw[:200_000].decode("utf-8", errors="replace")
    return ParsedMail(
        message_id=f"released-{hashlib.sha256(raw).hexdigest()}@quarantine.invalid",
        has_message_id=False,
        in_reply_to=[],
        references=[],
        subject="",
        from_name="",
        from_email="",
        recipients=[],
        body_text=text,
        body_html=None,
        reply_text=text,
        flags=["released_from_quarantine"],
        notes=[{"code": "released_unparsed", "reason": reason}],
    )


def ingest_message(
    session: Session,
    raw: bytes,
    *,
    settings: IngestSettings,
    by: Principal,
    now: dt.datetime,
    source: str = "pipe",
    force: bool = False,
    registry: IntakeRegistry = REGISTRY,
    recipient: str | None = None,
) -> IngestOutcome:
    """Store one raw message on its ticket (or a new one), or quarantine it; `force` (a release) never quarantines.

    `recipient` is the envelope recipient the MTA delivers for (Postfix's ${recipient}; a Bcc is only there): it counts
    as an addressee, and a message already stored for another recipient is offered once more to the intake handlers
    when this one is the privacy address (a To support@ + Bcc privacy@ request opens its DSR). A stored message is then
    offered to the intake handlers of `registry` (the domains filled it at app creation); the claim, if any, is on the
    outcome. A message nobody claims is a ticket message only. A copy of the desk's own email (a list reflecting our
    acknowledgement) is held as a loop: stored as inbound, it would take over the thread of every reply to it.
    """
    try:
        if len(raw) > settings.max_message_bytes and not force:
            raise MalformedMessage("too_large", f"{len(raw)} bytes; the limit is {settings.max_message_bytes}")
        mail = parse_mail(raw, attachment_max_bytes=settings.attachment_max_bytes, envelope=(recipient or "")[:320])
    except MalformedMessage as exc:
        if not force:
            item = quarantine.hold(session, raw, reason=exc.reason, detail=exc.detail, source=source, by=by, now=now)
            return IngestOutcome("quarantined", quarantine_id=item.id, reason=exc.reason)
        mail = _unparseable_as_mail(raw, exc.reason)
    envelope = (recipient or "").strip().lower()[:320]
    if envelope and envelope not in mail.recipients:
        mail.recipients.append(envelope)
        mail.notes.append({"code": "envelope_recipient", "address": envelope})
    if force and "released_from_quarantine" not in mail.flags:
        mail.flags.append("released_from_quarantine")

    if mail.report is not None:
        return _take_bounce(session, raw, mail, source=source, registry=registry, by=by, now=now)
    if settings.is_own_address(mail.from_email) and not force:
        item = quarantine.hold(session, raw, reason="from_own_address", detail="From is a desk address", source=source, by=by, now=now)
        return IngestOutcome("quarantined", quarantine_id=item.id, reason="from_own_address")

    raw = mail.stored_raw or raw  # oversized attachments are not kept in the original either
    raw_sha256 = hashlib.sha256(raw).hexdigest()
    # After the sender's lock, one statement: the duplicate lookup, the observers' prechecks (the erased-subject flag), whether
    # a stored message names this one (a follow-up that arrived first), and on Postgres the thread, email answered and route.
    looked = look_up(session, mail, registry=registry, raw_sha256=raw_sha256)
    existing, prechecked = looked.existing, looked.prechecked
    reused_on, reused_id = None, None
    if existing is not None:
        # The same bytes again (or but for CRLF/LF); or an inbound message kept without its digest (taken as the same).
        # What the desk wrote itself (a reply, a forward's note) has no raw bytes: a message under its id is another.
        same = existing.raw_sha256 == raw_sha256 or (existing.raw_sha256 is None and existing.direction == "inbound")
        if same or tickets.same_original(session, existing.id, raw):
            claim = _for_another_recipient(session, existing.id, raw, mail, envelope, settings=settings, registry=registry, by=by, now=now)
            return IngestOutcome("duplicate", ticket_id=existing.ticket_id, message_pk=existing.id, claim=claim)
        # Another message under an id we hold (a broken sender, a forgery): stored, never dropped; its thread if the sender's on it.
        reused_on = reused_thread(session, existing.ticket_id, mail.from_email)
        reused_id = f"{raw_sha256[:40]}.reused@message-id.invalid"
        again = message_ids.first_by_digest(session, reused_id, Message, Message.message_id_bidx, Message.id, Message.ticket_id)
        if again is not None:
            return IngestOutcome("duplicate", ticket_id=again.ticket_id, message_pk=again.id)
        mail.notes.append({"code": "reused_message_id", "first_message": existing.id})  # not the id itself: never stored in plaintext
        mail.flags.append("reused_message_id")

    if existing is None and not force and reflected_own(session, mail, settings.dsr_address, settings.support_address) is not None:
        item = quarantine.hold(session, raw, reason="loop", detail="a copy of an email the desk sent", source=source, by=by, now=now)
        return IngestOutcome("quarantined", quarantine_id=item.id, reason="loop")
    sent = looked.sent if looked.folded else find_sent(session, mail)
    named = (looked.named,) if looked.folded else None
    thread = find_thread(session, mail, support_address=settings.support_address, sent=sent, registry=registry, followed_up=looked.followed_up, named=named)
    mail.message_id = reused_id or mail.message_id  # stored under its own id from here on (the threading used the real one)
    if thread is None and reused_on is not None:
        ticket, how, new = reused_on, "reused_message_id", False
    elif thread is not None:
        ticket, how, new = thread.ticket, thread.how, False
    else:
        route = looked.route or route_new(session, mail)
        how, new = route.how, True
    if new:
        ticket, message = tickets.open_ticket(
            session,
            controller_id=route.controller_id,
            requester_name=mail.from_name or None,
            requester_email=mail.from_email or None,
            subject=mail.subject,
            first=_message_input(mail, raw),
            by=by,
            now=now,
        )
    else:
        message = tickets.add_message(session, ticket, _message_input(mail, raw), by=by, now=now)
    inline: dict[str, Attachment] = {}
    for part in mail.attachments:
        stored = tickets.add_attachment(session, message, filename=part.filename, content_type=part.content_type, content=part.content, by=by, now=now)
        if part.content_id:
            inline[part.content_id] = stored
    if inline and mail.body_html and "cid:" in mail.body_html.lower():
        message.body_html = _inline_images(mail.body_html, ticket.id, inline)
    inbound = Inbound(
        ticket=ticket,
        message=message,
        mail=mail,
        raw=raw,
        new_ticket=new,
        replied_to=sent,
        support_address=settings.support_address,
        privacy_address=settings.dsr_address,
        prechecked=prechecked,
    )
    claim = registry.offer(session, inbound, by=by, now=now)
    if not new and not mail.is_auto_reply and ticket.status in REOPENING_STATUSES:
        # A person wrote again: the ticket needs attention. An auto-reply never reopens (no loops).
        tickets.change_status(session, ticket.id, "open", by=by, now=now)
    return IngestOutcome("stored", ticket_id=ticket.id, message_pk=message.id, new_ticket=new, how=how, claim=claim)


def _for_another_recipient(
    session: Session,
    message_pk: int,
    raw: bytes,
    mail: ParsedMail,
    envelope: str,
    *,
    settings: IngestSettings,
    registry: IntakeRegistry,
    by: Principal,
    now: dt.datetime,
) -> Claim | None:
    """A stored message delivered again for `envelope`: noted once; offered to the handlers again when that is the privacy address."""
    note = {"code": "envelope_recipient", "address": envelope}
    if not envelope or note not in mail.notes:
        return None  # no envelope recipient, or one the headers name (offered with it the first time): no read
    message = session.get(Message, message_pk)
    if message is None or note in (message.notes or []):
        return None  # delivered for it before
    message.notes = [*(message.notes or []), note]
    if envelope != settings.dsr_address.strip().lower():
        return None
    ticket = message.ticket
    first = session.scalar(select(Message.id).where(Message.ticket_id == ticket.id).order_by(Message.id).limit(1))
    inbound = Inbound(
        ticket=ticket,
        message=message,
        mail=mail,
        raw=raw,
        new_ticket=first == message.id,
        replied_to=find_sent(session, mail),
        support_address=settings.support_address,
        privacy_address=settings.dsr_address,
    )
    return registry.offer(session, inbound, by=by, now=now)


def _message_input(mail: ParsedMail, raw: bytes) -> tickets.MessageInput:
    return tickets.MessageInput(
        direction="inbound",
        body_text=mail.body_text,
        body_html=mail.body_html,
        reply_text=mail.reply_text,
        sender_name=mail.from_name or None,
        sender_email=mail.from_email or None,
        subject=mail.subject,
        message_id=mail.message_id,
        raw=raw,
        recipients=mail.recipients,
        is_auto_reply=mail.is_auto_reply,
        flags=mail.flags,
        notes=mail.notes,
        references=referenced.named_ids(mail.in_reply_to, mail.references, own=mail.message_id),
    )


def _inline_images(html: str, ticket_id: int, inline: Mapping[str, Attachment]) -> str:
    """`cid:` references in the HTML pointed at the stored parts (the ticket page shows them; same origin, so under the CSP)."""

    def url(match: re.Match[str]) -> str:
        part = inline.get(match.group(2))
        return f"{match.group(1)}/tickets/{ticket_id}/attachments/{part.id}" if part is not None else match.group(0)

    return _CID_SRC.sub(url, html)


def _take_bounce(session: Session, raw: bytes, mail: ParsedMail, *, source: str, registry: IntakeRegistry, by: Principal, now: dt.datetime) -> IngestOutcome:
    """A DSN: mark the outbox row it reports on; keep it on that row's ticket (no new ticket) or hold it silently."""
    assert mail.report is not None
    row = bounces.find_bounced(session, mail, mail.report)
    if row is None:
        item = quarantine.hold(session, raw, reason="bounce_unmatched", detail="names no email the desk sent", source=source, by=by, now=now)
        return IngestOutcome("quarantined", quarantine_id=item.id, reason="bounce_unmatched")
    bounces.mark_bounced(session, row, mail.report, by=by, now=now)
    ticket_id = registry.ticket_of(session, row)
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    if ticket is None:
        return IngestOutcome("bounce", how="outbox")
    message = tickets.add_message(session, ticket, _message_input(mail, raw), by=by, now=now)
    return IngestOutcome("bounce", ticket_id=ticket.id, message_pk=message.id, how="outbox")


def ingest_committed(
    sessions: SessionScope,
    raw: bytes,
    *,
    settings: IngestSettings,
    by: Principal,
    clock: Clock,
    source: str,
    recipient: str | None = None,
) -> IngestOutcome:
    """Ingest in a transaction of its own (`sessions`, committed); a concurrent duplicate (unique Message-ID) is retried once as a no-op.

    Temporary faults propagate (`is_temporary`: the database or the disk was unavailable; the caller reports EX_TEMPFAIL
    and the source keeps the message). Any other failure is the desk's fault, no reason for the MTA to retry and bounce:
    the message is held in the quarantine ("unprocessable", or "controller_shredded" under a destroyed key; its error
    type as the detail) in a fresh transaction. Nothing is acknowledged to the source before this returns."""

    def work(session: Session, now: dt.datetime) -> IngestOutcome:
        with appended_at_end(session):  # the message's audit events in one append at the end: the chain lock held least
            return ingest_message(session, raw, settings=settings, by=by, now=now, source=source, recipient=recipient)

    try:
        try:
            return in_transaction(sessions, work, clock=clock)
        except IntegrityError:
            # Another process stored the same Message-ID between our check and our insert.
            log.info("inbound message raced a concurrent ingest; retrying as a duplicate check")
        return in_transaction(sessions, work, clock=clock)
    except Exception as exc:
        if is_temporary(exc):
            raise
        log.error("inbound message could not be processed (%s); holding it in the quarantine", type(exc).__name__)
        failure, why = type(exc).__name__[:80], "controller_shredded" if isinstance(exc, KeyShredded) else "unprocessable"

        def hold(session: Session, now: dt.datetime) -> IngestOutcome:
            item = quarantine.hold(session, raw, reason=why, detail=failure, source=source, by=by, now=now)
            return IngestOutcome("quarantined", quarantine_id=item.id, reason=why)

        return in_transaction(sessions, hold, clock=clock)


def is_temporary(exc: BaseException) -> bool:
    """A fault of the environment (database unreachable or failing, disk full or unreadable), worth a retry by the source."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    # A dropped connection surfaces as other DBAPI errors too; bad data (a DataError, an IntegrityError) would fail again.
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def release_quarantined(session: Session, item_id: int, *, settings: IngestSettings, by: Principal, now: dt.datetime) -> int:
    """Ingest a held message as mail after all (its checks waived); returns the ticket id. Audit-logged.

    Raises `quarantine.QuarantineNotFound` when the message is not held (unknown, released or deleted).
    """
    item = quarantine.held(session, item_id)
    raw = b"".join(quarantine.raw_chunks(session, item))
    outcome = ingest_message(session, raw, settings=settings, by=by, now=now, source="release", force=True)
    assert outcome.ticket_id is not None  # force=True never quarantines
    quarantine.mark_released(session, item, ticket_id=outcome.ticket_id, message_pk=outcome.message_pk, by=by, now=now)
    return outcome.ticket_id
