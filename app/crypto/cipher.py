"""The field and key-wrapping formats: pure functions, no database, no Flask.

Field value (format 1)::

    0x01 | data key id (4 bytes, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext + 16-byte tag

The associated data is the 5-byte header (format and key reference) followed by
``|<table>.<column>:<row uid>``: a value copied to another row or column, a
header relabelled to another key, or any flipped byte fails authentication.
The format is guarded by a golden fixture in tests/crypto/test_format.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, Mapping
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.addresses import mailbox
from app.exceptions import DeskError

K = TypeVar("K")

FORMAT_V1 = 0x01
HEADER = struct.Struct(">BI")
NONCE_BYTES = 12
TAG_BYTES = 16
WRAP_FORMAT = 0x01
# 16 bytes (128 bits) of HMAC-SHA256: the index only has to tell values apart
# within one controller, and at 2^64 values before a birthday collision every
# lookup is exact (no false positives to decrypt and filter). A shorter index
# would not hide more: equality of two rows' values is what an index reveals at
# any length long enough to be useful, and the per-controller key already stops
# cross-controller linking and offline dictionary attacks without the key.
INDEX_BYTES = 16


class CryptoError(DeskError):
    """A value or key could not be encrypted or decrypted."""


class DecryptionError(CryptoError):
    """A stored value does not decrypt: tampered, moved, relabelled, or its key is gone."""


class KeyShredded(DecryptionError):
    """The data key was destroyed (crypto-shredding): its values can never be decrypted, and nothing new is written for its owner."""


def field_aad(header: bytes, table: str, column: str, row_uid: str) -> bytes:
    """The associated data binding a value to its format, key, table, column and row."""
    return header + b"|" + f"{table}.{column}:{row_uid}".encode()


def encrypt_field(aead: AESGCM, key_id: int, plaintext: bytes, *, table: str, column: str, row_uid: str) -> bytes:
    """Encrypt one field value under a data key with a fresh 96-bit nonce."""
    header = HEADER.pack(FORMAT_V1, key_id)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + aead.encrypt(nonce, plaintext, field_aad(header, table, column, row_uid))


def key_id_of(blob: bytes, *, where: str = "value") -> int:
    """The data key a stored value names; DecryptionError when it is not format 1."""
    if len(blob) < HEADER.size + NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(f"cannot decrypt {where}: too short to be an encrypted value")
    fmt, key_id = HEADER.unpack_from(blob)
    if fmt != FORMAT_V1:
        raise DecryptionError(f"cannot decrypt {where}: unknown format {fmt}")
    return int(key_id)


def decrypt_field(aead: AESGCM, blob: bytes, *, table: str, column: str, row_uid: str) -> bytes:
    """Decrypt one field value; any mismatch raises DecryptionError, never returns garbage."""
    # The error text is built only on failure: a queue page decrypts a hundred values.
    if len(blob) < HEADER.size + NONCE_BYTES + TAG_BYTES or blob[0] != FORMAT_V1:
        key_id_of(blob, where=f"{table}.{column} of row {row_uid}")  # raises with the reason
    header = blob[: HEADER.size]
    nonce = blob[HEADER.size : HEADER.size + NONCE_BYTES]
    try:
        return aead.decrypt(nonce, blob[HEADER.size + NONCE_BYTES :], field_aad(header, table, column, row_uid))
    except InvalidTag:
        where = f"{table}.{column} of row {row_uid}"
        raise DecryptionError(f"cannot decrypt {where}: authentication failed (tampered, moved to another row or column, or relabelled)") from None


def wrap_context(owner: str, generation: int, kind: str, master_version: int) -> bytes:
    """Associated data of a wrapped key: whose key, which generation, data or index, which master version."""
    return f"dsr-desk/data-key|{owner}|{generation}|{kind}|v{master_version}".encode()


def wrap_key(kek: bytes, key: bytes, *, context: bytes) -> bytes:
    """Wrap a data or index key under a key-encryption key."""
    nonce = os.urandom(NONCE_BYTES)
    return bytes([WRAP_FORMAT]) + nonce + AESGCM(kek).encrypt(nonce, key, context)


def unwrap_key(kek: bytes, wrapped: bytes, *, context: bytes) -> bytes:
    """Unwrap a key; DecryptionError if it was altered, moved or wrapped under another master key."""
    if len(wrapped) != 1 + NONCE_BYTES + 32 + TAG_BYTES or wrapped[0] != WRAP_FORMAT:
        raise DecryptionError("cannot unwrap data key: malformed")
    try:
        return AESGCM(kek).decrypt(wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :], context)
    except InvalidTag:
        raise DecryptionError("cannot unwrap data key: authentication failed (wrong master secret or altered key)") from None


def normalise_email(value: str) -> str:
    """An email address for indexing: its mailbox (trimmed, lowercased, `+tag` dropped; app.addresses.mailbox).

    Changed in migration 0016 (issue 12 item 4): before it, a `+tag` was part of the index.
    """
    return mailbox(value)


_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalise_phone(value: str) -> str:
    """A phone number in E.164 (+ and up to 15 digits); ValueError when it has no country code."""
    compact = _PHONE_PUNCTUATION.sub("", value.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _E164.match(compact):
        raise ValueError("phone number must be in international form, e.g. +44 20 7946 0958")
    return compact


def normalise_text(value: str) -> str:
    """Exact text, only trimmed (identifiers, account numbers)."""
    return value.strip()


NORMALISERS: dict[str, Callable[[str], str]] = {"email": normalise_email, "phone": normalise_phone, "text": normalise_text}


def blind_index(index_key: bytes, kind: str, value: str) -> bytes:
    """HMAC-SHA256 of the normalised value, truncated to INDEX_BYTES; `kind` separates emails from phones."""
    normalised = NORMALISERS[kind](value)
    return hmac.new(index_key, kind.encode() + b"\x00" + normalised.encode(), hashlib.sha256).digest()[:INDEX_BYTES]


def blind_indexes(index_keys: Mapping[K, bytes], kind: str, value: str) -> dict[K, bytes]:
    """`blind_index` of one value under many keys (one per controller): normalised once, one-shot HMACs."""
    message = kind.encode() + b"\x00" + NORMALISERS[kind](value).encode()
    return {owner: hmac.digest(key, message, "sha256")[:INDEX_BYTES] for owner, key in index_keys.items()}
