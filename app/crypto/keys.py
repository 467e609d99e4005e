"""Loading, creating and caching data keys (Core statements on a connection; usable inside a flush)."""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Select, String, Table, and_, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.compiled_once import one_row
from app.crypto.cipher import DecryptionError, KeyShredded, unwrap_key, wrap_context, wrap_key
from app.crypto.keyring import WRAP, Keyring, KeyringError, keyring_for
from app.crypto.models import DataKey
from app.db import utcnow

PLATFORM = "platform"
data_keys = cast(Table, DataKey.__table__)
_CACHE = "dsr_desk_data_keys"


def owner_of(controller_id: int | None) -> str:
    """The owner label of a controller's keys, or of the platform's when None."""
    return PLATFORM if controller_id is None else f"controller:{controller_id}"


@dataclass(frozen=True)
class LoadedKey:
    """An unwrapped data key generation, ready to use."""

    id: int
    owner: str
    generation: int
    aead: AESGCM
    index_key: bytes
    wrapped: bytes = b""  # the wrapped form it came from: with the id, names this exact key (ids can be reused)


@dataclass
class KeyCache:
    """Unwrapped keys of one session's transaction (cleared when it ends, so a shred is seen)."""

    keyring: Keyring
    by_id: dict[int, LoadedKey] = field(default_factory=dict)
    # Each owner's active key once this transaction has locked it (FOR SHARE holds until the end of the
    # transaction), so writing many values asks once, not once per value. Dropped when a savepoint ends
    # (a rolled-back savepoint releases its row locks) and by anything that changes key states.
    active: dict[str, LoadedKey] = field(default_factory=dict)
    # Blind-index keys confirmed live in this transaction without loading their row (`remembered_index_key`).
    index: dict[str, bytes] = field(default_factory=dict)
    # Ids of keys found shredded in this transaction: a page of a shredded controller's rows asks once per key.
    shredded: set[int] = field(default_factory=set)


def cache_for(session: Session) -> KeyCache:
    """The key cache of a session's current transaction."""
    cache: KeyCache | None = session.info.get(_CACHE)
    if cache is None:
        cache = KeyCache(keyring_for(session))
        session.info[_CACHE] = cache
    return cache


def forget_keys(session: Session) -> None:
    """Drop a session's cached keys (transaction end, shredding)."""
    session.info.pop(_CACHE, None)


def forget_active_keys(session: Session) -> None:
    """Drop only which keys are active (a savepoint ended: the row locks taken inside it may be gone)."""
    cache: KeyCache | None = session.info.get(_CACHE)
    if cache is not None:
        cache.active.clear()


def unwrap_row(keyring: Keyring, row: Any) -> LoadedKey:
    """Unwrap a data_keys row; KeyShredded when shredded, DecryptionError when altered, KeyringError when its master secret is missing."""
    if row.state == "shredded" or row.wrapped_key is None or row.master_version is None:
        raise KeyShredded(f"data key {row.id} of {row.owner} was shredded: its values can no longer be decrypted")
    kek = keyring.derive(WRAP, row.master_version)
    key = unwrap_key(kek, row.wrapped_key, context=wrap_context(row.owner, row.generation, "data", row.master_version))
    index_key = unwrap_key(kek, row.wrapped_index_key, context=wrap_context(row.owner, row.generation, "index", row.master_version))
    return LoadedKey(row.id, row.owner, row.generation, AESGCM(key), index_key, bytes(row.wrapped_key))


def wrapped_pair(keyring: Keyring, owner: str, generation: int, key: bytes, index_key: bytes) -> dict[str, Any]:
    """Column values wrapping a key pair under the current master version."""
    version = keyring.current_version
    kek = keyring.derive(WRAP, version)
    return {
        "master_version": version,
        "wrapped_key": wrap_key(kek, key, context=wrap_context(owner, generation, "data", version)),
        "wrapped_index_key": wrap_key(kek, index_key, context=wrap_context(owner, generation, "index", version)),
    }


def load_key(conn: Connection, cache: KeyCache, key_id: int) -> LoadedKey:
    """A data key by id, from the cache or the database."""
    key = cache.by_id.get(key_id)
    if key is None:
        if key_id in cache.shredded:
            raise KeyShredded(f"data key {key_id} was shredded: its values can no longer be decrypted")
        row = conn.execute(select(data_keys).where(data_keys.c.id == key_id)).one_or_none()
        if row is None:
            raise DecryptionError(f"data key {key_id} does not exist (shredded or never created)")
        try:
            key = unwrap_row(cache.keyring, row)
        except KeyShredded:
            cache.shredded.add(key_id)
            raise
        cache.by_id[key_id] = key
    return key


def preload_keys(session: Session, key_ids: Iterable[int]) -> None:
    """Unwrap many data keys with one query (a page of rows under different controllers' keys: no N+1).

    Keys that are shredded or whose master secret is gone are left out: reading such a value reports it.
    """
    cache = cache_for(session)
    wanted = set(key_ids) - cache.by_id.keys()
    if not wanted:
        return
    for row in session.connection().execute(select(data_keys).where(data_keys.c.id.in_(wanted))):
        try:
            cache.by_id[row.id] = unwrap_row(cache.keyring, row)
        except (DecryptionError, KeyringError):
            continue


def insert_generation(conn: Connection, keyring: Keyring, owner: str, generation: int, *, index_key: bytes | None = None, state: str = "active") -> None:
    """Insert a new key generation unless a concurrent transaction already did (then it is a no-op)."""
    now = utcnow()
    controller_id = None if owner == PLATFORM else int(owner.split(":", 1)[1])
    values = {
        "owner": owner,
        "controller_id": controller_id,
        "generation": generation,
        "state": state,
        "created_at": now,
        "updated_at": now,
        **wrapped_pair(keyring, owner, generation, os.urandom(32), index_key or os.urandom(32)),
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(data_keys).values(**values).on_conflict_do_nothing())  # any unique index: a concurrent writer won


def active_key(conn: Connection, cache: KeyCache, owner: str) -> LoadedKey:
    """The owner's active key generation, created on first use (KeyShredded once its keys were shredded); asked of the database once a transaction."""
    known = cache.active.get(owner)
    if known is not None:
        return known
    for _attempt in range(3):
        row = conn.execute(_active_statement(), {"owner": owner}).one_or_none()
        if row is not None:
            key = cache.by_id.get(row.id) or unwrap_row(cache.keyring, row)
            cache.by_id[row.id] = key
            cache.active[owner] = key
            return key
        latest, live = conn.execute(
            select(func.max(data_keys.c.generation), func.count().filter(data_keys.c.state != "shredded")).where(data_keys.c.owner == owner)
        ).one()
        if latest is not None and not live:
            # Every key of this owner was destroyed (a shredded controller): a new key would silently make it a
            # holder of readable personal data again, so nothing new is written for it (the caller keeps it elsewhere).
            raise KeyShredded(f"the data keys of {owner} were destroyed (crypto-shredded): nothing new is stored under them")
        insert_generation(conn, cache.keyring, owner, (latest or 0) + 1)
    raise DecryptionError(f"could not create a data key for {owner}")


@functools.cache
def _active_statement() -> Select[Any]:
    # Built once (building it cost more CPU than running it). FOR SHARE (Postgres): rotation cannot retire this
    # key until the writer commits, so no value is written under a key rotation already passed.
    owner = data_keys.c.owner == bindparam("owner", type_=String)
    return select(data_keys).where(owner, data_keys.c.state == "active").with_for_update(read=True)


def find_index_key(conn: Connection, cache: KeyCache, owner: str) -> bytes | None:
    """The owner's blind-index key, or None when it has none yet (then nothing is indexed under it)."""
    known = cache.active.get(owner)
    if known is not None:
        # This transaction already holds the owner's active generation (locked FOR SHARE): it is the newest one.
        return known.index_key
    confirmed = cache.index.get(owner)
    if confirmed is not None:
        return confirmed
    row = conn.execute(
        select(data_keys).where(data_keys.c.owner == owner, data_keys.c.state.in_(("active", "retired"))).order_by(data_keys.c.generation.desc()).limit(1)
    ).one_or_none()
    if row is None:
        return None
    key = cache.by_id.get(row.id) or unwrap_row(cache.keyring, row)
    cache.by_id[row.id] = key
    return key.index_key


# Unwrapped index keys kept across transactions, by (database, key id, wrapped bytes). Never used on trust:
# `index_keys_of_controllers` reads the rows anew in its one statement (state active or retired, same wrapped
# bytes), so a key shredded or rewrapped since is not used; the cache only saves the unwrapping.
_INDEX_KEYS: dict[tuple[str, int, bytes], bytes] = {}
_INDEX_KEYS_MAX = 20_000
# Postgres: the whole answer for a SELECT of controller ids (the active controllers, at routing), kept with the
# fingerprint of the key rows it came from (SHA-256 over id, controller, generation, master version and wrapped
# index key of each row, in id order), and used only while a statement finds that fingerprint unchanged: one row
# comes back instead of a thousand (issue 11 item 7: 7 ms a request at 1,000 controllers). Any shred, rewrap, new
# generation or controller leaving or joining the selection changes it, in every process, with no TTL.
_INDEX_KEYSETS: weakref.WeakKeyDictionary[Keyring, dict[tuple[str, Any], tuple[bytes | None, dict[int, bytes]]]] = weakref.WeakKeyDictionary()


def _index_key_rows(controller_ids: Any, *, fingerprinted: bool) -> tuple[Any, Any]:
    """(the key rows' fingerprint alone, the rows) for `controller_ids`; with `fingerprinted` each row also carries the
    fingerprint (a scalar subquery, so the same snapshot as the rows): the SHA-256 of every row's id, controller,
    generation, master version and wrapped index key in id order, NULL when there is none (Postgres only)."""
    c = data_keys.c
    # The states as two comparisons, not IN of a tuple (an expanding parameter, rendered again on every execution).
    where = (c.controller_id.in_(controller_ids), or_(c.state == "active", c.state == "retired"))
    columns: list[Any] = [c.id, c.owner, c.controller_id, c.generation, c.master_version, c.wrapped_index_key]
    fingerprint = None
    if fingerprinted:
        version, wrapped = func.coalesce(c.master_version.cast(String), "-"), func.coalesce(func.encode(c.wrapped_index_key, "hex"), "-")
        listed = func.string_agg(func.concat_ws(".", c.id, c.controller_id, c.generation, version, wrapped), postgresql.aggregate_order_by(literal(","), c.id))
        fingerprint = select(func.sha256(func.convert_to(listed, "UTF8"))).where(*where).scalar_subquery()
        columns.append(fingerprint)
    return (select(fingerprint) if fingerprint is not None else None), select(*columns).where(*where).order_by(c.controller_id, c.generation.desc())


@functools.lru_cache(maxsize=16)
def _kept_statements(controller_ids: Select[Any]) -> tuple[Any, Any]:
    # Built once per kept selection (a module's constant SELECT: a new SELECT object each call would only miss;
    # the bound keeps that from growing): building them cost more CPU than running them.
    return _index_key_rows(controller_ids, fingerprinted=True)


def index_keys_of_controllers(session: Session, controller_ids: Any) -> dict[int, bytes]:
    """The blind-index key of each controller in `controller_ids` (a list or a SELECT of ids), in one query.

    Each controller's newest active or retired generation, as `find_index_key` picks per owner; controllers
    without keys are left out (nothing is indexed under them). The cost does not grow with queries per controller.
    For a SELECT on Postgres the answer is kept per process and re-checked by its fingerprint (`_INDEX_KEYSETS`).
    """
    conn, keyring, database = session.connection(), keyring_for(session), database_of(session)
    kept_for = isinstance(controller_ids, Select) and conn.dialect.name == "postgresql"
    fingerprint, read = _kept_statements(controller_ids) if kept_for else _index_key_rows(controller_ids, fingerprinted=False)
    slot = (database, controller_ids)
    if kept_for:
        with _REMEMBERED_LOCK:
            kept = (_INDEX_KEYSETS.get(keyring) or {}).get(slot)
        if kept is not None:
            checked = one_row(conn, fingerprint, {})  # built once (`_kept_statements`): compiled once, sent on the cursor
            if checked is not None and checked[0] == kept[0]:
                return dict(kept[1])
    rows = conn.execute(read).all()
    found: dict[int, bytes] = {}
    # Fetched at once and unpacked as tuples: iterating the result fetched row by row, and attribute access
    # on each of 1,000 rows was most of this function's own time (cProfile at 1,000 controllers).
    for key_id, owner, controller_id, generation, version, wrapped, *_ in rows:
        if controller_id in found or wrapped is None or version is None:
            continue
        slot_key = (database, key_id, bytes(wrapped))
        key = _INDEX_KEYS.get(slot_key)
        if key is None:
            kek = keyring.derive(WRAP, version)
            key = unwrap_key(kek, wrapped, context=wrap_context(owner, generation, "index", version))
            if len(_INDEX_KEYS) >= _INDEX_KEYS_MAX:
                _INDEX_KEYS.clear()
            _INDEX_KEYS[slot_key] = key
        found[controller_id] = key
    if kept_for:
        with _REMEMBERED_LOCK:
            sets = _INDEX_KEYSETS.setdefault(keyring, {})
            if len(sets) >= _REMEMBERED_MAX:
                sets.clear()
            sets[slot] = (rows[0][-1] if rows else None, dict(found))
    return found


# One owner's blind-index key kept across transactions, by (keyring, database, owner): the key generation it
# came from (id and wrapped bytes). An owner's index key is the same in every generation (rotation keeps it,
# app.keys.rotation), so a remembered one is right as long as that generation is still there unshredded;
# `index_key_check` is the clause that says so, for the caller to select in the statement that uses the key
# (no query of its own). Today only the platform's key is kept (the Message-ID hashes, app.crypto.message_ids).
_INDEX_OF_OWNER: weakref.WeakKeyDictionary[Keyring, dict[tuple[str, str], LoadedKey]] = weakref.WeakKeyDictionary()


def remember_index_key(session: Session, key: LoadedKey) -> None:
    """Keep `key`'s blind-index key for this process's later transactions (used only once checked: `index_key_check`)."""
    with _REMEMBERED_LOCK:
        _INDEX_OF_OWNER.setdefault(keyring_for(session), {})[(database_of(session), key.owner)] = key


def remembered_index_key(session: Session, owner: str) -> LoadedKey | None:
    """The owner's key generation this process remembers for its index key, or None."""
    with _REMEMBERED_LOCK:
        return (_INDEX_OF_OWNER.get(keyring_for(session)) or {}).get((database_of(session), owner))


def index_key_check(key: LoadedKey) -> ColumnElement[bool]:
    """A clause (EXISTS) true while `key`'s generation is in data_keys unchanged and not shredded: select it with the lookup."""
    same = and_(data_keys.c.id == key.id, data_keys.c.wrapped_key == key.wrapped, data_keys.c.owner == key.owner)
    # Two comparisons, not IN of a tuple: an IN list renders as an expanding parameter, re-rendered on every execution
    # (and so never sent by app.compiled_once on the cursor as the duplicate lookup that selects this clause is).
    usable = or_(data_keys.c.state == "active", data_keys.c.state == "retired")
    return select(data_keys.c.id).where(same, usable).exists()


def confirm_index_key(session: Session, key: LoadedKey, live: bool) -> None:
    """After the statement that checked it: use the index key in this transaction when `live`, else forget it in this process."""
    if live:
        cache_for(session).index[key.owner] = key.index_key
        return
    with _REMEMBERED_LOCK:
        (_INDEX_OF_OWNER.get(keyring_for(session)) or {}).pop((database_of(session), key.owner), None)


def set_state(conn: Connection, key_id: int, state: str) -> None:
    """Move a key generation to another state (the caller drops its session's key cache: forget_keys)."""
    conn.execute(update(data_keys).where(data_keys.c.id == key_id).values(state=state, updated_at=utcnow()))


# --- keys kept across transactions, re-checked inside the reader's own statement ---------------
#
# A list page (the ticket queue) would otherwise pay one data_keys query per request: the
# transaction cache above starts empty each time. An unwrapped key may be kept per process, but
# decrypting with a key that another process has shredded since must never happen, so a
# remembered key is never used on trust. The reader adds `live_remembered()` as a column of the
# statement that reads its rows (no extra round trip): it counts how many of the owner's
# remembered keys are still in data_keys unchanged (same id and same wrapped bytes) and not
# shredded, in that statement's own snapshot. Only when all of them are is the set copied into
# the transaction's cache (`adopt_remembered`); otherwise the owner's remembered keys are
# dropped and the keys load from the table as before (a rewrap also just causes a reload).
# So a shred committed before the reading statement is seen in every process, with no TTL; a
# shred committing while that statement runs is the same race a per-transaction load has.
# A shred in this process drops them at once as well (shred_controller_keys -> forget_remembered).

_REMEMBERED: weakref.WeakKeyDictionary[Keyring, dict[tuple[str, str], dict[int, LoadedKey]]] = weakref.WeakKeyDictionary()
_REMEMBERED_LOCK = threading.Lock()
_REMEMBERED_MAX = 4096  # keys per keyring; beyond it the process starts over (bounded memory)


def database_of(session: Session) -> str:
    """The URL of the session's database, naming it in the per-process key caches (key ids are per database)."""
    bind = session.get_bind()
    return str(bind.engine.url)  # engine or connection: key ids are per database


def remembered(session: Session, owner: str) -> dict[int, LoadedKey]:
    """The keys of `owner` this process remembers for this session's database and keyring."""
    with _REMEMBERED_LOCK:
        owners = _REMEMBERED.get(keyring_for(session)) or {}
        return dict(owners.get((database_of(session), owner), {}))


def live_remembered(keys: dict[int, LoadedKey], owner: str) -> ColumnElement[int]:
    """A scalar subquery: how many of these remembered keys are still live, unchanged (add it to the reading statement)."""
    # Id AND wrapped bytes: a rolled-back or deleted id used again (SQLite reuses rowids) is another key.
    same = or_(*(and_(data_keys.c.id == key.id, data_keys.c.wrapped_key == key.wrapped) for key in keys.values()))
    live = select(func.count()).select_from(data_keys).where(same, data_keys.c.owner == owner, data_keys.c.state != "shredded")
    return live.scalar_subquery()


def adopt_remembered(session: Session, owner: str, keys: dict[int, LoadedKey], live: int | None) -> None:
    """Use the checked keys in this transaction when the statement found every one live; else forget the owner's."""
    if not keys:
        return
    if live == len(keys):
        cache_for(session).by_id.update(keys)
        return
    with _REMEMBERED_LOCK:
        # Shredded, deleted or rewrapped since: never used again; the keys load from the table.
        (_REMEMBERED.get(keyring_for(session)) or {}).pop((database_of(session), owner), None)


def remember_keys(session: Session, owner: str) -> None:
    """Keep the owner's keys this transaction unwrapped, for later requests of this process (checked before each use)."""
    cache = cache_for(session)
    loaded = {key_id: key for key_id, key in cache.by_id.items() if key.owner == owner}
    if not loaded:
        return
    with _REMEMBERED_LOCK:
        owners = _REMEMBERED.setdefault(cache.keyring, {})
        if sum(len(keys) for keys in owners.values()) >= _REMEMBERED_MAX:
            owners.clear()
        owners.setdefault((database_of(session), owner), {}).update(loaded)


def forget_remembered(owner: str | None = None) -> None:
    """Drop remembered keys of one owner (or all) in this process: a shred here needs no check to take effect."""
    with _REMEMBERED_LOCK:
        for owners in _REMEMBERED.values():
            for where in [w for w in owners if owner is None or w[1] == owner]:
                del owners[where]
        for kept in _INDEX_OF_OWNER.values():
            for where in [w for w in kept if owner is None or w[1] == owner]:
                del kept[where]
        for sets in _INDEX_KEYSETS.values():
            sets.clear()  # a controller's shred here: every kept set that may hold its key
