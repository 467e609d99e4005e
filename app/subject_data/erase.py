"""Erasure and rectification across a subject's tickets, messages, attachments and everything that references them.

One engine, two modes. Erasure replaces the requester fields, redacts the
subject's identifiers in every text of their tickets and messages, removes
attachments and destroys raw originals; rectification writes the corrected
values in place of the old ones (raw originals, which hold the old values,
are destroyed too; attachments cannot be rewritten and are counted).

Reference-aware (the helpdesk erasure bugs of DESIGN.md): the outbox rows of
those tickets and of the subject's requests (queued mail to the subject is
cancelled), the controller's instruction texts quoting the request, held
quarantine items that mention the subject, the subject fields of the
requests themselves, and restrictions keyed on the old address.

Idempotent and resumable: the work is split into phases walked in id order
in batches; each batch commits with its cursor (app.jobs JobState), so an
interrupted run continues where it stopped and a finished one has nothing
left to find. The report says exactly what was changed and what failed; the
audit events carry ids and counts only.

SQLite keeps deleted and overwritten bytes in free space and in the WAL:
every batch runs with `PRAGMA secure_delete=ON` (freed content is zeroed,
cost proportional to what is changed) and the finished run truncates the WAL
(`wal_checkpoint(TRUNCATE)`); VACUUM would also work but rewrites the whole
file under an exclusive lock. Postgres keeps dead tuples (ciphertext only)
until autovacuum reclaims them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from app.crypto.cipher import CryptoError
from app.dsr.models import Dsr, DsrForward, Instruction
from app.mail import quarantine
from app.mail.models import OutboxEmail
from app.principal import Principal
from app.subject_data.find import message_scope, other_message_ids, subject_ticket_ids
from app.subject_data.models import Restriction, SubjectRun
from app.subject_data.rewrite import Rewriter
from app.tickets.blobs import delete_blob, read_blob
from app.tickets.models import Message, Ticket

BATCH = 250
QUARANTINE_BATCH = 50
QUARANTINE_MAX_BYTES = 10 * 1024 * 1024
ERASED_ADDRESS = "erased@erased.invalid"
MESSAGE_TEXTS = ("subject", "body_text", "reply_text", "body_html")
PHASES = ("plan", "messages", "tickets", "references", "quarantine", "finalize", "done")


def params_for_erase(email: str | None, terms: list[str]) -> dict[str, Any]:
    """What an erasure needs: the subject's email and the terms to redact."""
    return {"email": email, "replace": {t: "[erased]" for t in terms}}


def _rewriter(params: dict[str, Any]) -> Rewriter:
    return Rewriter(params.get("replace") or {})


def _new_email(run: SubjectRun, params: dict[str, Any]) -> str | None:
    return params.get("new_email") if run.kind == "rectify" else None


def _bump(report: dict[str, Any], key: str, n: int = 1) -> None:
    changed = report.setdefault("changed", {})
    changed[key] = int(changed.get(key, 0)) + n


def _fail(report: dict[str, Any], what: str, item_id: int, reason: str) -> None:
    failed = report.setdefault("failed", [])
    if not any(f["what"] == what and f["id"] == item_id for f in failed):
        failed.append({"what": what, "id": item_id, "reason": reason})


def _clear_fail(report: dict[str, Any], what: str, item_id: int) -> None:
    report["failed"] = [f for f in report.get("failed", []) if not (f["what"] == what and f["id"] == item_id)]


def secure_delete(session: Session) -> None:
    """SQLite: zero freed content on this connection (see the module docstring)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")


def truncate_wal(engine: Engine) -> str:
    """SQLite: copy the WAL into the database and truncate it, so no old page image survives; 'ok', 'busy' or 'n/a'."""
    if engine.dialect.name != "sqlite":
        return "n/a"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = cursor.fetchone()
        busy = row[0] if row else 0
        cursor.close()
    finally:
        raw.close()
    return "busy" if busy else "ok"


def subject_dsr_ids(session: Session, run: SubjectRun, email: str | None) -> list[int]:
    """The run's request and the subject's other requests routed only to this controller."""
    ids = {run.dsr_id}
    if email:
        for dsr in session.scalars(select(Dsr).where(Dsr.subject_email.matches(session, email))):
            if dsr.controller_ids == [run.controller_id]:
                ids.add(dsr.id)
    return sorted(ids)


def plan(session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any]) -> None:
    """Fix the set of tickets and messages (by the old email) before anything changes."""
    email = params.get("email")
    dsr = session.get(Dsr, run.dsr_id)
    tickets = subject_ticket_ids(session, email, run.controller_id, source_ticket_id=dsr.ticket_id if dsr else None)
    others = other_message_ids(session, email, run.controller_id, tickets)
    cursor.update(ticket_ids=tickets, other_ids=others, dsr_ids=subject_dsr_ids(session, run, email))
    report["planned"] = {"tickets": len(tickets), "other_messages": len(others), "dsrs": len(cursor["dsr_ids"])}


def _rewrite_message(session: Session, run: SubjectRun, message: Message, rw: Rewriter, new_email: str | None, report: dict[str, Any]) -> None:
    values = {name: getattr(message, name) for name in (*MESSAGE_TEXTS, "sender_name", "sender_email")}  # decrypts: may raise
    changed = False
    for name in MESSAGE_TEXTS:
        new = rw(values[name])
        if new != values[name]:
            setattr(message, name, new)
            changed = True
    if rw.is_subject_email(values["sender_email"]):
        if run.kind == "erase":
            message.sender_email, message.sender_name = None, None
        else:
            message.sender_email = new_email or values["sender_email"]
            message.sender_name = rw(values["sender_name"])
        changed = True
    elif rw(values["sender_name"]) != values["sender_name"]:
        message.sender_name = rw(values["sender_name"])
        changed = True
    if message.raw_blob_id is not None:
        blob_id, message.raw_blob_id = message.raw_blob_id, None
        session.flush()
        delete_blob(session, blob_id)
        _bump(report, "raw_destroyed")
        changed = True
    if run.kind == "erase":
        for attachment in list(message.attachments):
            blob_id = attachment.blob_id
            session.delete(attachment)
            session.flush()
            delete_blob(session, blob_id)
            _bump(report, "attachments_removed")
            changed = True
    else:
        if message.attachments:
            _bump(report, "attachments_not_rectifiable", len(message.attachments))
    if changed:
        _bump(report, "messages")


def messages(session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any]) -> bool:
    """One batch of messages; True when the phase is complete."""
    rw, new_email = _rewriter(params), _new_email(run, params)
    scope = message_scope(cursor["ticket_ids"], cursor["other_ids"])
    rows = list(session.scalars(select(Message).where(scope, Message.id > cursor.get("after", 0)).order_by(Message.id).limit(BATCH)))
    for message in rows:
        try:
            _rewrite_message(session, run, message, rw, new_email, report)
        except (CryptoError, LookupError, UnicodeDecodeError):
            _fail(report, "message", message.id, "unreadable")
        else:
            _clear_fail(report, "message", message.id)
    session.flush()
    if rows:
        cursor["after"] = rows[-1].id
    return len(rows) < BATCH


def tickets(session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any]) -> bool:
    """The requester fields and subjects of the subject's tickets (few rows: one pass)."""
    rw, new_email = _rewriter(params), _new_email(run, params)
    for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(cursor["ticket_ids"] or [0])).order_by(Ticket.id)):
        try:
            name, email, subject = ticket.requester_name, ticket.requester_email, ticket.subject
        except CryptoError:
            _fail(report, "ticket", ticket.id, "unreadable")
            continue
        changed = False
        if rw.is_subject_email(email):
            ticket.requester_email = new_email if run.kind == "rectify" else None
            changed = True
        new_name = None if run.kind == "erase" and rw.is_subject_email(email) else rw(name)
        if new_name != name:
            ticket.requester_name = new_name
            changed = True
        if rw(subject) != subject:
            ticket.subject = rw(subject)
            changed = True
        _bump(report, "tickets", int(changed))
    session.flush()
    return True


def references(session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any], *, now: dt.datetime) -> bool:
    """Outbox rows of those tickets and requests, and the instruction texts of the requests."""
    rw, new_email = _rewriter(params), _new_email(run, params)
    related = [(OutboxEmail.related_type == "dsr") & OutboxEmail.related_id.in_(cursor["dsr_ids"] or [0])]
    if cursor["ticket_ids"]:
        related.append((OutboxEmail.related_type == "ticket") & OutboxEmail.related_id.in_(cursor["ticket_ids"]))
    for row in session.scalars(select(OutboxEmail).where(or_(*related)).order_by(OutboxEmail.id)):
        try:
            to, body, html = row.to_addr, row.body_text, row.body_html
        except CryptoError:
            _fail(report, "outbox", row.id, "unreadable")
            continue
        changed = False
        if rw.is_subject_email(to):
            if row.state == "sending":
                _fail(report, "outbox", row.id, "being_sent")  # a worker holds it: the next run rewrites it
                continue
            if row.state == "queued" and run.kind == "erase":
                row.state, row.last_error, row.updated_at = "failed", "cancelled: recipient erased", now
                _bump(report, "outbox_cancelled")
            row.to_addr = new_email if run.kind == "rectify" and new_email else ERASED_ADDRESS
            changed = True
        if rw(body) != body:
            row.body_text = rw(body) or ""
            changed = True
        if rw(html) != html:
            row.body_html = rw(html)
            changed = True
        if changed:
            _clear_fail(report, "outbox", row.id)
        _bump(report, "outbox", int(changed))
    for item in session.scalars(select(Instruction).where(Instruction.dsr_id.in_(cursor["dsr_ids"] or [0])).order_by(Instruction.id)):
        try:
            texts = {n: getattr(item, n) for n in ("reply_text", "response_text", "flag_reason")}
        except CryptoError:
            _fail(report, "instruction", item.id, "unreadable")
            continue
        rewritten = [n for n, v in texts.items() if rw(v) != v]
        for name in rewritten:
            setattr(item, name, rw(texts[name]))
        _bump(report, "instructions", int(bool(rewritten)))
    session.flush()
    return True


def held_quarantine(
    session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any], *, by: Principal, now: dt.datetime
) -> bool:
    """Erasure: held quarantine items (no controller yet) that mention the subject are destroyed; one batch."""
    if run.kind != "erase":
        return True
    rw = _rewriter(params)
    rows = list(
        session.scalars(
            select(quarantine.QuarantinedMessage)
            .where(quarantine.QuarantinedMessage.state == "held", quarantine.QuarantinedMessage.id > cursor.get("after", 0))
            .order_by(quarantine.QuarantinedMessage.id)
            .limit(QUARANTINE_BATCH)
        )
    )
    for item in rows:
        if item.raw_blob_id is None:
            continue
        if item.size > QUARANTINE_MAX_BYTES:
            _fail(report, "quarantine", item.id, "too_large_to_scan")
            continue
        try:
            raw = read_blob(session, item.raw_blob_id)
        except (CryptoError, LookupError):
            _fail(report, "quarantine", item.id, "unreadable")
            continue
        if rw.contains(raw):
            quarantine.delete(session, item.id, by=by, now=now)
            _bump(report, "quarantine_deleted")
    if rows:
        cursor["after"] = rows[-1].id
    return len(rows) < QUARANTINE_BATCH


def finalize(session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any]) -> None:
    """The subject fields of the requests (last: they name the subject), restrictions keyed on the old address."""
    rw = _rewriter(params)
    for dsr in session.scalars(select(Dsr).where(Dsr.id.in_(cursor["dsr_ids"] or [0])).order_by(Dsr.id)):
        controllers = set(session.scalars(select(DsrForward.controller_id).where(DsrForward.dsr_id == dsr.id)))
        if controllers - {run.controller_id}:
            # The request also concerns other controllers, whose own instructions decide about its subject fields.
            _bump(report, "dsrs_kept_for_other_controllers")
            continue
        try:
            request_text, breach_reason = dsr.request_text, dsr.breach_reason
        except CryptoError:
            _fail(report, "dsr", dsr.id, "unreadable")
            continue
        if run.kind == "erase":
            dsr.subject_email, dsr.subject_name, dsr.subject_identifiers = None, None, None
        else:
            if params.get("new_email"):
                dsr.subject_email = params["new_email"]
            if params.get("new_name"):
                dsr.subject_name = params["new_name"]
            if dsr.subject_identifiers:
                dsr.subject_identifiers = rw(dsr.subject_identifiers)
        if rw(request_text) != request_text:
            dsr.request_text = rw(request_text)
        if rw(breach_reason) != breach_reason:
            dsr.breach_reason = rw(breach_reason)
        _bump(report, "dsrs")
    if run.kind == "rectify" and params.get("email") and params.get("new_email"):
        old = Ticket.requester_email.index_value(session, params["email"], controller_id=run.controller_id)
        new = Ticket.requester_email.index_value(session, params["new_email"], controller_id=run.controller_id)
        for item in session.scalars(select(Restriction).where(Restriction.controller_id == run.controller_id, Restriction.email_bidx == old)):
            item.email_bidx = new
            _bump(report, "restrictions")
    session.flush()


def describe(params_text: str | None) -> dict[str, Any]:
    """The run's parameters (decrypted JSON)."""
    return dict(json.loads(params_text)) if params_text else {}
