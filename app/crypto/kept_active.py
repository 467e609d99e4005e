"""Each owner's active data key kept across transactions, used only once a writing statement has re-checked it.

`app.crypto.keys.active_key` asks the database once a transaction for an
owner's active generation, locked FOR SHARE (rotation cannot retire it before
the writer commits). A statement that writes values can carry that question
itself instead (issue 11 item 7: one round trip fewer a stored message): the
values are encrypted under the generation this process used last for that
owner (`kept_key`, then `try_kept`), and the statement's WITH `active_check`
selects that key's row FOR SHARE, on its id, owner, wrapped bytes and state
'active', and gates every row it writes on that row (none found: nothing
written). When the row is found, the lock held and the key used are those
`active_key` would have taken (an owner has at most one active generation: a
unique index) and the key stays this transaction's (`settle_kept`). A
generation retired, shredded, rewrapped or replaced since (or an id of another
database) is never used: the statement writes nothing, the key is dropped here
and in this process, and the caller writes again the ordinary way (then
`keep_active`). No TTL: a shred anywhere is seen by the next checking statement.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import CTE, Insert, LargeBinary, String, Table, bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable, Select

from app.compiled_once import one_row
from app.crypto.keyring import Keyring
from app.crypto.keys import LoadedKey, cache_for, database_of
from app.crypto.models import DataKey

_data_keys = cast(Table, DataKey.__table__)
_KEPT: weakref.WeakKeyDictionary[Keyring, dict[tuple[str, str], LoadedKey]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_KEPT_MAX = 4096  # owners per keyring; beyond it the process starts over (bounded memory)


def kept_key(session: Session, owner: str) -> LoadedKey | None:
    """The owner's active key as this process last used it in this database, to write under in a statement that checks it;
    None when this transaction holds the owner's key already (no check needed) or none is kept."""
    cache = cache_for(session)
    if owner in cache.active:
        return None
    with _LOCK:
        return (_KEPT.get(cache.keyring) or {}).get((database_of(session), owner))


def try_kept(session: Session, key: LoadedKey) -> None:
    """Use a kept key as its owner's active one in this transaction until `settle_kept`: the values encrypted meanwhile
    must be written only by the statement that checks it (`active_check`)."""
    cache_for(session).active[key.owner] = key


def settle_kept(session: Session, key: LoadedKey, live: bool) -> None:
    """After the checking statement (`live`: it found the key's row) or an error before it (`live` False): keep `key` as
    the owner's active key of this transaction (that statement locked its row), or drop it here and in this process."""
    cache = cache_for(session)
    if live:
        cache.by_id[key.id] = key
        return
    if cache.active.get(key.owner) is key:
        del cache.active[key.owner]
    with _LOCK:
        (_KEPT.get(cache.keyring) or {}).pop((database_of(session), key.owner), None)


def keep_active(session: Session, owner: str) -> None:
    """Keep the owner's active key of this transaction (locked by `active_key`) for this process's later checked writes."""
    cache = cache_for(session)
    key = cache.active.get(owner)
    if key is None or not key.wrapped:
        return
    with _LOCK:
        kept = _KEPT.setdefault(cache.keyring, {})
        if len(kept) >= _KEPT_MAX:
            kept.clear()
        kept[(database_of(session), owner)] = key


def forget_kept_keys() -> None:
    """Forget every key this process kept (as a new process starts): the next write of each owner asks `active_key`."""
    with _LOCK:
        _KEPT.clear()


# The parameters of `active_check`: the kept key's id, owner and wrapped bytes (`active_check_params`).
CHECK_ID, CHECK_OWNER, CHECK_WRAPPED = "k_id", "k_owner", "k_wrapped"


def active_check() -> Select[Any]:
    """A SELECT of one row (the key's id) while the key of the parameters is its owner's active generation, unchanged,
    locked FOR SHARE as `active_key` locks it; no row otherwise. For a WITH that the statement's writes select from."""
    c = _data_keys.c
    same = (
        c.id == bindparam(CHECK_ID, type_=c.id.type),
        c.owner == bindparam(CHECK_OWNER, type_=String),
        c.wrapped_key == bindparam(CHECK_WRAPPED, type_=LargeBinary),
    )
    return select(c.id).where(*same, c.state == "active").with_for_update(read=True)


def gated_insert(table: Table, values: dict[str, Any], key_ok: CTE | None) -> Insert:
    """The INSERT of one row of `table` (`values`: column name -> its bind parameter): INSERT ... VALUES, or with `key_ok`
    (a WITH of `active_check`) INSERT ... SELECT FROM key_ok, which writes no row when the check found none."""
    if key_ok is None:
        return insert(table).values(values)
    return insert(table).from_select(list(values), select(*values.values()).select_from(key_ok))


def active_check_params(key: LoadedKey) -> dict[str, Any]:
    """The values of `active_check`'s parameters for `key`."""
    return {CHECK_ID: key.id, CHECK_OWNER: key.owner, CHECK_WRAPPED: key.wrapped}


Made = TypeVar("Made")


def write_checked(session: Session, owner: str, rows: Callable[[], tuple[Made, dict[str, Any]]], statement: Callable[[bool], Executable]) -> tuple[Any, Made]:
    """Run a writing statement of one result row under the owner's active key; (that row, what `rows` made for it).

    `rows()` encrypts the values (through `active_key`, as a flush does) and returns what it made and the statement's
    parameters; `statement(checked)` is the statement, which when `checked` writes nothing and returns no row unless its
    WITH of `active_check` finds the key (`active_check_params` are added). With a kept key, no key query: one checked
    statement. Else (or when that statement wrote nothing) `rows()` again under the key `active_key` locks, and the
    statement unchecked; that key is kept for the next transaction. Errors propagate (KeyShredded as from `active_key`).
    """
    kept = kept_key(session, owner)
    if kept is not None:
        found, live = None, False
        try_kept(session, kept)
        try:
            made, params = rows()
            found = one_row(session.connection(), statement(True), {**params, **active_check_params(kept)})
            live = found is not None
        finally:
            settle_kept(session, kept, live)
        if found is not None:
            return found, made
    made, params = rows()
    found = one_row(session.connection(), statement(False), params)
    if found is None:
        raise RuntimeError("a write under the owner's locked active key returned no row")
    keep_active(session, owner)
    return found, made
