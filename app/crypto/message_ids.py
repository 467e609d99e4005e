"""Message-IDs are stored as a keyed hash for lookup, never in plaintext (issue 13 item 1e).

A Message-ID often carries the sender's mailbox name (`jane.doe.1234@mail.example`).
Every column that finds a message by its Message-ID holds
`digest(value)`: HMAC-SHA256 (truncated, `app.crypto.cipher.blind_index`) under the
platform's blind-index key, the same for the same Message-ID whichever controller
the message belongs to, so threading, duplicate detection and bounces are one
indexed lookup. Where the value must be shown or sent (a message's own id, an
outbox row's Message-ID, In-Reply-To and References) it is also kept in an
`EncryptedField` under the row's data key.

The digest of `<id>` and of `id` is the same (angle brackets and surrounding
space dropped), and so is that of ids differing only in the case of their
domain part (`normalised`): RFC 5322 §3.6.4 msg-id = id-left "@" id-right, the
id-right is a domain, compared without case as DNS does, and some MTAs and mail
programs lowercase it when they quote an id, so a reply to the desk's own mail
would otherwise open a second ticket and request (issue 11 item 3). The id-left
is compared exactly (case-sensitive by spec; generators use mixed case).

Rows stored before that hold the digest of the id exactly as it came
(`_exact_with`). They are not recomputed: the ids are only in ciphertexts under
each controller's data key (a migration would need the keyring, and a shredded
controller's cannot be read) or, for the reverse index, only in the encrypted
raw message. Instead every lookup tries both digests in the statement it already
was (`matching` / `params`, `digests`): an old row still matches its exact id, a
new row any case of its domain. The exact digest is also the keyed hash an
erasure used before migration 0021 to replace a Message-ID
(`<hex>@erased.invalid`), so stubs erased then are still found by the
Message-ID they had.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, Label, LargeBinary, bindparam, literal, select
from sqlalchemy.orm import Session

from app.compiled_once import session_row
from app.crypto.cipher import INDEX_BYTES, blind_index
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

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def bare(message_id: str) -> str:
    """A Message-ID without angle brackets or surrounding space."""
    return message_id.strip().strip("<>").strip()


def normalised(message_id: str) -> str:
    """A Message-ID as compared: `bare`, its id-right (the domain after the last "@") in ASCII lower case.

    RFC 5322 §3.6.4 (msg-id = id-left "@" id-right); the id-right is a domain or a domain literal, case-insensitive
    for ASCII letters only (RFC 4343 §3: no Unicode case folding, so no two distinct names meet). The id-left is kept
    as it is (a quoted one may hold "@": the last "@" splits, the one before "[" for a domain literal). An id with
    no "@" (not an RFC 5322 msg-id) is compared as it is.
    """
    value = bare(message_id)
    at = value.rfind("@[") if value.endswith("]") else -1
    at = at if at >= 0 else value.rfind("@")
    if at < 0:
        return value
    return value[: at + 1] + value[at + 1 :].translate(_ASCII_LOWER)


def digest_with(index_key: bytes, message_id: str) -> bytes:
    """The keyed hash to store for a Message-ID under `index_key` (of `normalised`; migrations call it, having the key)."""
    return blind_index(index_key, "text", f"message-id:{normalised(message_id)}")


def _exact_with(index_key: bytes, message_id: str) -> bytes:
    # What rows stored before the domain was folded hold (see the module docstring); equal to digest_with for most ids.
    return blind_index(index_key, "text", f"message-id:{bare(message_id)}")


def candidates_with(index_key: bytes, message_id: str) -> list[bytes]:
    """The keyed hashes a Message-ID matches: the stored form (`digest_with`), then the exact one when it differs."""
    stored, exact = digest_with(index_key, message_id), _exact_with(index_key, message_id)
    return [stored] if stored == exact else [stored, exact]


def digest(session: Session, message_id: str) -> bytes:
    """The keyed hash to store for a Message-ID (of `normalised`; creates the platform key on first use).

    The index key is the same in every generation of the platform key (rotation keeps it), so a key
    confirmed in this transaction (`first_by_digest`) is used as it is, without locking a generation.
    """
    return digest_with(_index_key(session), message_id)


def _index_key(session: Session) -> bytes:
    cache = cache_for(session)
    confirmed = cache.index.get(PLATFORM)
    if confirmed is not None:
        return confirmed
    key = active_key(session.connection(), cache, PLATFORM)
    remember_index_key(session, key)
    return key.index_key


# The parameters of `matching`: the stored form's keyed hash and the exact one (the same value when they do not differ,
# so the statement's text never changes: two fixed parameters, no expanding IN to render per execution).
HASHED, HASHED_EXACT = "hashed", "hashed_exact"


def matching(column: Any) -> ColumnElement[bool]:
    """`column` IN (the parameters `hashed`, `hashed_exact`): a Message-ID's keyed hashes (`params`), for a statement built once."""
    return cast("ColumnElement[bool]", column.in_([bindparam(HASHED, type_=LargeBinary(INDEX_BYTES)), bindparam(HASHED_EXACT, type_=LargeBinary(INDEX_BYTES))]))


def params(session: Session, message_id: str) -> dict[str, bytes]:
    """The values of `matching`'s parameters for a Message-ID (creates the platform key on first use, as `digest`)."""
    return _params(_index_key(session), message_id)


def _params(index_key: bytes, message_id: str) -> dict[str, bytes]:
    found = candidates_with(index_key, message_id)
    return {HASHED: found[0], HASHED_EXACT: found[-1]}


def first_by_digest(session: Session, message_id: str, entity: Any, column: Any, *columns: Any) -> Any:
    """The first row (a Row) of `columns` (of `entity`) whose `column` is a keyed hash of `message_id` (`matching`), or None.

    With the platform key this process remembers, the key is checked in the same statement (an EXISTS on
    its data_keys row selected beside the lookup: no key query of its own); when the check fails (the
    database was replaced, the key row changed) the key is forgotten and loaded as usual. `columns[0]`
    must be NOT NULL (it tells a match from none); the row also carries `key_ok`.
    """
    return lookup_with(session, message_id, entity, column, columns)[0]


def lookup_with(
    session: Session,
    message_id: str,
    entity: Any,
    column: Any,
    columns: tuple[Any, ...],
    *,
    beside: Mapping[str, Label[Any]] | None = None,
    joined: Mapping[str, tuple[Any, Any]] | None = None,
    more: Callable[[bytes], Mapping[str, Any]] | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """`first_by_digest`, and the value of each `beside` column (by name) read in the same statement, match or not.

    For the intake registry's observer prechecks (app.mail.intake): what they say costs no statement of its own.
    An Integer `beside` column's value is as read (None or an int), any other's a bool. `joined` names mapped classes
    outer-joined on their ON clause (each an entity or None under its name); `more(index_key)` gives the parameters
    those columns and clauses take (keyed hashes under the platform's index key, which it may differ from the
    remembered one's: it is asked again then). The values are None when the lookup could not carry them (then nobody
    may rely on them).
    """
    extra = dict(beside or {})
    joins = dict(joined or {})
    shape = (
        *map(id, (entity, column, *columns)),
        *((name, id(label.element)) for name, label in extra.items()),
        *((name, id(target), id(on)) for name, (target, on) in joins.items()),
    )
    known = remembered_index_key(session, PLATFORM)
    if known is not None and PLATFORM not in cache_for(session).index:
        stmt = _statement(
            ("checked", *shape, known.id, known.wrapped),
            lambda: _outer_lookup(entity, column, columns, [index_key_check(known).label("key_ok"), *extra.values()], joins),
        )
        row = _first(session, stmt, {**_params(known.index_key, message_id), **(more(known.index_key) if more else {})}, joins)
        live = row is not None and bool(row.key_ok)
        confirm_index_key(session, known, live)
        if live:
            assert row is not None
            return (row if row[0] is not None else None), _values(row, extra, joins)
    index_key = _index_key(session)
    hashed = _params(index_key, message_id)
    if extra or joins:
        stmt = _statement(("outer", *shape), lambda: _outer_lookup(entity, column, columns, list(extra.values()), joins))
        row = _first(session, stmt, {**hashed, **(more(index_key) if more else {})}, joins)
        assert row is not None  # the outer lookup's one row, match or not
        return (row if row[0] is not None else None), _values(row, extra, joins)
    stmt = _statement(("plain", *shape), lambda: select(*columns).where(matching(column)).limit(1))
    return _first(session, stmt, hashed, joins), None


def _first(session: Session, stmt: Any, params: dict[str, Any], joins: Mapping[str, tuple[Any, Any]]) -> Any:
    # The lookup's first row. Columns only (no joined entity to load): compiled once and sent on the cursor
    # (app.compiled_once.session_row); entities: the ORM's execute.
    return session.execute(stmt, params).first() if joins else session_row(session, stmt, params)


def _values(row: Any, extra: Mapping[str, Label[Any]], joins: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    found = {name: getattr(row, label.name) if isinstance(label.type, Integer) else bool(getattr(row, label.name)) for name, label in extra.items()}
    # The joined entities come last, in their order.
    return found | dict(zip(joins, tuple(row)[len(row) - len(joins) :], strict=True))


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


def _outer_lookup(entity: Any, column: Any, columns: tuple[Any, ...], beside: list[Any], joins: Mapping[str, tuple[Any, Any]]) -> Any:
    # One row whether a message matches or not (its columns NULL then), so what is selected beside is always read.
    one = select(literal(1).label("one")).subquery()
    stmt = select(*columns, *beside, *(target for target, _ in joins.values())).select_from(one).outerjoin(entity, matching(column))
    for target, on in joins.values():
        stmt = stmt.outerjoin(target, on)
    return stmt.limit(1)


def digests(session: Session, message_ids: Iterable[str]) -> list[bytes]:
    """The keyed hashes to look up these Message-IDs by, for an IN (empty when nothing was ever hashed: nothing can match).

    In the ids' order, each id's `candidates_with`: the stored form's hash first, then the exact one when it differs
    (rows stored before the domain was folded), so a list may be longer than the ids.
    """
    wanted = [m for m in message_ids if m and bare(m)]
    if not wanted:
        return []
    key = find_index_key(session.connection(), cache_for(session), PLATFORM)
    return [] if key is None else digests_with(key, wanted)


def digests_with(index_key: bytes, message_ids: Iterable[str]) -> list[bytes]:
    """`digests` under the platform's index key `index_key` (the ids' `candidates_with`, in their order; empty ids skipped)."""
    return [d for m in message_ids if m and bare(m) for d in candidates_with(index_key, m)]
