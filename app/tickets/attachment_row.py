"""An attachment with its blob and the identifiers it adds to its message's index, in one statement (Postgres; issue 11 item 7).

`app.tickets.service.add_attachment` stores a file as the blob and its chunk
(one data-modifying WITH), the attachment row (an ORM flush) and the index rows
of its name and small text contents (`app.tickets.identifiers.index_file`: a
SELECT of the digests the message has, then an INSERT of the others). On
Postgres, for content of one chunk in memory, `insert_attachment` writes the
same rows with the same values in one statement: the values encrypted as a
flush encrypts them (`encrypt_new_row`, `one_chunk_rows`) under the key owner's
active key, checked and locked FOR SHARE by the statement itself
(`app.crypto.kept_active.write_checked`), and the index rows those of
`index_file`, a digest the message has already left out in the statement (NOT
EXISTS, the same snapshot the SELECT read). The rows returned are in the
session, loaded, as after a flush. Anything else (SQLite, content in pieces or
of more than one chunk, over its limit) returns None: the ordinary path.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import Integer, LargeBinary, Select, String, bindparam, func, insert, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.blobs.models import BlobChunk
from app.blobs.store import fits_one_statement, inserted_blob, one_chunk_inserts, one_chunk_params, one_chunk_rows
from app.crypto.fields import encrypt_new_row, new_row_uid, remember_plain
from app.crypto.kept_active import active_check, write_checked
from app.crypto.keys import owner_of
from app.db import loaded, table_of_model
from app.tickets.identifiers import MessageIdentifier, file_digests
from app.tickets.models import Attachment, Message


def insert_attachment(
    session: Session, message: Message, *, filename: str | None, content_type: str, content: Any, text: bytes | None, now: dt.datetime, max_bytes: int | None
) -> Attachment | None:
    """`content` stored as a file of `message` (its type as given, normalised by the caller) with the index rows of its name
    and `text` (`index_file`'s), in one statement; None when this path does not apply (the caller takes the ordinary one)."""
    if not fits_one_statement(session, content, max_bytes):
        return None  # past max_bytes the ordinary path refuses it (AttachmentTooLarge)
    session.flush()  # whatever is pending is written first, as the ordinary path's flushes would
    owner = message.key_owner

    def rows() -> tuple[tuple[dict[str, Any], dict[str, Any]], dict[str, Any]]:
        blob_values, chunk = one_chunk_rows(session, content, key_owner=owner, now=now)
        row_uid = new_row_uid()
        columns: dict[str, Any] = {
            "message_id": message.id,
            "key_owner": owner,
            "content_type": content_type,
            "size": blob_values["size"],
            "sha256": blob_values["sha256"],
            "created_at": now,
            "row_uid": row_uid,
            **encrypt_new_row(session, Attachment, {"filename": filename}, owner=owner, row_uid=row_uid),
        }
        found = file_digests(session, owner, filename, text) or []
        params = {
            **one_chunk_params(blob_values, chunk),
            **{f"a_{k}": v for k, v in columns.items()},
            "id_message": message.id,
            "id_owner": owner,
            "id_kinds": [kind for kind, _ in found],
            "id_digests": [digest for _, digest in found],
        }
        return (columns, blob_values), params

    (attachment_pk, blob_id), (columns, blob_values) = write_checked(session, owner_of(owner), rows, _statement)
    inserted_blob(session, blob_id, blob_values)
    attachment = loaded(session, Attachment, id=attachment_pk, blob_id=blob_id, **columns)
    remember_plain(attachment, {"filename": filename})
    return attachment


@functools.cache
def _statement(checked: bool) -> Select[Any]:
    # Built once (its values are parameters): the blob (gated on the WITH key_ok when `checked`), its chunk, the attachment
    # and the index rows, each from the blob's row (none when it was not written); the new digests only.
    chunks, attachments, index = table_of_model(BlobChunk), table_of_model(Attachment), table_of_model(MessageIdentifier)
    blob, chunk = one_chunk_inserts(active_check().cte("key_ok") if checked else None)
    new_chunk = chunk.returning(chunks.c.id).cte("new_chunk")
    columns = [c.name for c in attachments.columns if c.name not in ("id", "blob_id")]
    row = select(*[bindparam(f"a_{c}", type_=attachments.c[c].type) for c in columns], blob.c.id)
    new_attachment = insert(attachments).from_select([*columns, "blob_id"], row).returning(attachments.c.id, attachments.c.blob_id).cte("new_attachment")
    found = select(
        func.unnest(bindparam("id_kinds", type_=ARRAY(String)), type_=String).label("kind"),
        func.unnest(bindparam("id_digests", type_=ARRAY(LargeBinary)), type_=LargeBinary).label("digest"),
    ).subquery("found")
    message_id = bindparam("id_message", type_=Integer)
    known = select(literal(1)).where(index.c.message_id == message_id, index.c.digest == found.c.digest).exists()
    rows = select(message_id, bindparam("id_owner", type_=Integer), found.c.kind, found.c.digest).select_from(blob.join(found, literal(True))).where(~known)
    new_index = insert(index).from_select(["message_id", "key_owner", "kind", "digest"], rows).returning(index.c.id).cte("new_index")
    return select(new_attachment.c.id, new_attachment.c.blob_id).add_cte(new_chunk, new_index)
