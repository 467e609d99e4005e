"""What an erasure does about mentions of the subject in other people's messages beyond rewriting their texts.

- `forget_identifiers`: the subject's entries in the identifier index of the
  messages a run rewrote (the index must not find them again);
- `review_files`: files of someone else's message that mentions the subject
  are not the subject's to destroy: their names are rewritten; a small text
  file that mentions them is stored again redacted (and listed); any other
  file is listed for the officer (the index cannot read its contents).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select

from app.blobs.store import delete_blobs, read_blob, store_blob
from app.crypto.cipher import CryptoError
from app.deletion.stores import RunContext
from app.tickets.identifiers import MessageIdentifier
from app.tickets.models import Attachment

SCAN_MAX_BYTES = 1024 * 1024


def forget_identifiers(ctx: RunContext, message_ids: Sequence[int]) -> None:
    """Delete the subject's digests from the identifier index of these messages."""
    wanted = [bytes.fromhex(d) for d in ctx.params.get("digests") or []]
    if not message_ids or not wanted:
        return
    gone = ctx.session.execute(delete(MessageIdentifier).where(MessageIdentifier.message_id.in_(list(message_ids)), MessageIdentifier.digest.in_(wanted)))
    ctx.report.count("message_identifiers", "identifiers_removed", int(getattr(gone, "rowcount", 0) or 0))


def review_files(ctx: RunContext, attachment_ids: Sequence[int]) -> None:
    """Files of other people's messages that mention the subject: names rewritten, contents listed for review."""
    rw = ctx.rewriter
    for item in ctx.session.scalars(select(Attachment).where(Attachment.id.in_(list(attachment_ids) or [0])).order_by(Attachment.id)):
        try:
            name = item.filename
        except CryptoError:
            ctx.report.fail("attachment", item.id, "unreadable")
            continue
        if rw.changes(name):
            item.filename = rw(name)
            ctx.report.count("ticket_attachments", "file_names_rewritten")
        if not item.content_type.startswith("text/") or item.size > SCAN_MAX_BYTES:
            ctx.report.review("attachment", item.id, "contents_not_scanned")
            continue
        try:
            data = read_blob(ctx.session, item.blob_id)
        except (CryptoError, LookupError):
            ctx.report.fail("attachment", item.id, "unreadable")
            continue
        if rw.contains(data):
            _redact_text_file(ctx, item, data)
    ctx.session.flush()


def _redact_text_file(ctx: RunContext, item: Attachment, data: bytes) -> None:
    """A small text file that mentions the subject: stored again with their identifiers redacted, the old blob destroyed."""
    text = data.decode("utf-8", "replace")
    blob = store_blob(ctx.session, (ctx.rewriter(text) or "").encode(), key_owner=item.key_owner, now=ctx.now)
    old, item.blob_id, item.size, item.sha256 = item.blob_id, blob.id, blob.size, blob.sha256
    ctx.session.flush()
    delete_blobs(ctx.session, [old])
    ctx.report.count("ticket_attachments", "file_contents_redacted")
    # Redacted as text: the officer checks the file still reads as it should.
    ctx.report.review("attachment", item.id, "contents_redacted")
