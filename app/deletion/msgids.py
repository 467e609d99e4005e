"""Message-IDs of erased messages: what a message shows as its Message-ID becomes a keyed hash.

Every Message-ID is stored as its keyed hash for lookup (`app.crypto.message_ids`)
and encrypted where it is shown or sent. An erasure replaces the encrypted
value of the messages it takes by `<hex of the keyed hash>@erased.invalid`, and
the In-Reply-To / References of outbox rows naming them likewise; the lookup
hash stays, so a reply that quotes the old Message-ID still finds the stub.
It never names the original.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.crypto.message_ids import digest

SUFFIX = "@erased.invalid"


def hashed_message_id(session: Session, message_id: str) -> str:
    """`<hex of the keyed hash>@erased.invalid` for a Message-ID (without angle brackets)."""
    return digest(session, message_id).hex() + SUFFIX
