"""Blob storage: a one-chunk blob (a plain message's raw original) written by Core INSERTs reads back, encrypted as a flush would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.blobs.models import Blob, BlobChunk
from app.blobs.store import read_blob, store_blob
from app.crypto.cipher import DecryptionError, decrypt_field, key_id_of
from app.crypto.kept_active import forget_kept_keys
from app.crypto.keys import cache_for, load_key

NOW = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)


def _inserts(session: Session) -> tuple[list[str], Callable[..., None]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "INSERT" in statement.upper() and "blob" in statement:
            seen.append(statement)

    engine = session.get_bind().engine
    event.listen(engine, "before_cursor_execute", count)
    return seen, count


def test_one_chunk_blob_reads_back_and_costs_one_insert_on_postgres(session: Session) -> None:
    content = b"From: someone@example.org\r\nSubject: hello\r\n\r\nbody \xe9\r\n"
    forget_kept_keys()  # as a new process: a key kept from an earlier test's rolled-back transaction is gone (checked, then a second write)
    seen, listener = _inserts(session)
    try:
        blob = store_blob(session, content, key_owner=0, now=NOW)
    finally:
        event.remove(session.get_bind().engine, "before_cursor_execute", listener)
    dialect = session.get_bind().dialect.name
    assert len(seen) == (1 if dialect == "postgresql" else 2)
    assert (blob.size, blob.chunk_count, blob.key_owner) == (len(content), 1, 0)
    session.expire_all()
    assert read_blob(session, blob.id) == content
    stored = session.get(Blob, blob.id)
    assert stored is not None and stored.size == len(content)
    chunk = session.scalars(select(BlobChunk).where(BlobChunk.blob_id == blob.id)).one()
    assert content not in (chunk.data_ct or b"")
    # The value is bound to its own row: under another row's identity it does not decrypt.
    aead = load_key(session.connection(), cache_for(session), key_id_of(chunk.data_ct, where="blob_chunks.data_ct")).aead
    with pytest.raises(DecryptionError):
        decrypt_field(aead, chunk.data_ct, table="blob_chunks", column="data_ct", row_uid="0" * 32)
    assert decrypt_field(aead, chunk.data_ct, table="blob_chunks", column="data_ct", row_uid=chunk.row_uid) == content


def test_empty_and_larger_blobs_keep_their_chunking(session: Session) -> None:
    empty = store_blob(session, b"", key_owner=0, now=NOW)
    big = store_blob(session, b"x" * 25, key_owner=0, now=NOW, chunk_bytes=10)
    session.expire_all()
    assert read_blob(session, empty.id) == b""
    assert read_blob(session, big.id) == b"x" * 25
    stored = session.get(Blob, big.id)
    assert stored is not None and stored.chunk_count == 3
