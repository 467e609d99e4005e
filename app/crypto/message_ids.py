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

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Label, bindparam, literal, select
from sqlalchemy.orm import Session

from app.crypto.cipher import blind_index
from app.crypto.keys import (
    PLATFORM,
    active_key,
    cache_for,
    confirm_index_key,
    find_index_key,
    index_key_check,
    remember_index_key,
    remembered_index_key,
)


def bare(message_id: str) -> str:
    """A Message-ID without angle brackets or surrounding space."""
    return message_id.strip().strip("<>").strip()


def digest_with(index_key: bytes, message_id: str) -> bytes:
    """The keyed hash of a Message-ID under `index_key` (what migrations call, having the key in hand)."""
    return blind_index(index_key, "text", f"message-id:{bare(message_id)}")


def digest(session: Session, message_id: str) -> bytes:
    """The keyed hash to store for a Message-ID (creates the platform key on first use).

    The index key is the same in every generation of the platform key (rotation keeps it), so a key
    confirmed in this transaction (`first_by_digest`) is used as it is, without locking a generation.
    """
    cache = cache_for(session)
    confirmed = cache.index.get(PLATFORM)
    if confirmed is not None:
        return digest_with(confirmed, message_id)
    key = active_key(session.connection(), cache, PLATFORM)
    remember_index_key(session, key)
    return digest_with(key.index_key, message_id)


def first_by_digest(session: Session, message_id: str, entity: Any, column: Any, *columns: Any) -> Any:
    """The first row (a Row) of `columns` (of `entity`) whose `column` is the keyed hash of `message_id`, or None.

    With the platform key this process remembers, the key is checked in the same statement (an EXISTS on
    its data_keys row selected beside the lookup: no key query of its own); when the check fails (the
    database was replaced, the key row changed) the key is forgotten and loaded as usual. `columns[0]`
    must be NOT NULL (it tells a match from none); the row also carries `key_ok`.
    """
    return lookup_with(session, message_id, entity, column, columns)[0]


def lookup_with(
    session: Session, message_id: str, entity: Any, column: Any, columns: tuple[Any, ...], *, beside: Mapping[str, Label[bool]] | None = None
) -> tuple[Any, dict[str, bool] | None]:
    """`first_by_digest`, and the value of each `beside` column (by name) read in the same statement, match or not.

    For the intake registry's observer prechecks (app.mail.intake): what they say costs no statement of its own.
    The values are None when the lookup could not carry them (then nobody may rely on them).
    """
    extra = dict(beside or {})
    shape = (*map(id, (entity, column, *columns)), *((name, id(label.element)) for name, label in extra.items()))
    known = remembered_index_key(session, PLATFORM)
    if known is not None and PLATFORM not in cache_for(session).index:
        stmt = _statement(
            ("checked", *shape, known.id, known.wrapped),
            lambda: _outer_lookup(entity, column, columns, [index_key_check(known).label("key_ok"), *extra.values()]),
        )
        row = session.execute(stmt, {"hashed": digest_with(known.index_key, message_id)}).first()
        live = row is not None and bool(row.key_ok)
        confirm_index_key(session, known, live)
        if live:
            assert row is not None
            return (row if row[0] is not None else None), _values(row, extra)
    hashed = digest(session, message_id)
    if extra:
        row = session.execute(_statement(("outer", *shape), lambda: _outer_lookup(entity, column, columns, list(extra.values()))), {"hashed": hashed}).one()
        return (row if row[0] is not None else None), _values(row, extra)
    stmt = _statement(("plain", *shape), lambda: select(*columns).where(column == bindparam("hashed")).limit(1))
    return session.execute(stmt, {"hashed": hashed}).first(), None


def _values(row: Any, extra: Mapping[str, Label[bool]]) -> dict[str, bool]:
    return {name: bool(row._mapping[label.name]) for name, label in extra.items()}


# The lookups are built once per shape (and per remembered key generation, which the check names): building the
# statement cost more CPU than running it. The digest is a parameter; a new key generation makes a new entry.
# Shapes are keyed by the ids of the mapped attributes (class attributes: they live as long as the process).
_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_STATEMENTS_MAX = 64


def _statement(shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    stmt = _STATEMENTS.get(shape)
    if stmt is None:
        if len(_STATEMENTS) >= _STATEMENTS_MAX:
            _STATEMENTS.clear()
        stmt = _STATEMENTS[shape] = build()
    return stmt


def _outer_lookup(entity: Any, column: Any, columns: tuple[Any, ...], beside: list[Any]) -> Any:
    # One row whether a message matches or not (its columns NULL then), so what is selected beside is always read.
    one = select(literal(1).label("one")).subquery()
    return select(*columns, *beside).select_from(one).outerjoin(entity, column == bindparam("hashed")).limit(1)


def digests(session: Session, message_ids: Iterable[str]) -> list[bytes]:
    """The keyed hashes to look up these Message-IDs by (empty when nothing was ever hashed: nothing can match)."""
    wanted = [m for m in message_ids if m and bare(m)]
    if not wanted:
        return []
    key = find_index_key(session.connection(), cache_for(session), PLATFORM)
    return [] if key is None else [digest_with(key, m) for m in wanted]
