"""The messages store of a subject's erasure (redact) or rectification: texts rewritten, files and raw originals destroyed.

Every text of the subject's messages and of the messages of their tickets
has the subject's identifiers replaced; their own sender fields are cleared
(erasure) or corrected (rectification, blind index recomputed); raw
originals are destroyed (they hold the old values); attachments are removed
on erasure and counted as not rectifiable on rectification. A batch of 250
messages costs a handful of statements (`_Codec`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.blobs.store import delete_blobs
from app.crypto.cipher import CryptoError, blind_index, decrypt_field, encrypt_field, key_id_of
from app.crypto.keys import LoadedKey, active_key, cache_for, load_key, owner_of
from app.deletion.mentions import forget_identifiers, review_files
from app.deletion.msgids import SUFFIX, hashed_message_id
from app.deletion.report import Item
from app.deletion.scope import message_scope
from app.deletion.stores import Batch, RunContext, Store
from app.tickets.models import TRIAGE_KEY_OWNER, Attachment, Message

BATCH = 250
MESSAGES = "ticket_messages"
_FIELD_COLUMNS = {"subject": "subject_ct", "body_text": "body_text_ct", "reply_text": "reply_text_ct", "body_html": "body_html_ct"}


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


def _rewrite(ctx: RunContext, codec: _Codec, row: Any, doomed: list[int], files: int = 0) -> dict[str, Any]:
    """The new column values of one message (ciphertexts); its raw original noted for deletion."""
    rw = ctx.rewriter
    values = {
        name: codec.read(column, row) for name, column in (*_FIELD_COLUMNS.items(), ("sender_name", "sender_name_ct"), ("sender_email", "sender_email_ct"))
    }
    own = ctx.erasing and (row.id in ctx.plan_set("own_ids") or rw.is_subject_email(values["sender_email"]))
    out: dict[str, Any] = _erase_whole(ctx, codec, row, files) if own else {}

    def put(column: str, text: str | None) -> None:
        out[column] = None if text is None else codec.write(column, row, text)

    for name, column in _FIELD_COLUMNS.items():
        new = rw(values[name])
        if new != values[name] and not own:
            put(column, new)
    if own:
        pass
    elif rw.is_subject_email(values["sender_email"]):
        if ctx.erasing:
            out.update(sender_email_ct=None, sender_email_bidx=None, sender_name_ct=None)
        else:
            address = ctx.new_email or values["sender_email"] or ""
            put("sender_email_ct", address)
            out["sender_email_bidx"] = blind_index(codec.key(row.key_owner).index_key, "email", address)
            put("sender_name_ct", rw(values["sender_name"]))
    elif rw(values["sender_name"]) != values["sender_name"]:
        put("sender_name_ct", rw(values["sender_name"]))
    if row.raw_blob_id is not None:
        doomed.append(row.raw_blob_id)
        out["raw_blob_id"] = None
        ctx.report.count("blobs", "raw_destroyed")
    message_id = codec.read("message_id_ct", row)
    if message_id and not message_id.endswith(SUFFIX) and (own or rw.changes(message_id)):
        # What is shown becomes the keyed hash; the lookup hash (message_id_bidx) stays, so a reply quoting it still finds the stub.
        put("message_id_ct", hashed_message_id(ctx.session, message_id))
        ctx.report.count(MESSAGES, "message_ids_hashed")
    if any(rw.changes(str(n)) for n in row.notes or []) or (own and any("message_id" in n for n in row.notes or [])):
        out["notes"] = [{"code": n.get("code", "note")} for n in row.notes or []]
    if out:
        ctx.report.count(MESSAGES, "messages")
    return out


def _erase_whole(ctx: RunContext, codec: _Codec, row: Any, files: int) -> dict[str, Any]:
    """A message the subject wrote: every text goes, a stub says what, when and under which authority."""
    authority = f"{ctx.run.authority_kind.replace('_', ' ')} {ctx.run.authority_id}" if ctx.run.authority_id is not None else ctx.run.authority_kind
    stub = (
        f"[Message erased on {ctx.now:%Y-%m-%d %H:%M} UTC under {authority} (deletion run {ctx.run.id}): its text, HTML, original and {files} attachment(s).]"
    )
    ctx.report.count(MESSAGES, "messages_erased_whole")
    return {
        "subject_ct": codec.write("subject_ct", row, "[erased]"),
        "body_text_ct": codec.write("body_text_ct", row, stub),
        "reply_text_ct": None,
        "body_html_ct": None,
        "sender_name_ct": None,
        "sender_email_ct": None,
        "sender_email_bidx": None,
    }


def select_batch(ctx: RunContext, after: int) -> Batch:
    """The next messages of the subject's tickets and of theirs elsewhere, in id order."""
    scope = message_scope(ctx.ids("ticket_ids"), ctx.ids("other_ids"))
    rows = ctx.session.execute(
        select(Message.id, Message.ticket_id, Message.key_owner).where(scope, Message.id > after).order_by(Message.id).limit(BATCH)
    ).all()
    items = [Item("message", r.id, controller_id=None if r.key_owner == TRIAGE_KEY_OWNER else r.key_owner, ticket_id=r.ticket_id) for r in rows]
    return Batch(items, after=rows[-1].id if rows else after, done=len(rows) < BATCH)


def apply_batch(ctx: RunContext, items: Sequence[Item]) -> None:
    """Rewrite the messages (a few statements whatever the batch size); failures are reported, never half-done."""
    session, report = ctx.session, ctx.report
    ids = [i.id for i in items]
    if not ids:
        return
    columns = [
        Message.id,
        Message.row_uid,
        Message.key_owner,
        Message.raw_blob_id,
        Message.message_id_ct,
        Message.notes,
        Message.sender_name_ct,
        Message.sender_email_ct,
        *(getattr(Message, c) for c in _FIELD_COLUMNS.values()),
    ]
    rows = session.execute(select(*columns, Message.ticket_id).where(Message.id.in_(ids)).order_by(Message.id)).all()
    files = session.execute(select(Attachment.id, Attachment.message_id, Attachment.blob_id).where(Attachment.message_id.in_(ids))).all()
    codec = _Codec(session)
    doomed: list[int] = []
    updates: list[dict[str, Any]] = []
    per_message = Counter(f.message_id for f in files)
    for row in rows:
        try:
            changes = _rewrite(ctx, codec, row, doomed, per_message[row.id])
        except (CryptoError, LookupError, UnicodeDecodeError):
            report.fail("message", row.id, "unreadable")
            continue
        report.clear_fail("message", row.id)
        if changes:
            updates.append({"id": row.id, **changes})
    # Grouped by the set of columns changed, each group one executemany.
    for keys in sorted({tuple(sorted(u)) for u in updates}):
        session.execute(update(Message), [u for u in updates if tuple(sorted(u)) == keys])
    failed = report.failed_ids("message")
    if ctx.erasing:
        # The subject's own messages and every message of their tickets lose their files; a message of someone
        # else's ticket that mentions them keeps its files, their names rewritten and listed for review.
        theirs = ctx.plan_set("own_ids") | {r.id for r in rows if r.ticket_id in ctx.plan_set("ticket_ids")}
        gone = [f for f in files if f.message_id not in failed and f.message_id in theirs]
        if gone:
            session.execute(delete(Attachment).where(Attachment.id.in_([f.id for f in gone])))
            doomed += [f.blob_id for f in gone]
            report.count("ticket_attachments", "attachments_removed", len(gone))
        review_files(ctx, [f.id for f in files if f.message_id not in failed and f.message_id not in theirs])
    elif files:
        report.count("ticket_attachments", "attachments_not_rectifiable", len(files))
    forget_identifiers(ctx, [r.id for r in rows if r.id not in failed])
    delete_blobs(session, doomed)


MESSAGES_STORE = Store("messages", select_batch, apply_batch)
