"""Encrypted blob storage in chunks: attachments, raw originals, exports are written and read a chunk at a time.

A platform service: it knows no ticket and no controller. The caller names the
`key_owner` whose data key encrypts the chunks (for helpdesk data,
`app.tickets.models.key_owner_for(controller_id)`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from sqlalchemy import CTE, Insert, bindparam, delete, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from app.blobs.models import Blob, BlobChunk
from app.crypto.fields import new_row_uid
from app.crypto.kept_active import active_check, gated_insert, write_checked
from app.crypto.keys import owner_of
from app.db import ids_in, loaded, table_of_model
from app.exceptions import Refused

CHUNK_BYTES = 1024 * 1024


class BlobTooLarge(Refused):
    """The content is larger than the limit given to `store_blob`; nothing was kept."""


def _pieces(source: bytes | BinaryIO | Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for start in range(0, len(view), chunk_bytes):
            yield bytes(view[start : start + chunk_bytes])
        return
    if hasattr(source, "read"):
        while piece := source.read(chunk_bytes):
            yield piece
        return
    buffer = b""
    for piece in source:
        buffer += piece
        while len(buffer) >= chunk_bytes:
            yield buffer[:chunk_bytes]
            buffer = buffer[chunk_bytes:]
    if buffer:
        yield buffer


def store_blob(
    session: Session,
    source: bytes | BinaryIO | Iterable[bytes],
    *,
    key_owner: int,
    now: dt.datetime,
    max_bytes: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Blob:
    """Encrypt and store `source` chunk by chunk under `key_owner`'s data key; raises BlobTooLarge past `max_bytes` (and keeps nothing)."""
    owner = key_owner
    if isinstance(source, bytes | bytearray | memoryview):
        # Content already in memory: check and describe it up front, one INSERT and no UPDATE.
        if max_bytes is not None and len(source) > max_bytes:
            raise BlobTooLarge(f"content is larger than {max_bytes} bytes")
        size = len(source)
        if 0 < size <= chunk_bytes:
            return _store_one_chunk(session, bytes(source), key_owner=owner, now=now)
        blob = Blob(key_owner=owner, size=size, sha256=hashlib.sha256(source).hexdigest(), chunk_count=-(-size // chunk_bytes), created_at=now)
    else:
        blob = Blob(key_owner=owner, size=0, sha256="", chunk_count=0, created_at=now)
    session.add(blob)
    session.flush()
    digest = hashlib.sha256()
    size = seq = 0
    for piece in _pieces(source, chunk_bytes):
        size += len(piece)
        if max_bytes is not None and size > max_bytes:
            session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob.id))
            session.delete(blob)
            session.flush()
            raise BlobTooLarge(f"content is larger than {max_bytes} bytes")
        digest.update(piece)
        chunk = BlobChunk(blob_id=blob.id, seq=seq, key_owner=owner)
        chunk.data = piece
        session.add(chunk)
        session.flush()
        # Forget the flushed chunk so the session never holds more than one chunk's bytes.
        session.expunge(chunk)
        seq += 1
    if (blob.size, blob.sha256, blob.chunk_count) != (size, digest.hexdigest(), seq):
        blob.size, blob.sha256, blob.chunk_count = size, digest.hexdigest(), seq
        session.flush()
    return blob


def _store_one_chunk(session: Session, content: bytes, *, key_owner: int, now: dt.datetime) -> Blob:
    """A blob of one chunk (a plain message's raw original) by Core INSERTs: on Postgres one statement (the blob row
    and its chunk in a data-modifying WITH), elsewhere two. The chunk is encrypted as a flush would (its own
    row_uid in the associated data, the owner's active key); the Blob returned is in the session, loaded."""
    blobs, chunks = table_of_model(Blob), table_of_model(BlobChunk)
    if session.get_bind().dialect.name == "postgresql":

        def rows() -> tuple[dict[str, Any], dict[str, Any]]:
            values, chunk = one_chunk_rows(session, content, key_owner=key_owner, now=now)
            return values, one_chunk_params(values, chunk)

        # Under the owner's kept key, checked FOR SHARE by the statement itself (app.crypto.kept_active): no key query
        (blob_id,), values = write_checked(session, owner_of(key_owner), rows, _one_chunk_statement)
        return inserted_blob(session, blob_id, values)
    values, chunk = one_chunk_rows(session, content, key_owner=key_owner, now=now)
    blob_id = session.execute(insert(blobs).values(**values).returning(blobs.c.id)).scalar_one()
    session.execute(insert(chunks).values(blob_id=blob_id, **chunk))
    return inserted_blob(session, blob_id, values)


def one_chunk_rows(session: Session, content: bytes, *, key_owner: int, now: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `blobs` row and the `blob_chunks` row (without blob_id) of a one-chunk blob, for a Core INSERT: the chunk
    encrypted as a flush would (its own row_uid in the associated data, the owner's active key)."""
    values = {"key_owner": key_owner, "size": len(content), "sha256": hashlib.sha256(content).hexdigest(), "chunk_count": 1, "created_at": now}
    row_uid = new_row_uid()
    data_ct = BlobChunk.data.encrypt_for_insert(session, content, owner_id=key_owner, row_uid=row_uid)
    return values, {"seq": 0, "key_owner": key_owner, "row_uid": row_uid, "data_ct": data_ct}


def inserted_blob(session: Session, blob_id: int, values: dict[str, Any]) -> Blob:
    """The Blob of a row a Core INSERT just wrote (`one_chunk_rows`), in the session, loaded."""
    return loaded(session, Blob, id=blob_id, **values)


def fits_one_statement(session: Session, content: Any, max_bytes: int | None) -> bool:
    """Whether `content` can go in one statement with the rows that hold it (`one_chunk_inserts`): on Postgres, bytes of
    one chunk (not empty) within `max_bytes` (past it the ordinary path refuses it: BlobTooLarge)."""
    if session.get_bind().dialect.name != "postgresql" or not isinstance(content, bytes) or not 0 < len(content) <= CHUNK_BYTES:
        return False
    return max_bytes is None or len(content) <= max_bytes


def one_chunk_params(values: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `one_chunk_inserts` for the rows of `one_chunk_rows`: blob_<column>, chunk_<column>."""
    return {**{f"blob_{k}": v for k, v in values.items()}, **{f"chunk_{k}": v for k, v in chunk.items()}}


def one_chunk_inserts(key_ok: CTE | None) -> tuple[CTE, Insert]:
    """A one-chunk blob in a statement built once (Postgres): its row as the WITH new_blob (RETURNING its id; written
    only while `key_ok`, a WITH of `app.crypto.kept_active.active_check`, finds its row, when given) and the INSERT of
    its chunk selecting that id. Parameters: `one_chunk_params`."""
    blobs, chunks = table_of_model(Blob), table_of_model(BlobChunk)
    blob = {c: bindparam(f"blob_{c}", type_=blobs.c[c].type) for c in ("key_owner", "size", "sha256", "chunk_count", "created_at")}
    new_blob = gated_insert(blobs, blob, key_ok).returning(blobs.c.id).cte("new_blob")
    chunk_columns = ("seq", "key_owner", "row_uid", "data_ct")
    chunk = [bindparam(f"chunk_{c}", type_=chunks.c[c].type) for c in chunk_columns]
    return new_blob, insert(chunks).from_select(["blob_id", *chunk_columns], select(new_blob.c.id, *chunk))


@functools.cache
def _one_chunk_statement(checked: bool) -> ReturningInsert[int]:
    # The blob row and its chunk in one data-modifying WITH (Postgres), built once: building it per blob cost more CPU
    # than sending it. `checked`: the blob (so its chunk) is written only while the WITH key_ok finds the kept key
    # active (app.crypto.kept_active), no row else.
    _, new_chunk = one_chunk_inserts(active_check().cte("key_ok") if checked else None)
    return new_chunk.returning(table_of_model(BlobChunk).c.blob_id)


def iter_blob(session: Session, blob_id: int) -> Iterator[bytes]:
    """Yield the decrypted content of a blob, one chunk (one query) at a time."""
    blob = session.get(Blob, blob_id)
    if blob is None:
        return
    for seq in range(blob.chunk_count):
        chunk = session.scalar(select(BlobChunk).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))
        if chunk is None:
            raise LookupError(f"blob {blob_id} is missing chunk {seq}")
        data = chunk.data
        session.expunge(chunk)
        yield data or b""


def read_blob(session: Session, blob_id: int) -> bytes:
    """The whole decrypted content; only for content known to be small."""
    return b"".join(iter_blob(session, blob_id))


def delete_blob(session: Session, blob_id: int) -> None:
    """Remove a blob and its chunks."""
    delete_blobs(session, [blob_id])


def delete_blobs(session: Session, blob_ids: list[int]) -> None:
    """Remove blobs and their chunks in two statements (after the rows pointing at them are gone); thousands at once are fine."""
    if blob_ids:
        session.execute(delete(BlobChunk).where(ids_in(session, BlobChunk.blob_id, blob_ids)))
        session.execute(delete(Blob).where(ids_in(session, Blob.id, blob_ids)))


def move_blob(session: Session, blob_id: int, key_owner: int) -> None:
    """Re-encrypt a blob under `key_owner`'s key, chunk by chunk (a ticket routed out of triage)."""
    blob = session.get(Blob, blob_id)
    owner = key_owner
    if blob is None or blob.key_owner == owner:
        return
    for seq in range(blob.chunk_count):
        chunk = session.scalar(select(BlobChunk).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))
        if chunk is None:
            raise LookupError(f"blob {blob_id} is missing chunk {seq}")
        data = chunk.data or b""
        chunk.key_owner = owner
        chunk.data = data  # written again: the value is encrypted for its new owner at flush
        session.flush()
        session.expunge(chunk)
    blob.key_owner = owner
    session.flush()
