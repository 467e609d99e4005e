"""Loading, creating and caching data keys (Core statements on a connection; usable inside a flush)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.crypto.cipher import DecryptionError, unwrap_key, wrap_context, wrap_key
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


@dataclass
class KeyCache:
    """Unwrapped keys of one session's transaction (cleared when it ends, so a shred is seen)."""

    keyring: Keyring
    by_id: dict[int, LoadedKey] = field(default_factory=dict)


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


def unwrap_row(keyring: Keyring, row: Any) -> LoadedKey:
    """Unwrap a data_keys row; DecryptionError when shredded or altered, KeyringError when its master secret is missing."""
    if row.state == "shredded" or row.wrapped_key is None or row.master_version is None:
        raise DecryptionError(f"data key {row.id} of {row.owner} was shredded: its values can no longer be decrypted")
    kek = keyring.derive(WRAP, row.master_version)
    key = unwrap_key(kek, row.wrapped_key, context=wrap_context(row.owner, row.generation, "data", row.master_version))
    index_key = unwrap_key(kek, row.wrapped_index_key, context=wrap_context(row.owner, row.generation, "index", row.master_version))
    return LoadedKey(row.id, row.owner, row.generation, AESGCM(key), index_key)


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
        row = conn.execute(select(data_keys).where(data_keys.c.id == key_id)).one_or_none()
        if row is None:
            raise DecryptionError(f"data key {key_id} does not exist (shredded or never created)")
        key = unwrap_row(cache.keyring, row)
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
    """The owner's active key generation, created on first use."""
    for _attempt in range(3):
        # FOR SHARE (Postgres): rotation cannot retire this key until the writer
        # commits, so no value is written under a key rotation already passed.
        active = select(data_keys).where(data_keys.c.owner == owner, data_keys.c.state == "active").with_for_update(read=True)
        row = conn.execute(active).one_or_none()
        if row is not None:
            key = cache.by_id.get(row.id) or unwrap_row(cache.keyring, row)
            cache.by_id[row.id] = key
            return key
        latest = conn.execute(select(func.max(data_keys.c.generation)).where(data_keys.c.owner == owner)).scalar()
        insert_generation(conn, cache.keyring, owner, (latest or 0) + 1)
    raise DecryptionError(f"could not create a data key for {owner}")


def find_index_key(conn: Connection, cache: KeyCache, owner: str) -> bytes | None:
    """The owner's blind-index key, or None when it has none yet (then nothing is indexed under it)."""
    row = conn.execute(
        select(data_keys).where(data_keys.c.owner == owner, data_keys.c.state.in_(("active", "retired"))).order_by(data_keys.c.generation.desc()).limit(1)
    ).one_or_none()
    if row is None:
        return None
    key = cache.by_id.get(row.id) or unwrap_row(cache.keyring, row)
    cache.by_id[row.id] = key
    return key.index_key


def set_state(conn: Connection, key_id: int, state: str) -> None:
    """Move a key generation to another state."""
    conn.execute(update(data_keys).where(data_keys.c.id == key_id).values(state=state, updated_at=utcnow()))
