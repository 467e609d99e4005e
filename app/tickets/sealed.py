"""The column types of the tickets' personal fields, bound to the security core's encryption.

TEMPORARY: until `app/crypto/fields.py` lands these are plain storage types
with the same database shape (bytes / a fixed-length index), so the schema and
the services do not change when the encryption is switched on here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import LargeBinary, String
from sqlalchemy.types import TypeDecorator


class Sealed(TypeDecorator[str]):
    """An encrypted text field (stored as bytes)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> bytes | None:
        return None if value is None else value.encode("utf-8")

    def process_result_value(self, value: bytes | None, dialect: Any) -> str | None:
        return None if value is None else bytes(value).decode("utf-8")


class BlindIndex(TypeDecorator[str]):
    """A blind index value (hex)."""

    impl = String(64)
    cache_ok = True


def email_index(controller_id: int | None, email: str) -> str:
    """The blind index of a normalised email address for one controller."""
    return hashlib.sha256(f"{controller_id}:{email.strip().lower()}".encode()).hexdigest()


def seal_chunk(controller_id: int | None, blob_id: int, seq: int, data: bytes) -> bytes:
    """Encrypt one blob chunk, bound to its blob and position."""
    return data


def open_chunk(controller_id: int | None, blob_id: int, seq: int, data: bytes) -> bytes:
    """Decrypt one blob chunk."""
    return bytes(data)
