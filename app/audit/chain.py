"""The canonical serialisation of an audit event and its SHA-256 link; pure functions, no database.

Canonical form (version 1), hashed as UTF-8 bytes:

    JSON of the object
      {"v": 1, "seq": int, "at": "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, always 6 digits),
       "actor_kind": str, "actor_id": int|null, "actor_name": str|null,
       "action": str, "target_type": str, "target_id": str|null,
       "controller_id": int|null, "details": object, "prev_hash": 64 lowercase hex}
    with keys sorted at every level, separators "," and ":", no whitespace, ASCII only
    (json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)).

    hash = lowercase hex SHA-256 of that text. The first event's prev_hash is GENESIS.

Canonical form (version 2), for an event with a personal part (app.audit.personal): the same
object with "v": 2 and one more key, "personal": lowercase hex SHA-256 of the stored personal
ciphertext (`personal_ct`, the bytes as stored). The hash commits to the ciphertext, never to
the plaintext (a hash of an IP address or a name can be guessed), so destroying the period key
that decrypts it (crypto-shredding) leaves every hash and link verifiable. Events without a
personal part keep version 1, byte for byte.

Details hold only ints, booleans, null, short codes, and lists or objects of those, so
the JSON text is the same whichever database stored it. The sequence number is inside
the hashed text, so moving an event to another position breaks its own hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1
FORMAT_VERSION_PERSONAL = 2
GENESIS = "0" * 64


@dataclass(frozen=True)
class Link:
    """The fields of one event that the hash covers."""

    seq: int
    at: dt.datetime
    actor_kind: str
    actor_id: int | None
    actor_name: str | None
    action: str
    target_type: str
    target_id: str | None
    controller_id: int | None
    details: Mapping[str, Any]
    prev_hash: str
    personal: str | None = None  # hex SHA-256 of the personal part's ciphertext (format version 2)


def personal_digest(ciphertext: bytes | None) -> str | None:
    """The commitment to a personal part that the hash covers: hex SHA-256 of its stored ciphertext."""
    return None if ciphertext is None else hashlib.sha256(ciphertext).hexdigest()


def format_time(at: dt.datetime) -> str:
    """UTC with microseconds and a Z, the only time form that enters a hash."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given where UTC is required")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical(link: Link) -> bytes:
    """The bytes that are hashed for one event (see the module docstring)."""
    fields: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": link.seq,
        "at": format_time(link.at),
        "actor_kind": link.actor_kind,
        "actor_id": link.actor_id,
        "actor_name": link.actor_name,
        "action": link.action,
        "target_type": link.target_type,
        "target_id": link.target_id,
        "controller_id": link.controller_id,
        "details": dict(link.details),
        "prev_hash": link.prev_hash,
    }
    if link.personal is not None:
        fields.update(v=FORMAT_VERSION_PERSONAL, personal=link.personal)
    return canonical_json(fields).encode("ascii")


def event_hash(link: Link) -> str:
    """SHA-256 of the canonical event, as 64 lowercase hex digits."""
    return hashlib.sha256(canonical(link)).hexdigest()
