"""Period keys: one data key per UTC calendar month of a purpose, wrapped like every data key (Core on a connection).

What is written under a period key is never rewritten (the personal parts of audit events sit in
append-only rows), so a period key has no generations: it is created on first use in its month,
re-wrapped by `keys rotate` under the current master version, and crypto-shredded by retention
once the whole month is past its period. Shredding removes the key material (wrapped key and
master version) and keeps the row, state "shredded", as the record of when.

The wrapped key's associated data is `wrap_context("<purpose>:<YYYY-MM>", 1, "data", version)`
(app.crypto.cipher), so a wrapped key moved to another month or purpose does not unwrap.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Table, and_, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from app.crypto.cipher import DecryptionError, unwrap_key, wrap_context, wrap_key
from app.crypto.keyring import WRAP, Keyring, KeyringError, keyring_for
from app.crypto.models import PeriodKey

AUDIT = "audit"
period_keys = cast(Table, PeriodKey.__table__)
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CACHE = "dsr_desk_period_keys"


def period_of(at: dt.datetime) -> str:
    """The UTC calendar month of an instant, "YYYY-MM"; ValueError for a naive datetime."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given where UTC is required")
    return at.astimezone(dt.UTC).strftime("%Y-%m")


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a "YYYY-MM" period in UTC; ValueError when malformed."""
    match = _PERIOD.match(period)
    if match is None:
        raise ValueError(f"a period is YYYY-MM, not {period!r}")
    year, month = int(match.group(1)), int(match.group(2))
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def _owner(purpose: str, period: str) -> str:
    return f"{purpose}:{period}"


@dataclass(frozen=True)
class LoadedPeriodKey:
    """An unwrapped period key."""

    id: int
    purpose: str
    period: str
    aead: AESGCM


@dataclass
class _Cache:
    keyring: Keyring
    by_id: dict[int, LoadedPeriodKey]
    by_period: dict[tuple[str, str], LoadedPeriodKey]


def _cache(session: Session) -> _Cache:
    cache: _Cache | None = session.info.get(_CACHE)
    keyring = keyring_for(session)
    if cache is None or cache.keyring is not keyring:
        cache = _Cache(keyring, {}, {})
        session.info[_CACHE] = cache
    return cache


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    # Unwrapped period keys live no longer than a transaction: a shred in another process is seen by the next one.
    if transaction.parent is None:
        session.info.pop(_CACHE, None)


def _unwrap(keyring: Keyring, row: Any) -> LoadedPeriodKey:
    if row.state == "shredded" or row.wrapped_key is None or row.master_version is None:
        raise DecryptionError(f"the {row.purpose} key of period {row.period} was shredded")
    kek = keyring.derive(WRAP, row.master_version)
    key = unwrap_key(kek, bytes(row.wrapped_key), context=wrap_context(_owner(row.purpose, row.period), 1, "data", row.master_version))
    return LoadedPeriodKey(row.id, row.purpose, row.period, AESGCM(key))


def key_for_period(session: Session, purpose: str, period: str, *, now: dt.datetime) -> LoadedPeriodKey | None:
    """The period's key, created on first use (flush-free Core insert); None when it was shredded."""
    cache = _cache(session)
    known = cache.by_period.get((purpose, period))
    if known is not None:
        return known
    conn = session.connection()
    where = and_(period_keys.c.purpose == purpose, period_keys.c.period == period)
    row = conn.execute(select(period_keys).where(where)).one_or_none()
    if row is None:
        version = cache.keyring.current_version
        kek = cache.keyring.derive(WRAP, version)
        values = {
            "purpose": purpose,
            "period": period,
            "state": "active",
            "master_version": version,
            "wrapped_key": wrap_key(kek, os.urandom(32), context=wrap_context(_owner(purpose, period), 1, "data", version)),
            "created_at": now,
        }
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(period_keys).values(**values).on_conflict_do_nothing())  # a concurrent writer won: use its key
        row = conn.execute(select(period_keys).where(where)).one()
    if row.state == "shredded":
        return None
    key = _unwrap(cache.keyring, row)
    cache.by_period[(purpose, period)] = cache.by_id[key.id] = key
    return key


def load_period_keys(session: Session, key_ids: Iterable[int]) -> dict[int, LoadedPeriodKey | str]:
    """Each key id's unwrapped key, or why it cannot be used: "shredded", "missing", or "master key version N not configured"."""
    cache = _cache(session)
    wanted = set(key_ids)
    found: dict[int, LoadedPeriodKey | str] = {k: cache.by_id[k] for k in wanted if k in cache.by_id}
    rest = wanted - found.keys()
    if rest:
        for row in session.connection().execute(select(period_keys).where(period_keys.c.id.in_(sorted(rest)))):
            if row.state == "shredded":
                found[row.id] = "shredded"
                continue
            try:
                key = _unwrap(cache.keyring, row)
            except KeyringError:
                found[row.id] = f"master key version {row.master_version} not configured"
                continue
            except DecryptionError:
                found[row.id] = "key does not unwrap"
                continue
            cache.by_id[row.id] = cache.by_period[(row.purpose, row.period)] = key
            found[row.id] = key
    return {k: found.get(k, "missing") for k in wanted}


def rewrap_period_keys(conn: Connection, keyring: Keyring, *, now: dt.datetime) -> Counter[int]:
    """Re-wrap every live period key under the current master version; how many moved, by the version they left."""
    current = keyring.current_version
    stale = conn.execute(select(period_keys).where(period_keys.c.state == "active", period_keys.c.master_version != current)).all()
    kek = keyring.derive(WRAP, current)
    moved: Counter[int] = Counter()
    for row in stale:
        owner = _owner(row.purpose, row.period)
        key = unwrap_key(keyring.derive(WRAP, row.master_version), bytes(row.wrapped_key), context=wrap_context(owner, 1, "data", row.master_version))
        rewrapped = wrap_key(kek, key, context=wrap_context(owner, 1, "data", current))
        # Compare-and-swap: a concurrent rewrap or shred of the same key wins.
        done = conn.execute(
            update(period_keys)
            .where(period_keys.c.id == row.id, period_keys.c.state == "active", period_keys.c.wrapped_key == row.wrapped_key)
            .values(master_version=current, wrapped_key=rewrapped)
        )
        if done.rowcount:
            moved[row.master_version] += 1
    return moved


def live_period_keys_by_version(conn: Connection) -> Counter[int]:
    """How many live period keys each master version wraps (its secret is needed while any does)."""
    rows = conn.execute(select(period_keys.c.master_version).where(period_keys.c.state == "active"))
    return Counter(int(v) for (v,) in rows if v is not None)


def shred_period_keys(session: Session, purpose: str, periods: Iterable[str], *, now: dt.datetime) -> list[str]:
    """Destroy the keys of these periods (key material gone, row kept as "shredded"); the periods actually shredded now."""
    wanted = sorted(set(periods))
    if not wanted:
        return []
    conn = session.connection()
    where = and_(period_keys.c.purpose == purpose, period_keys.c.period.in_(wanted), period_keys.c.state == "active")
    live = sorted(conn.execute(select(period_keys.c.period).where(where)).scalars())
    if live:
        conn.execute(update(period_keys).where(where).values(state="shredded", wrapped_key=None, master_version=None, shredded_at=now))
    session.info.pop(_CACHE, None)
    return live
