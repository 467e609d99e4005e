"""The personal part of an audit event: encrypted under its month's key, shredded with it, the chain untouched.

An event's ids, counts and codes (`details`) never hold personal data (app.audit.service refuses it).
What an event must still say about a person, as evidence for as long as the audit log's own
retention allows (for example the address a controller principal acted from, which the actor
columns never keep), goes in its personal part: a small object of text, ints and booleans, stored as `audit_events.personal_ct` =
AES-256-GCM (app.crypto.cipher format 1) under the period key of the event's UTC calendar month
(app.crypto.periods, purpose "audit"), with associated data `audit_events.personal_ct:<seq>`,
so a part copied to another event does not decrypt. The chain hashes the ciphertext's SHA-256
(app.audit.chain, format version 2): when retention destroys the month's key
(`app.audit.shredding.shred_periods_before`) the parts become unreadable and every hash still
verifies. The page shows such a part as "[shredded]".

No data subject's data belongs here: a period key covers every controller's events of a month,
so a single subject's erasure could not reach it before the month is shredded.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.audit.chain import canonical_json
from app.crypto.cipher import DecryptionError, decrypt_field, encrypt_field, key_id_of
from app.crypto.periods import AUDIT, LoadedPeriodKey, key_for_period, load_period_keys, period_of

TABLE = "audit_events"
COLUMN = "personal_ct"
MAX_BYTES = 4096  # the canonical JSON of a part; a part is a few fields, never a message body
MAX_FIELDS = 16
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SHREDDED = "[shredded]"


class InvalidPersonalPart(ValueError):
    """A personal part that is not a flat object of text, ints, booleans and null, or is too large."""


def check_personal(personal: Mapping[str, Any]) -> dict[str, Any]:
    """The part as it will be encrypted, or InvalidPersonalPart (flat; at most 16 fields and 4096 bytes of JSON)."""
    if len(personal) > MAX_FIELDS:
        raise InvalidPersonalPart(f"an audit event's personal part holds at most {MAX_FIELDS} fields")
    clean: dict[str, Any] = {}
    for key, value in personal.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidPersonalPart(f"personal field name {key!r} is not a lower-case code")
        if value is not None and not isinstance(value, str | int | bool):
            raise InvalidPersonalPart(f"personal field {key} has type {type(value).__name__}; only text, ints, booleans and null")
        clean[key] = value
    if len(canonical_json(clean).encode("ascii")) > MAX_BYTES:
        raise InvalidPersonalPart(f"an audit event's personal part is at most {MAX_BYTES} bytes")
    return clean


def seal(session: Session, personal: Mapping[str, Any], *, seq: int, at: dt.datetime) -> bytes | None:
    """The ciphertext of a checked part for event `seq` at `at`, under its month's key (created on first use).

    None when that month's key was already shredded: the part would be due at once, so it is not
    stored (only a clock years off can record into a shredded month).
    """
    key = key_for_period(session, AUDIT, period_of(at), now=at)
    if key is None:
        return None
    plaintext = canonical_json(dict(personal)).encode("ascii")
    return encrypt_field(key.aead, key.id, plaintext, table=TABLE, column=COLUMN, row_uid=str(seq))


@dataclass(frozen=True)
class PersonalPart:
    """An event's personal part as a reader sees it: its fields, or why they cannot be read."""

    state: str  # "readable", "shredded" or "unreadable"
    values: dict[str, Any] | None = None
    reason: str = ""

    def shown(self) -> str:
        """One line for the page: `name: value; ...`, "[shredded]" or "[unreadable: reason]"."""
        if self.state == "readable" and self.values is not None:
            return "; ".join(f"{k}: {v}" for k, v in sorted(self.values.items()))
        if self.state == "shredded":
            return SHREDDED
        return f"[unreadable: {self.reason}]"


def open_parts(session: Session, rows: Iterable[tuple[int, bytes | None]]) -> dict[int, PersonalPart]:
    """The personal parts of events given as (seq, personal_ct), by seq; events without one are left out.

    Unwraps each month's key once (one query for the page). A shredded key gives state "shredded";
    a key whose master secret is not configured, or a part that fails authentication, "unreadable".
    """
    parts = [(seq, bytes(blob)) for seq, blob in rows if blob is not None]
    key_ids: dict[int, int] = {}
    out: dict[int, PersonalPart] = {}
    for seq, blob in parts:
        try:
            key_ids[seq] = key_id_of(blob, where=f"{TABLE}.{COLUMN} of event seq {seq}")
        except DecryptionError:
            out[seq] = PersonalPart("unreadable", reason="malformed")
    keys = load_period_keys(session, set(key_ids.values()))
    for seq, blob in parts:
        if seq in out:
            continue
        key = keys.get(key_ids[seq], "missing")
        if not isinstance(key, LoadedPeriodKey):
            out[seq] = PersonalPart("shredded") if key == "shredded" else PersonalPart("unreadable", reason=key)
            continue
        try:
            values = json.loads(decrypt_field(key.aead, blob, table=TABLE, column=COLUMN, row_uid=str(seq)))
        except DecryptionError:
            out[seq] = PersonalPart("unreadable", reason="authentication failed")
            continue
        out[seq] = PersonalPart("readable", values)
    return out
