"""Encrypted blob storage in chunks: attachments and raw originals are written and read a chunk at a time."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.tickets.models import Blob, BlobChunk
from app.tickets.sealed import open_chunk, seal_chunk

CHUNK_BYTES = 1024 * 1024


class BlobTooLarge(Exception):
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
    controller_id: int | None,
    now: dt.datetime,
    max_bytes: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Blob:
    """Encrypt and store `source` chunk by chunk; raises BlobTooLarge past `max_bytes` (and keeps nothing)."""
    blob = Blob(controller_id=controller_id, size=0, sha256="", chunk_count=0, created_at=now)
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
        # A Core insert: the session keeps no chunk objects, so memory stays at one chunk.
        session.execute(insert(BlobChunk).values(blob_id=blob.id, seq=seq, data=seal_chunk(controller_id, blob.id, seq, piece)))
        seq += 1
    blob.size, blob.sha256, blob.chunk_count = size, digest.hexdigest(), seq
    session.flush()
    return blob


def iter_blob(session: Session, blob_id: int) -> Iterator[bytes]:
    """Yield the decrypted content of a blob, one chunk (one query) at a time."""
    blob = session.get(Blob, blob_id)
    if blob is None:
        return
    controller_id = blob.controller_id
    for seq in range(blob.chunk_count):
        data = session.scalar(select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))
        if data is None:
            raise LookupError(f"blob {blob_id} is missing chunk {seq}")
        yield open_chunk(controller_id, blob_id, seq, data)


def read_blob(session: Session, blob_id: int) -> bytes:
    """The whole decrypted content; only for content known to be small."""
    return b"".join(iter_blob(session, blob_id))


def delete_blob(session: Session, blob_id: int) -> None:
    """Remove a blob and its chunks."""
    session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
    session.execute(delete(Blob).where(Blob.id == blob_id))
