"""The encrypted blob tables: content stored in chunks so large files are never held whole.

Each chunk is an encrypted field under the data key of `key_owner`, which the
caller chooses (the store knows no ticket and no controller): the owning row's
key owner, so a blob is shredded with the rest of its owner's data.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.fields import EncryptedBytes, EncryptedRow, encrypted_column
from app.db import Base, intpk, utc


class Blob(Base):
    """Encrypted content stored in chunks so large files are never held whole."""

    __tablename__ = "blobs"

    id: Mapped[intpk]
    key_owner: Mapped[int] = mapped_column(Integer, index=True)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int]
    created_at: Mapped[utc]


class BlobChunk(EncryptedRow, Base):
    """One encrypted chunk (at most app.blobs.store.CHUNK_BYTES of plaintext) of a blob."""

    __tablename__ = "blob_chunks"
    __table_args__ = (UniqueConstraint("blob_id", "seq", name="uq_blob_chunks_blob_id_seq"),)

    id: Mapped[intpk]
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    key_owner: Mapped[int] = mapped_column(Integer)
    data_ct: Mapped[bytes] = encrypted_column()

    data = EncryptedBytes("data_ct", owner="key_owner")
