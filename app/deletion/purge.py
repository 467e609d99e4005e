"""Whole tickets: deleted (rows, files, raw originals, outbox rows about them) or anonymised (identity fields cleared).

The scope is a set of tickets or every ticket of a controller, walked in id
order a batch of tickets at a time; the hold check sees each ticket before
anything of it changes. A ticket with an outbox row a worker is sending
right now is left whole and reported (the next run takes it).

- delete: attachments, messages, the outbox rows related to the ticket (and
  the file outbox's `.eml` copies of those sent), the ticket, then the blobs
  (attachment contents and raw originals). Rows of
  other domains that point at a ticket follow their foreign keys (a DSR
  keeps its record with the ticket link cleared; restriction links and
  suggestions go with it).
- anonymise: the requester's name and address, the sender fields of inbound
  messages and the raw originals (their headers name the sender) are
  cleared, the outbox rows' recipient is replaced, queued mail to it
  cancelled and the file copies of sent mail to it deleted; the texts stay (what a retention policy for identity keeps).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from app.blobs.models import Blob
from app.blobs.store import delete_blobs
from app.crypto.cipher import CryptoError
from app.db import ids_in
from app.deletion.files import OUTBOX_FILES
from app.deletion.records import ERASED_ADDRESS
from app.deletion.report import Item
from app.deletion.stores import Batch, RunContext, Store
from app.mail.models import OutboxEmail
from app.tickets.identifiers import MessageIdentifier
from app.tickets.models import Attachment, Message, Ticket
from app.tickets.referenced import MessageReference

# Tickets a committed batch: every statement of a batch handles the whole set (about 66,000 rows of 3-message
# tickets with raw originals and blind-index entries), so the per-batch costs (hold check, cursor, report, audit
# event, commit) stay a few per cent. A batch also stops before its files and raw originals pass BATCH_BYTES, so
# tickets with large attachments never make one huge transaction (SQLite's WAL holds all of it, zeroed pages too).
BATCH = 5000
BATCH_BYTES = 256 * 1024 * 1024
# Set-based statements: the session is not synchronised by fetching every deleted id back (`_forget` instead).
_BULK = {"synchronize_session": False}


def select_tickets(ctx: RunContext, after: int) -> Batch:
    """The next tickets of the scope (the planned ids, or the controller's tickets), in id order."""
    session = ctx.session
    if ctx.run.scope_kind == "controller":
        stmt = select(Ticket.id, Ticket.controller_id).where(Ticket.controller_id == ctx.run.controller_id, Ticket.id > after)
        rows = session.execute(stmt.order_by(Ticket.id).limit(BATCH)).all()
        kept = _within_bytes(session, rows)
        return Batch(_items(kept), after=kept[-1].id if kept else after, done=len(rows) < BATCH and len(kept) == len(rows))
    planned = sorted(ctx.ids("ticket_ids"))
    rest = planned[bisect_right(planned, after) :]
    chunk = rest[:BATCH]
    rows = session.execute(select(Ticket.id, Ticket.controller_id).where(ids_in(session, Ticket.id, chunk)).order_by(Ticket.id)).all()
    kept = _within_bytes(session, rows)
    if len(kept) < len(rows):
        return Batch(_items(kept), after=kept[-1].id, done=False)
    return Batch(_items(rows), after=chunk[-1] if chunk else after, done=len(rest) <= BATCH)


def _within_bytes(session: Session, rows: Sequence[Any]) -> Sequence[Any]:
    """The first of these tickets (in id order, at least one) whose files and raw originals stay within BATCH_BYTES."""
    ids = [r.id for r in rows]
    if not ids:
        return rows
    sizes: dict[int, int] = {}
    files = select(Message.ticket_id, func.sum(Attachment.size)).join(Attachment, Attachment.message_id == Message.id)
    raws = select(Message.ticket_id, func.sum(Blob.size)).join(Blob, Blob.id == Message.raw_blob_id)
    for stmt in (files, raws):
        for ticket_id, size in session.execute(stmt.where(ids_in(session, Message.ticket_id, ids)).group_by(Message.ticket_id)):
            sizes[ticket_id] = sizes.get(ticket_id, 0) + int(size or 0)
    total = 0
    for n, row in enumerate(rows):
        total += sizes.get(row.id, 0)
        if n and total > BATCH_BYTES:
            return rows[:n]
    return rows


def _items(rows: Sequence[Any]) -> list[Item]:
    return [Item("ticket", r.id, controller_id=r.controller_id, ticket_id=r.id) for r in rows]


def _free(ctx: RunContext, items: Sequence[Item]) -> tuple[list[int], list[int]]:
    """The tickets nothing is sending mail about right now, and the outbox rows related to them."""
    ids = [i.id for i in items]
    outbox = ctx.session.execute(
        select(OutboxEmail.id, OutboxEmail.related_id, OutboxEmail.state).where(
            OutboxEmail.related_type == "ticket", ids_in(ctx.session, OutboxEmail.related_id, ids)
        )
    ).all()
    busy = {r.related_id for r in outbox if r.state == "sending"}
    for ticket_id in sorted(busy):
        ctx.report.fail("ticket", ticket_id, "being_sent")
    return [t for t in ids if t not in busy], [r.id for r in outbox if r.related_id not in busy]


def _remove_files(ctx: RunContext, outbox_ids: list[int]) -> None:
    """The copies outside the database (the file outbox's `.eml`) of the rows about to go: an email the relay
    took may have one; a queued one has none."""
    if not OUTBOX_FILES.active():
        return
    files = 0
    for row in ctx.session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_(outbox_ids), OutboxEmail.state.not_in(("queued", "sending")))):
        try:
            message_id = row.message_id
        except CryptoError:
            ctx.report.fail("outbox", row.id, "unreadable")
            continue
        files += OUTBOX_FILES.remove(message_id) if message_id else 0
    if files:
        ctx.report.count("outbox_files", "files_deleted", files)


def _delete(ctx: RunContext, items: Sequence[Item]) -> None:
    session = ctx.session
    ids, outbox_ids = _free(ctx, items)
    if not ids:
        return
    messages = session.execute(select(Message.id, Message.raw_blob_id).where(ids_in(session, Message.ticket_id, ids))).all()
    message_ids = [m.id for m in messages]
    files = session.execute(select(Attachment.id, Attachment.blob_id).where(ids_in(session, Attachment.message_id, message_ids))).all()
    doomed = [f.blob_id for f in files] + [m.raw_blob_id for m in messages if m.raw_blob_id is not None]
    # The blind-index and reverse-index entries by one statement each (the foreign key's cascade would delete them one message at a time).
    session.execute(delete(MessageIdentifier).where(ids_in(session, MessageIdentifier.message_id, message_ids)), execution_options=_BULK)
    session.execute(delete(MessageReference).where(ids_in(session, MessageReference.message_id, message_ids)), execution_options=_BULK)
    if files:
        session.execute(delete(Attachment).where(ids_in(session, Attachment.id, [f.id for f in files])), execution_options=_BULK)
    session.execute(delete(Message).where(ids_in(session, Message.id, message_ids)), execution_options=_BULK)
    if outbox_ids:
        _remove_files(ctx, outbox_ids)
        session.execute(delete(OutboxEmail).where(ids_in(session, OutboxEmail.id, outbox_ids)), execution_options=_BULK)
    session.execute(delete(Ticket).where(ids_in(session, Ticket.id, ids)), execution_options=_BULK)
    delete_blobs(session, doomed)
    _forget(session, {Ticket: set(ids), Message: set(message_ids), Attachment: {f.id for f in files}})
    report = ctx.report
    report.count("tickets", "tickets_deleted", len(ids))
    report.count("ticket_messages", "messages_deleted", len(messages))
    report.count("ticket_attachments", "attachments_deleted", len(files))
    report.count("blobs", "blobs_deleted", len(doomed))
    report.count("outbox_emails", "outbox_deleted", len(outbox_ids))


def _forget(session: Session, deleted: Mapping[type, set[int]]) -> None:
    """Take rows the bulk statements deleted out of the session, if it holds any (what synchronize_session does, without
    fetching every deleted id back): a caller that loaded a ticket before the batch finds it gone, not stale."""
    for obj in list(session.identity_map.values()):
        identity = sa_inspect(obj).identity
        if identity is not None and identity[0] in deleted.get(type(obj), ()):
            session.expunge(obj)


def _anonymise(ctx: RunContext, items: Sequence[Item]) -> None:
    session, report = ctx.session, ctx.report
    ids, outbox_ids = _free(ctx, items)
    if not ids:
        return
    raws = list(session.scalars(select(Message.raw_blob_id).where(ids_in(session, Message.ticket_id, ids), Message.raw_blob_id.is_not(None))))
    session.execute(
        update(Ticket).where(ids_in(session, Ticket.id, ids)).values(requester_name_ct=None, requester_email_ct=None, requester_email_bidx=None),
        execution_options={"synchronize_session": False},
    )
    senders = session.execute(
        update(Message)
        .where(ids_in(session, Message.ticket_id, ids), Message.direction == "inbound")
        .values(sender_name_ct=None, sender_email_ct=None, sender_email_bidx=None),
        execution_options={"synchronize_session": False},
    )
    session.execute(update(Message).where(ids_in(session, Message.ticket_id, ids)).values(raw_blob_id=None), execution_options=_BULK)
    delete_blobs(session, [b for b in raws if b is not None])
    _remove_files(ctx, outbox_ids)  # a sent email's file copy names its recipient in its headers
    anonymised = 0
    for row in session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_(outbox_ids or [0])).order_by(OutboxEmail.id)):
        try:
            row.to_addr = ERASED_ADDRESS
        except CryptoError:
            report.fail("outbox", row.id, "unreadable")
            continue
        if row.state == "queued":
            row.state, row.last_error, row.updated_at = "failed", "cancelled: recipient anonymised", ctx.now
            report.count("outbox_emails", "outbox_cancelled")
        anonymised += 1
    session.flush()
    session.expire_all()  # the bulk updates bypassed the identity map
    report.count("tickets", "tickets_anonymised", len(ids))
    report.count("ticket_messages", "senders_anonymised", int(getattr(senders, "rowcount", 0) or 0))
    report.count("blobs", "raw_destroyed", len(raws))
    report.count("outbox_emails", "outbox_anonymised", anonymised)


DELETE_STORE = Store("tickets", select_tickets, _delete)
ANONYMISE_STORE = Store("tickets", select_tickets, _anonymise)
