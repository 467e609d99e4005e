"""Key management: status, re-wrapping under the current master version, crypto-shredding.

Core, above the platform: it uses the crypto primitives (app.crypto) and
records every operation in the audit log (app.audit) with ids and counts only.
The audit checkpoints are signed with the same keyring, so app.audit may use
app.crypto, and app.crypto (primitives only) imports neither audit nor this
package. The encrypted columns are those registered in app.crypto.fields.FIELDS
when the models were imported: create_app imports every model (app.models).
Services flush; the CLI commits.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, and_, func, select, update
from sqlalchemy.orm import Session

from app.audit.service import record
from app.crypto.cipher import HEADER, unwrap_key, wrap_context, wrap_key
from app.crypto.fields import FIELDS, FieldSpec
from app.crypto.keyring import WRAP, keyring_for
from app.crypto.keys import data_keys, forget_keys, forget_remembered, owner_of
from app.crypto.periods import live_period_keys_by_version, rewrap_period_keys
from app.crypto.startup import check_versions_in_use
from app.db import table_of_model
from app.principal import Principal


@dataclass
class VersionStatus:
    """What still depends on one master key version."""

    version: int
    variable: str
    configured: bool
    current: bool
    data_keys: int = 0
    values: int = 0
    period_keys: int = 0  # audit period keys (app.crypto.periods) wrapped under this version
    signs_newest_checkpoint: bool = False  # the newest audit checkpoint can only be verified with this version's secret

    @property
    def removable(self) -> bool:
        """An old secret may be removed once no data key is wrapped under it and the newest audit checkpoint is not signed with it."""
        return not self.current and self.data_keys == 0 and self.period_keys == 0 and not self.signs_newest_checkpoint


@dataclass
class KeyStatus:
    """The keyring against the database."""

    current_version: int
    versions: list[VersionStatus]
    values_on_retired_keys: int
    shredded_keys: int
    fields: list[str] = field(default_factory=list)


def table_of(spec: FieldSpec) -> Table:
    """The Core table of an encrypted field."""
    return table_of_model(spec.model)


def values_by_key(conn: Connection) -> Counter[int]:
    """How many stored values each data key encrypts, over every registered encrypted column."""
    counts: Counter[int] = Counter()
    for spec in FIELDS:
        column = table_of(spec).c[spec.column]
        ref = func.substr(column, 2, HEADER.size - 1)
        for key_ref, n in conn.execute(select(ref, func.count()).where(column.is_not(None)).group_by(ref)):
            if key_ref is not None and len(key_ref) == HEADER.size - 1:
                counts[int.from_bytes(bytes(key_ref), "big")] += n
    return counts


def key_status(session: Session, *, newest_checkpoint_version: int | None = None) -> KeyStatus:
    """Per master version: data keys wrapped under it and values depending on it; whether its secret may go.

    `newest_checkpoint_version` is the master version that signed the newest audit checkpoint
    (app.audit.checkpoint.last_checkpoint): `audit verify` needs that secret until a newer
    checkpoint is signed under the current version.
    """
    keyring = keyring_for(session)
    conn = session.connection()
    per_key = values_by_key(conn)
    rows = conn.execute(select(data_keys.c.id, data_keys.c.state, data_keys.c.master_version)).all()
    versions = {v: VersionStatus(v, keyring.variable(v), True, v == keyring.current_version) for v in keyring.versions}
    retired_values = 0
    shredded = 0
    for key_id, state, version in rows:
        if state == "shredded":
            shredded += 1
            continue
        status = versions.setdefault(version, VersionStatus(version, keyring.variable(version), False, False))
        status.data_keys += 1
        status.values += per_key.get(key_id, 0)
        if state == "retired":
            retired_values += per_key.get(key_id, 0)
    for version, n in live_period_keys_by_version(conn).items():
        versions.setdefault(version, VersionStatus(version, keyring.variable(version), keyring.has_version(version), False)).period_keys += n
    if newest_checkpoint_version is not None:
        signer = newest_checkpoint_version
        versions.setdefault(signer, VersionStatus(signer, keyring.variable(signer), keyring.has_version(signer), False)).signs_newest_checkpoint = True
    return KeyStatus(
        keyring.current_version,
        sorted(versions.values(), key=lambda s: s.version),
        retired_values,
        shredded,
        [f"{s.table}.{s.column}" for s in FIELDS],
    )


def rewrap_keys(session: Session, *, by: Principal, now: dt.datetime) -> int:
    """Re-wrap every live data key and audit period key under the current master version; returns how many moved."""
    keyring = keyring_for(session)
    conn = session.connection()
    check_versions_in_use(conn, keyring)
    current = keyring.current_version
    stale = conn.execute(select(data_keys).where(data_keys.c.state != "shredded", data_keys.c.master_version != current)).all()
    kek = keyring.derive(WRAP, current)
    moved: Counter[int] = Counter()
    for row in stale:
        old_kek = keyring.derive(WRAP, row.master_version)
        values = {"master_version": current, "updated_at": now}
        for kind, column in (("data", "wrapped_key"), ("index", "wrapped_index_key")):
            key = unwrap_key(old_kek, getattr(row, column), context=wrap_context(row.owner, row.generation, kind, row.master_version))
            values[column] = wrap_key(kek, key, context=wrap_context(row.owner, row.generation, kind, current))
        # Compare-and-swap: a concurrent rewrap or shred of the same key wins, this one skips it.
        done = conn.execute(
            update(data_keys)
            .where(and_(data_keys.c.id == row.id, data_keys.c.master_version == row.master_version, data_keys.c.wrapped_key == row.wrapped_key))
            .values(**values)
        )
        if done.rowcount:
            moved[row.master_version] += 1
    moved_periods = rewrap_period_keys(conn, keyring, now=now)
    moved.update(moved_periods)
    forget_keys(session)
    record(
        session,
        by=by,
        action="keys.rewrap",
        target_type="data_keys",
        details={
            "rewrapped": sum(moved.values()),
            "period_keys": sum(moved_periods.values()),
            "to_version": current,
            "from_versions": {f"v{v}": n for v, n in sorted(moved.items())},
        },
        now=now,
    )
    return sum(moved.values())


def shred_controller_keys(session: Session, controller_id: int, *, by: Principal, now: dt.datetime) -> int:
    """Destroy a controller's data and index keys: none of its encrypted values can be decrypted again.

    Copies in backups become unreadable once the master versions that wrapped
    the keys in those backups are retired (DESIGN.md, "Crypto-shredding").
    Returns the number of key generations destroyed; a second call destroys none.
    """
    conn = session.connection()
    owner = owner_of(controller_id)
    destroyed = conn.execute(
        update(data_keys)
        .where(data_keys.c.owner == owner, data_keys.c.state != "shredded")
        .values(state="shredded", wrapped_key=None, wrapped_index_key=None, master_version=None, updated_at=now)
    ).rowcount
    forget_keys(session)
    forget_remembered(owner)  # other processes see the shred in their next reading statement (app.crypto.keys)
    record(
        session,
        by=by,
        action="keys.shred",
        target_type="controller",
        target_id=controller_id,
        controller_id=controller_id,
        details={"keys_destroyed": destroyed},
        now=now,
    )
    return int(destroyed)
