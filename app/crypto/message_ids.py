"""Message-IDs are stored as a keyed hash for lookup, never in plaintext (issue 13 item 1e).

A Message-ID often carries the sender's mailbox name (`jane.doe.1234@mail.example`).
Every column that finds a message by its Message-ID holds
`digest(value)`: HMAC-SHA256 (truncated, `app.crypto.cipher.blind_index`) under the
platform's blind-index key, the same for the same Message-ID whichever controller
the message belongs to, so threading, duplicate detection and bounces are one
equality lookup. Where the value must be shown or sent (a message's own id, an
outbox row's Message-ID, In-Reply-To and References) it is also kept in an
`EncryptedField` under the row's data key.

The digest of `<id>` and of `id` is the same (angle brackets and surrounding
space dropped). It is the keyed hash an erasure used before migration 0021 to
replace a Message-ID (`<hex>@erased.invalid`), so stubs erased then are still
found by the Message-ID they had.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from app.crypto.cipher import blind_index
from app.crypto.keys import PLATFORM, active_key, cache_for, find_index_key


def bare(message_id: str) -> str:
    """A Message-ID without angle brackets or surrounding space."""
    return message_id.strip().strip("<>").strip()


def digest_with(index_key: bytes, message_id: str) -> bytes:
    """The keyed hash of a Message-ID under `index_key` (what migrations call, having the key in hand)."""
    return blind_index(index_key, "text", f"message-id:{bare(message_id)}")


def digest(session: Session, message_id: str) -> bytes:
    """The keyed hash to store for a Message-ID (creates the platform key on first use)."""
    key = active_key(session.connection(), cache_for(session), PLATFORM)
    return digest_with(key.index_key, message_id)


def digests(session: Session, message_ids: Iterable[str]) -> list[bytes]:
    """The keyed hashes to look up these Message-IDs by (empty when nothing was ever hashed: nothing can match)."""
    wanted = [m for m in message_ids if m and bare(m)]
    if not wanted:
        return []
    key = find_index_key(session.connection(), cache_for(session), PLATFORM)
    return [] if key is None else [digest_with(key, m) for m in wanted]
