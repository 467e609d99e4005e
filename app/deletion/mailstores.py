"""Retention's mail categories: quarantined mail never released, and the bodies of delivered outbox emails.

- `quarantined_mail` (counts from receipt): a message ingest refused and nobody released (held, or deleted by an
  officer and kept as a tombstone). Delete: the row goes (with its index entries: the SHA-256 of the original)
  and the encrypted original with it. Quarantined mail belongs to no controller (triage): the desk's. For the
  hold check only, a message is also its sender's controller's (the sender's domain registered to a controller,
  the most specific one) and that sender is its subject, so a controller's or a subject's hold keeps it.
- `outbox_payloads` (counts from delivery, `sent_at`): the bodies of an email the relay accepted (`sent`), its
  In-Reply-To / References (they name the mailboxes of the messages it answered), its recipient's address and,
  in the file-outbox mode, its `.eml` copy (`app.deletion.files`). The row stays as the record of sending: the
  recipient as its keyed hash (the blind index; the address itself becomes the erased placeholder), kind,
  subject, state, times, Message-ID; `payload_deleted_at` says when its payload went.
"""

from __future__ import annotations

import email.errors
import email.parser
import email.policy
import email.utils
from collections.abc import Sequence

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from app.blobs.store import delete_blobs, iter_blob
from app.controllers.models import ControllerDomain
from app.crypto.cipher import CryptoError
from app.deletion.categories import Query, RecordCategory
from app.deletion.files import OUTBOX_FILES
from app.deletion.records import ERASED_ADDRESS
from app.deletion.report import Item
from app.deletion.scope import digests
from app.deletion.stores import RunContext
from app.mail.models import OutboxEmail
from app.mail.quarantine import QuarantinedMessage

# Never released: still held, or deleted by an officer (the tombstone row keeps the reason, size and hash).
NOT_RELEASED = ("held", "deleted")


def _desk_only(session: Session) -> list[int | None]:
    return [None]


# ---- quarantined mail -------------------------------------------------------------------------------------


def _sender(session: Session, blob_id: int | None) -> str | None:
    """The From (or Sender) address of a quarantined original, read from its first chunk; None when unreadable."""
    if blob_id is None:
        return None
    try:
        head = next(iter_blob(session, blob_id), b"")
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
        values = [str(v) for v in (headers.get_all("From") or []) + (headers.get_all("Sender") or [])]
    except (CryptoError, LookupError, ValueError, TypeError, email.errors.MessageError):
        return None
    found = [a for _, a in email.utils.getaddresses(values) if "@" in a]
    return found[0].strip().lower() if found else None


def _owner_by_domain(session: Session, address: str) -> int | None:
    """The controller whose registered domain (the most specific of the address's parents) the address is at."""
    labels = address.rpartition("@")[2].strip(".").lower().split(".")
    parents = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    if not parents:
        return None
    rows = session.execute(select(ControllerDomain.domain, ControllerDomain.controller_id).where(ControllerDomain.domain.in_(parents))).all()
    return max(rows, key=lambda r: len(r.domain)).controller_id if rows else None


def _quarantine_item(session: Session, row: QuarantinedMessage) -> Item:
    sender = _sender(session, row.raw_blob_id)
    owner = _owner_by_domain(session, sender) if sender else None
    if owner is None or sender is None:
        return Item("quarantine", row.id)
    return Item("quarantine", row.id, owners=(owner,), subjects=tuple(digests(session, [sender], owner)))


def find_quarantine(session: Session, query: Query) -> list[Item]:
    """Quarantined messages never released, received at or before the cutoff (the desk's: no controller)."""
    if query.controller_id is not None:
        return []
    q = QuarantinedMessage
    stmt = select(q).where(q.state.in_(NOT_RELEASED), q.id > query.after).order_by(q.id).limit(query.limit)
    if query.cutoff is not None:
        stmt = stmt.where(q.received_at <= query.cutoff)
    if query.ids is not None:
        stmt = stmt.where(q.id.in_(list(query.ids) or [0]))
    return [_quarantine_item(session, row) if query.holds else Item("quarantine", row.id) for row in session.scalars(stmt)]


def delete_quarantine(ctx: RunContext, items: Sequence[Item]) -> None:
    """The rows (and with them their index entries) and their encrypted originals."""
    ids = [i.id for i in items]
    blobs = [b for b in ctx.session.scalars(select(QuarantinedMessage.raw_blob_id).where(QuarantinedMessage.id.in_(ids))) if b is not None]
    ctx.session.execute(delete(QuarantinedMessage).where(QuarantinedMessage.id.in_(ids)), execution_options={"synchronize_session": False})
    delete_blobs(ctx.session, blobs)
    ctx.report.count("mail_quarantine", "quarantine_deleted", len(ids))
    ctx.report.count("blobs", "blobs_deleted", len(blobs))


QUARANTINED_MAIL = RecordCategory("quarantined_mail", "quarantine", "quarantined message(s)", _desk_only, find_quarantine, {"delete": delete_quarantine})


# ---- delivered outbox payloads ----------------------------------------------------------------------------


def _outbox_owners(session: Session) -> list[int | None]:
    found = set(session.scalars(select(OutboxEmail.controller_id).where(OutboxEmail.state == "sent", OutboxEmail.payload_deleted_at.is_(None)).distinct()))
    return sorted((c for c in found if c is not None), key=int) + [None]


def find_payloads(session: Session, query: Query) -> list[Item]:
    """Delivered emails whose payload is still kept, delivered at or before the cutoff, of one controller (None: the desk)."""
    o = OutboxEmail
    stmt = (
        select(o.id, o.controller_id, o.related_type, o.related_id, o.key_owner, o.to_addr_bidx)
        .where(o.state == "sent", o.payload_deleted_at.is_(None), o.id > query.after)
        .order_by(o.id)
        .limit(query.limit)
    )
    if query.ids is not None:
        stmt = stmt.where(o.id.in_(list(query.ids) or [0]))
    else:
        stmt = stmt.where(o.controller_id.is_(None) if query.controller_id is None else o.controller_id == query.controller_id)
    if query.cutoff is not None:
        stmt = stmt.where(and_(o.sent_at.is_not(None), o.sent_at <= query.cutoff))
    items = []
    for r in session.execute(stmt):
        # The recipient's blind index is a subject hold's key only under the controller's own key (not triage's).
        subject = (r.to_addr_bidx,) if r.to_addr_bidx is not None and r.controller_id is not None and r.key_owner == r.controller_id else ()
        ticket = r.related_id if r.related_type == "ticket" else None
        items.append(Item("outbox", r.id, controller_id=r.controller_id, ticket_id=ticket, subjects=subject))
    return items


def delete_payloads(ctx: RunContext, items: Sequence[Item]) -> None:
    """Bodies, In-Reply-To / References, the recipient's address and the `.eml` copy of each delivered email; the row
    stays as the record, the recipient kept as its blind index."""
    files = 0
    recipients: dict[int, bytes | None] = {}
    rows = list(ctx.session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_([i.id for i in items] or [0])).order_by(OutboxEmail.id)))
    for row in rows:
        try:
            message_id = row.message_id
        except CryptoError:
            ctx.report.fail("outbox", row.id, "unreadable")
            continue
        recipients[row.id] = row.to_addr_bidx
        row.to_addr = ERASED_ADDRESS
        row.body_text = f"[deleted {ctx.now:%Y-%m-%d} after delivery: retention, deletion run {ctx.run.id}]"
        row.body_html = None
        row.in_reply_to = None
        row.references = None
        row.payload_deleted_at = ctx.now
        files += OUTBOX_FILES.remove(message_id) if message_id else 0
    ctx.session.flush()  # encrypts the new values (the placeholder's blind index with them) ...
    for row in rows:
        if row.id in recipients:
            row.to_addr_bidx = recipients[row.id]  # ... and the record keeps the recipient as its keyed hash only
    ctx.session.flush()
    purged = len(recipients)
    ctx.report.count("outbox_emails", "payloads_deleted", purged)
    ctx.report.count("outbox_files", "files_deleted", files)


OUTBOX_PAYLOADS = RecordCategory("outbox_payloads", "outbox", "delivered email payload(s)", _outbox_owners, find_payloads, {"delete": delete_payloads})
