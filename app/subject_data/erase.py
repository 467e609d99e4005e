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

from sqlalchemy import Engine, delete, or_, select, update
from sqlalchemy.orm import Session

from app.blobs.models import Blob, BlobChunk
from app.blobs.store import read_blob
from app.crypto.cipher import CryptoError, blind_index, decrypt_field, encrypt_field, key_id_of
from app.crypto.keys import LoadedKey, active_key, cache_for, load_key, owner_of
from app.dsr.models import Dsr, DsrForward, Instruction
from app.mail import quarantine
from app.mail.models import OutboxEmail
from app.principal import Principal
from app.subject_data.find import message_scope, other_message_ids, subject_ticket_ids
from app.subject_data.models import Restriction, SubjectRun
from app.subject_data.rewrite import Rewriter
from app.tickets.models import Attachment, Message, Ticket

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
        # Best effort: while another connection reads, TRUNCATE waits for it up to the busy timeout and then
        # reports busy (the next checkpoint truncates). Wait a second, not the desk's 30 s write timeout.
        cursor.execute("PRAGMA busy_timeout")
        current = cursor.fetchone()
        previous = int(current[0]) if current else 30_000
        cursor.execute("PRAGMA busy_timeout = 1000")
        try:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            row = cursor.fetchone()
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {previous}")  # the connection goes back to the pool
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


class _Codec:
    """Field ciphers for one batch: keys loaded once, the active key of each owner taken once (FOR SHARE held to commit).

    A batch of 250 messages rewritten through the ORM costs one key lookup and
    one UPDATE per row; here it is a handful of statements. The values are
    exactly what `app.crypto.fields` writes (same cipher, associated data and
    blind index), so the ORM reads them back as usual.
    """

    def __init__(self, session: Session) -> None:
        self.conn = session.connection()
        self.cache = cache_for(session)
        self._active: dict[int, LoadedKey] = {}

    def read(self, column: str, row: Any) -> str | None:
        blob = getattr(row, column)
        if blob is None:
            return None
        key = load_key(self.conn, self.cache, key_id_of(blob, where=f"{MESSAGES}.{column}"))
        return decrypt_field(key.aead, blob, table=MESSAGES, column=column, row_uid=row.row_uid).decode()

    def key(self, owner: int) -> LoadedKey:
        if owner not in self._active:
            self._active[owner] = active_key(self.conn, self.cache, owner_of(owner))
        return self._active[owner]

    def write(self, column: str, row: Any, text: str) -> bytes:
        key = self.key(row.key_owner)
        return encrypt_field(key.aead, key.id, text.encode(), table=MESSAGES, column=column, row_uid=row.row_uid)


MESSAGES = "ticket_messages"
_FIELD_COLUMNS = {"subject": "subject_ct", "body_text": "body_text_ct", "reply_text": "reply_text_ct", "body_html": "body_html_ct"}


def _rewrite_message(
    codec: _Codec, run: SubjectRun, row: Any, rw: Rewriter, new_email: str | None, report: dict[str, Any], doomed: list[int]
) -> dict[str, Any]:
    """The new column values of one message (ciphertexts), and its blobs noted for deletion."""
    values = {
        name: codec.read(column, row) for name, column in (*_FIELD_COLUMNS.items(), ("sender_name", "sender_name_ct"), ("sender_email", "sender_email_ct"))
    }
    out: dict[str, Any] = {}

    def put(name: str, column: str, text: str | None) -> None:
        out[column] = None if text is None else codec.write(column, row, text)

    for name, column in _FIELD_COLUMNS.items():
        new = rw(values[name])
        if new != values[name]:
            put(name, column, new)
    if rw.is_subject_email(values["sender_email"]):
        if run.kind == "erase":
            out.update(sender_email_ct=None, sender_email_bidx=None, sender_name_ct=None)
        else:
            address = new_email or values["sender_email"] or ""
            put("sender_email", "sender_email_ct", address)
            out["sender_email_bidx"] = blind_index(codec.key(row.key_owner).index_key, "email", address)
            put("sender_name", "sender_name_ct", rw(values["sender_name"]))
    elif rw(values["sender_name"]) != values["sender_name"]:
        put("sender_name", "sender_name_ct", rw(values["sender_name"]))
    if row.raw_blob_id is not None:
        doomed.append(row.raw_blob_id)
        out["raw_blob_id"] = None
        _bump(report, "raw_destroyed")
    if out:
        _bump(report, "messages")
    return out


def delete_blobs(session: Session, blob_ids: list[int]) -> None:
    """Remove blobs and their chunks in two statements (after the rows pointing at them are gone)."""
    if blob_ids:
        session.execute(delete(BlobChunk).where(BlobChunk.blob_id.in_(blob_ids)))
        session.execute(delete(Blob).where(Blob.id.in_(blob_ids)))


def messages(session: Session, run: SubjectRun, params: dict[str, Any], cursor: dict[str, Any], report: dict[str, Any]) -> bool:
    """One batch of messages (a few statements, whatever the batch size); True when the phase is complete."""
    rw, new_email = _rewriter(params), _new_email(run, params)
    scope = message_scope(cursor["ticket_ids"], cursor["other_ids"])
    columns = [
        Message.id,
        Message.row_uid,
        Message.key_owner,
        Message.raw_blob_id,
        Message.sender_name_ct,
        Message.sender_email_ct,
        *(getattr(Message, c) for c in _FIELD_COLUMNS.values()),
    ]
    rows = session.execute(select(*columns).where(scope, Message.id > cursor.get("after", 0)).order_by(Message.id).limit(BATCH)).all()
    ids = [r.id for r in rows]
    files = session.execute(select(Attachment.id, Attachment.message_id, Attachment.blob_id).where(Attachment.message_id.in_(ids or [0]))).all()
    codec = _Codec(session)
    doomed: list[int] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        try:
            changes = _rewrite_message(codec, run, row, rw, new_email, report, doomed)
        except (CryptoError, LookupError, UnicodeDecodeError):
            _fail(report, "message", row.id, "unreadable")
            continue
        _clear_fail(report, "message", row.id)
        if changes:
            updates.append({"id": row.id, **changes})
    # Grouped by the set of columns changed, each group one executemany.
    for keys in sorted({tuple(sorted(u)) for u in updates}):
        group = [u for u in updates if tuple(sorted(u)) == keys]
        session.execute(update(Message), group)
    failed = {f["id"] for f in report.get("failed", []) if f["what"] == "message"}
    if run.kind == "erase":
        gone = [f for f in files if f.message_id not in failed]
        if gone:
            session.execute(delete(Attachment).where(Attachment.id.in_([f.id for f in gone])))
            doomed += [f.blob_id for f in gone]
            _bump(report, "attachments_removed", len(gone))
    elif files:
        _bump(report, "attachments_not_rectifiable", len(files))
    delete_blobs(session, doomed)
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
        erased = set(
            session.scalars(select(SubjectRun.controller_id).where(SubjectRun.dsr_id == dsr.id, SubjectRun.kind == run.kind, SubjectRun.state == "done"))
        )
        if controllers - {run.controller_id} - erased:
            # Other controllers of the request have not had the same done yet: their instructions decide about its subject fields.
            _bump(report, "dsrs_kept_for_other_controllers")
            continue
        try:
            request_text, missed_reason = dsr.request_text, dsr.missed_reason
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
        if rw(missed_reason) != missed_reason:
            dsr.missed_reason = rw(missed_reason)
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
