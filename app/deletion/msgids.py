"""Message-IDs of erased messages: replaced by a keyed hash, so the subject's mailbox name they carry is gone.

The hash is an HMAC under the platform's index key (`app.crypto`), the same
for the same Message-ID, so a reply that quotes the old Message-ID in its
References still finds the erased message's stub by hashing it the same way
(`hashed_message_id`). It never names the original.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.crypto.cipher import blind_index
from app.crypto.keys import PLATFORM, cache_for, find_index_key

SUFFIX = "@erased.invalid"


def hashed_message_id(session: Session, message_id: str) -> str:
    """`<hex of the keyed hash>@erased.invalid` for a Message-ID (without angle brackets)."""
    key = find_index_key(session.connection(), cache_for(session), PLATFORM) or b"\x00" * 32
    return blind_index(key, "text", f"message-id:{message_id.strip().strip('<>')}").hex() + SUFFIX
