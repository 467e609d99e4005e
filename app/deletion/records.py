"""The other stores of a subject's erasure or rectification: their tickets, the outbox rows about them, held quarantine.

Reference-aware (the helpdesk erasure bugs of DESIGN.md): the requester
fields and subjects of the subject's tickets; the outbox rows of those
tickets and of whatever else the plan relates (queued mail to the subject is
cancelled on erasure, a row a worker is sending is reported and left for
the next run); held quarantine items (no controller yet) that mention the
subject are destroyed on erasure.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.sql.elements import ColumnElement

from app.blobs.store import read_blob
from app.crypto.cipher import CryptoError
from app.crypto.message_ids import digests as message_id_digests
from app.deletion.files import OUTBOX_FILES
from app.deletion.msgids import SUFFIX, hashed_message_id
from app.deletion.report import Item
from app.deletion.stores import Batch, RunContext, Store, one_pass
from app.deletion.subject import subject_digests
from app.mail import quarantine
from app.mail.models import OutboxEmail
from app.tickets.models import Message, Ticket

ERASED_ADDRESS = "erased@erased.invalid"
# Outbox states after which the relay has (or will never have) the email: its copy may go.
DELIVERED = ("sent", "bounced", "failed", "refused")
QUARANTINE_BATCH = 50
QUARANTINE_MAX_BYTES = 10 * 1024 * 1024


def _select_tickets(ctx: RunContext, after: int) -> Batch:
    rows = ctx.session.execute(select(Ticket.id, Ticket.controller_id).where(Ticket.id.in_(ctx.ids("ticket_ids") or [0])).order_by(Ticket.id)).all()
    return one_pass([Item("ticket", r.id, controller_id=r.controller_id, ticket_id=r.id) for r in rows])


def _apply_tickets(ctx: RunContext, items: Sequence[Item]) -> None:
    """The requester fields and subjects of the subject's tickets (few rows: one pass)."""
    rw = ctx.rewriter
    for ticket in ctx.session.scalars(select(Ticket).where(Ticket.id.in_([i.id for i in items] or [0])).order_by(Ticket.id)):
        try:
            name, email, subject = ticket.requester_name, ticket.requester_email, ticket.subject
        except CryptoError:
            ctx.report.fail("ticket", ticket.id, "unreadable")
            continue
        changed = False
        if rw.is_subject_email(email):
            ticket.requester_email = None if ctx.erasing else (ctx.new_email or email)
            changed = True
        new_name = None if ctx.erasing and rw.is_subject_email(email) else rw(name)
        if new_name != name:
            ticket.requester_name = new_name
            changed = True
        if rw(subject) != subject:
            ticket.subject = rw(subject)
            changed = True
        if ctx.erasing and ticket.status != "closed":
            # The subject's tickets are closed: nothing of theirs is left to work on.
            ticket.status, ticket.closed_at, ticket.updated_at = "closed", ctx.now, ctx.now
            ctx.report.count("tickets", "tickets_closed")
        ctx.report.count("tickets", "tickets", int(changed))
    ctx.session.flush()


def _related(ctx: RunContext) -> ColumnElement[bool]:
    """Outbox rows about the subject: of their tickets and records, of tickets that mention them, or sent to them."""
    plan_related = ctx.plan.get("related") or {}
    related: dict[str, list[int]] = {**plan_related, "ticket": sorted(set(ctx.ids("ticket_ids")) | set(plan_related.get("ticket") or []))}
    parts = [(OutboxEmail.related_type == kind) & OutboxEmail.related_id.in_(ids) for kind, ids in sorted(related.items()) if ids]
    if ctx.run.scope_kind == "subject" and ctx.run.controller_id is not None:
        found = subject_digests(ctx)
        if found:
            parts.append((OutboxEmail.to_addr_bidx.in_(found)) & (OutboxEmail.key_owner == ctx.run.controller_id))
    return or_(*parts) if parts else OutboxEmail.id.is_(None)


def _select_outbox(ctx: RunContext, after: int) -> Batch:
    rows = ctx.session.execute(
        select(OutboxEmail.id, OutboxEmail.controller_id, OutboxEmail.related_type, OutboxEmail.related_id).where(_related(ctx)).order_by(OutboxEmail.id)
    ).all()
    return one_pass([Item("outbox", r.id, controller_id=r.controller_id, ticket_id=r.related_id if r.related_type == "ticket" else None) for r in rows])


def _apply_outbox(ctx: RunContext, items: Sequence[Item]) -> None:
    """Outbox rows about the subject: recipient and bodies rewritten; queued mail to an erased subject cancelled."""
    rw = ctx.rewriter
    for row in ctx.session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_([i.id for i in items] or [0])).order_by(OutboxEmail.id)):
        try:
            to, body, html = row.to_addr, row.body_text, row.body_html
        except CryptoError:
            ctx.report.fail("outbox", row.id, "unreadable")
            continue
        changed = False
        if rw.is_subject_email(to):
            if row.state == "sending":
                ctx.report.fail("outbox", row.id, "being_sent")  # a worker holds it: the next run rewrites it
                continue
            if row.state == "queued" and ctx.erasing:
                row.state, row.last_error, row.updated_at = "failed", "cancelled: recipient erased", ctx.now
                ctx.report.count("outbox_emails", "outbox_cancelled")
            row.to_addr = ERASED_ADDRESS if ctx.erasing else (ctx.new_email or to)
            changed = True
        elif ctx.erasing and row.payload_deleted_at is not None and row.to_addr_bidx is not None and _hash_of_subject(ctx, row):
            row.to_addr_bidx = None  # retention kept only the recipient's keyed hash (app.deletion.mailstores): the subject's, it goes
            changed = True
        if rw(body) != body:
            row.body_text = rw(body) or ""
            changed = True
        if rw(html) != html:
            row.body_html = rw(html)
            changed = True
        changed = _scrub_references(ctx, row) or changed
        if ctx.erasing and row.state in DELIVERED and (changed or _about_subject(ctx, row)):
            _purge(ctx, row)
            changed = True
        if changed:
            ctx.report.clear_fail("outbox", row.id)
        ctx.report.count("outbox_emails", "outbox", int(changed))
    ctx.session.flush()


def _hash_of_subject(ctx: RunContext, row: OutboxEmail) -> bool:
    """The row's recipient hash is the subject's (a delivered email whose payload retention deleted keeps only that)."""
    if ctx.run.scope_kind != "subject" or ctx.run.controller_id is None or row.key_owner != ctx.run.controller_id:
        return False
    cache: dict[str, set[bytes]] = ctx.__dict__.setdefault("_subject_hashes", {})
    if "digests" not in cache:
        cache["digests"] = set(subject_digests(ctx))
    return row.to_addr_bidx in cache["digests"]


def _about_subject(ctx: RunContext, row: OutboxEmail) -> bool:
    """A row of the subject's own tickets or records (not a reply on a ticket that only mentions them)."""
    if row.related_type == "ticket":
        return row.related_id in set(ctx.ids("ticket_ids"))
    return row.related_type in (ctx.plan.get("related") or {})


def _purge(ctx: RunContext, row: OutboxEmail) -> None:
    """A delivered email about the subject: its bodies replaced by a stub, its file copies deleted (the row stays as the record)."""
    row.body_text = f"[erased {ctx.now:%Y-%m-%d %H:%M} UTC after delivery, deletion run {ctx.run.id}]"
    row.body_html = None
    ctx.report.count("outbox_emails", "outbox_purged")
    ctx.report.count("outbox_files", "files_deleted", OUTBOX_FILES.remove(row.message_id or ""))


def _scrub_references(ctx: RunContext, row: OutboxEmail) -> bool:
    """In-Reply-To / References naming a message the run took the Message-ID of: replaced by its keyed hash."""
    ids = [i for i in [row.in_reply_to or "", *(row.references or "").split()] if i]
    if not ids:
        return False
    hashes = {i: message_id_digests(ctx.session, [i]) for i in ids}
    wanted = [d for h in hashes.values() for d in h]  # each id's stored-form hash and, for older rows, its exact one
    found = ctx.session.scalars(select(Message).where(Message.message_id_bidx.in_(wanted or [b""])))
    # A message still showing its Message-ID keeps it; one whose shown id is the keyed hash was taken by an erasure.
    taken = {m.message_id_bidx: (m.message_id or "").endswith(SUFFIX) for m in found}
    swap = {}
    for i in ids:
        digest = next((d for d in hashes[i] if d in taken), None)
        if taken.get(digest, True) and (digest in taken or ctx.rewriter.changes(i)):
            swap[i] = f"<{hashed_message_id(ctx.session, i)}>"
    if not swap:
        return False
    if row.in_reply_to in swap:
        row.in_reply_to = swap[row.in_reply_to]
    if row.references:
        row.references = " ".join(swap.get(r, r) for r in row.references.split())
    ctx.report.count("outbox_emails", "message_ids_hashed", len(swap))
    return True


def _select_quarantine(ctx: RunContext, after: int) -> Batch:
    """The next held quarantine items, read: only those that mention the subject are items to act on."""
    rows = list(
        ctx.session.scalars(
            select(quarantine.QuarantinedMessage)
            .where(quarantine.QuarantinedMessage.state == "held", quarantine.QuarantinedMessage.id > after)
            .order_by(quarantine.QuarantinedMessage.id)
            .limit(QUARANTINE_BATCH)
        )
    )
    items = []
    for item in rows:
        if item.raw_blob_id is None:
            continue
        if item.size > QUARANTINE_MAX_BYTES:
            ctx.report.fail("quarantine", item.id, "too_large_to_scan")
            continue
        try:
            raw = read_blob(ctx.session, item.raw_blob_id)
        except (CryptoError, LookupError):
            ctx.report.fail("quarantine", item.id, "unreadable")
            continue
        if ctx.rewriter.contains(raw):
            items.append(Item("quarantine", item.id))
    return Batch(items, after=rows[-1].id if rows else after, done=len(rows) < QUARANTINE_BATCH)


def _apply_quarantine(ctx: RunContext, items: Sequence[Item]) -> None:
    for item in items:
        quarantine.delete(ctx.session, item.id, by=ctx.by, now=ctx.now)
        ctx.report.count("mail_quarantine", "quarantine_deleted")


TICKETS_STORE = Store("tickets", _select_tickets, _apply_tickets)
OUTBOX_STORE = Store("outbox", _select_outbox, _apply_outbox)
QUARANTINE_STORE = Store("quarantine", _select_quarantine, _apply_quarantine)
