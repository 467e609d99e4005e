"""`keys rotate --reencrypt`: new data keys, every encrypted value moved onto them, in resumable batches.

The job is a loop of small transactions, each committing its batch together
with the cursor in `job_state`, so a crash (kill -9) at any point leaves either
the batch and its cursor or neither; the rerun continues from the cursor. A
value is rotated only if it still names a retired key, so nothing is encrypted
twice; each UPDATE compares the stored value's header and nonce with what was
read (compare-and-swap), so a value the web app wrote meanwhile is never
overwritten with stale data. Rows are walked by id range (bounded batches, no
full-table joins). A last count over every encrypted column must find no value
left on a retired key before the retired keys are destroyed; otherwise another
pass runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from app.audit.service import record
from app.crypto.cipher import HEADER, NONCE_BYTES, DecryptionError, decrypt_field, encrypt_field, key_id_of
from app.crypto.fields import FIELDS, FieldSpec
from app.crypto.keyring import keyring_for
from app.crypto.keys import KeyCache, LoadedKey, active_key, data_keys, forget_keys, insert_generation, load_key, set_state, unwrap_row
from app.crypto.service import rewrap_keys, table_of, values_by_key
from app.exceptions import DeskError
from app.jobs.service import clear_state, get_state, save_state
from app.principal import Principal

JOB = "keys.reencrypt"
BATCH_ROWS = 5000
MAX_PASSES = 10
BATCH_BYTES = 32 * 1024 * 1024
# Header + nonce identify one encryption of one value: comparing them is the
# compare-and-swap, without shipping the whole old ciphertext back.
PREFIX = HEADER.size + NONCE_BYTES


class RotationError(DeskError):
    """The rotation cannot continue (a value does not decrypt, or it does not converge)."""


class RotationStopped(Exception):
    """Stopped on request after a committed batch; the message says where (the saved cursor)."""


@dataclass
class RotationResult:
    """What one run did."""

    resumed: bool
    rotated: int
    passes: int
    keys_destroyed: int


def field_name(spec: FieldSpec) -> str:
    """`table.column` of an encrypted field."""
    return f"{spec.table}.{spec.column}"


def fields() -> list[FieldSpec]:
    """Every encrypted column of every model, in a stable order."""
    import app.models  # noqa: F401  (registers every model's encrypted fields)

    return sorted(FIELDS, key=field_name)


def start(session: Session, *, by: Principal, now: dt.datetime) -> tuple[dict[str, Any], bool]:
    """Begin a rotation (re-wrap, retire the active keys, create their successors) or return the saved cursor."""
    saved = get_state(session, JOB)
    if saved is not None:
        return saved, True
    rewrap_keys(session, by=by, now=now)
    conn = session.connection()
    keyring = keyring_for(session)
    for row in conn.execute(select(data_keys).where(data_keys.c.state == "active")).all():
        index_key = unwrap_row(keyring, row).index_key  # kept, so blind indexes stay valid
        set_state(conn, row.id, "retired")
        insert_generation(conn, keyring, row.owner, row.generation + 1, index_key=index_key)
    forget_keys(session)  # nothing later in this transaction may still use a key just retired
    retiring = sorted(conn.execute(select(data_keys.c.id).where(data_keys.c.state == "retired")).scalars())
    state: dict[str, Any] = {"retiring": retiring, "done": [], "field": None, "after_id": 0, "pass": 1, "rotated": 0}
    save_state(session, JOB, state, now=now)
    record(session, by=by, action="keys.reencrypt.start", target_type="data_keys", details={"keys_retired": len(retiring)}, now=now)
    return state, False


def describe_progress(session: Session) -> str | None:
    """Where a started re-encryption stands (its saved cursor), or None when none is under way."""
    state = get_state(session, JOB)
    if state is None:
        return None
    at = f"column {state['field']} after id {state['after_id']}" if state.get("field") else "between columns"
    done = len(state.get("done") or [])
    return f"pass {state.get('pass', 1)}, {done} of {len(fields())} columns done, {at}, {state.get('rotated', 0)} values re-encrypted so far"


class _Keys:
    """Old and new keys of one batch (reloaded every batch, so a concurrent shred is honoured)."""

    def __init__(self, conn: Connection, session: Session, retiring: set[int]) -> None:
        self.conn = conn
        self.cache = KeyCache(keyring_for(session))
        self.retiring = retiring
        self.new: dict[str, LoadedKey] = {}

    def old(self, key_id: int) -> LoadedKey:
        return load_key(self.conn, self.cache, key_id)

    def successor(self, owner: str) -> LoadedKey:
        key = self.new.get(owner)
        if key is None:
            key = self.new[owner] = active_key(self.conn, self.cache, owner)
        return key


def rotate_batch(conn: Connection, spec: FieldSpec, lo: int, hi: int, keys: _Keys) -> int:
    """Re-encrypt the values of ids in (lo, hi] still on a retired key; returns how many were written."""
    table = table_of(spec)
    column = table.c[spec.column]
    rows = conn.execute(select(table.c.id, table.c.row_uid, column).where(table.c.id > lo, table.c.id <= hi, column.is_not(None))).all()
    out: list[tuple[int, bytes, bytes]] = []
    for row_id, row_uid, stored in rows:
        blob = bytes(stored)
        key_id = key_id_of(blob, where=f"{spec.table}.{spec.column} id {row_id}")
        if key_id not in keys.retiring:
            continue
        old = keys.old(key_id)
        new = keys.successor(old.owner)
        try:
            plain = decrypt_field(old.aead, blob, table=spec.table, column=spec.aad_column, row_uid=row_uid)
        except DecryptionError as exc:
            raise RotationError(f"{exc} (id {row_id}); fix or remove the value, then rerun") from None
        out.append((row_id, blob[:PREFIX], encrypt_field(new.aead, new.id, plain, table=spec.table, column=spec.aad_column, row_uid=row_uid)))
    if not out:
        return 0
    if conn.dialect.name == "postgresql":
        return _write_postgres(conn, spec, lo, hi, out)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), func.substr(column, 1, PREFIX) == bindparam("b_prefix"))
        .values({spec.column: bindparam("b_value")})
    )
    result = conn.execute(stmt, [{"b_id": i, "b_prefix": p, "b_value": v} for i, p, v in out])
    return int(result.rowcount)


def _write_postgres(conn: Connection, spec: FieldSpec, lo: int, hi: int, out: list[tuple[int, bytes, bytes]]) -> int:
    # Binary COPY into a temp table and one UPDATE ... FROM bounded by the id
    # range: an order of magnitude faster than row-by-row UPDATEs (PERFORMANCE.md).
    from psycopg import sql

    raw = conn.connection.driver_connection
    assert raw is not None  # a live connection of this transaction
    with raw.cursor() as cur:
        if not conn.info.get("desk_rotation_tmp"):
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS desk_rotation (id bigint, prefix bytea, value bytea) ON COMMIT DELETE ROWS")
            conn.info["desk_rotation_tmp"] = True
        with cur.copy("COPY desk_rotation (id, prefix, value) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "bytea", "bytea"])
            for item in out:
                copy.write_row(item)
        query = sql.SQL(
            "UPDATE {table} AS t SET {column} = r.value FROM desk_rotation AS r "
            "WHERE t.id = r.id AND substr(t.{column}, 1, {prefix}) = r.prefix AND t.id > %s AND t.id <= %s"
        ).format(table=sql.Identifier(spec.table), column=sql.Identifier(spec.column), prefix=sql.Literal(PREFIX))
        cur.execute(query, (lo, hi))
        written = cur.rowcount
        cur.execute("DELETE FROM desk_rotation")
    return int(written)


def remaining(conn: Connection, retiring: set[int]) -> int:
    """Values still on a retired key, over every encrypted column."""
    return sum(n for key_id, n in values_by_key(conn).items() if key_id in retiring)


def byte_capped_end(conn: Connection, spec: FieldSpec, lo: int, hi: int) -> int:
    """The end of a batch starting after `lo` that holds at most BATCH_BYTES of ciphertext (at least one row)."""
    table = table_of(spec)
    column = table.c[spec.column]
    sizes = conn.execute(select(table.c.id, func.length(column)).where(table.c.id > lo, table.c.id <= hi).order_by(table.c.id))
    total = 0
    end = lo
    for row_id, size in sizes:
        total += size or 0
        if total > BATCH_BYTES and end > lo:
            return end
        end = row_id
    return hi


def max_id(conn: Connection, spec: FieldSpec) -> int:
    """The highest id of a field's table (rows added later are written under the new keys)."""
    table = table_of(spec)
    return int(conn.execute(select(func.max(table.c.id))).scalar() or 0)


def run(
    session: Session,
    *,
    by: Principal,
    clock: Callable[[], dt.datetime],
    batch_rows: int = BATCH_ROWS,
    on_total: Callable[[int], None] = lambda _n: None,
    on_progress: Callable[[int], None] = lambda _n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RotationResult:
    """Run (or resume) the re-encryption to the end; commits after every batch (this is the job's edge).

    `should_stop` is asked after each committed batch: when it says so, RotationStopped is raised with the
    saved cursor (a rerun resumes from it).
    """
    state, resumed = start(session, by=by, now=clock())
    session.commit()
    retiring = set(state["retiring"])
    specs = fields()
    while True:
        conn = session.connection()
        todo = [s for s in specs if field_name(s) not in state["done"]]
        spans = {field_name(s): (state["after_id"] if state["field"] == field_name(s) else 0, max_id(conn, s)) for s in todo}
        on_total(sum(max(0, top - start_at) for start_at, top in spans.values()))
        for spec in todo:
            name = field_name(spec)
            after, top = spans[name]
            while after < top:
                hi = min(after + batch_rows, top)
                if spec.binary:  # blobs: cap the bytes a batch holds in memory, not only its rows
                    hi = byte_capped_end(session.connection(), spec, after, hi)
                conn = session.connection()
                state["rotated"] += rotate_batch(conn, spec, after, hi, _Keys(conn, session, retiring))
                state.update(field=name, after_id=hi)
                save_state(session, JOB, state, now=clock())
                session.commit()
                on_progress(hi - after)
                after = hi
                if should_stop():
                    raise RotationStopped(describe_progress(session) or "before the first batch")
            state["done"].append(name)
            state.update(field=None, after_id=0)
            save_state(session, JOB, state, now=clock())
            session.commit()
        left = remaining(session.connection(), retiring)
        if not left:
            break
        if state["pass"] >= MAX_PASSES:
            raise RotationError(f"{left} values are still on retired keys after {MAX_PASSES} passes; rerun keys rotate --reencrypt")
        state.update(done=[], field=None, after_id=0, **{"pass": state["pass"] + 1})
        save_state(session, JOB, state, now=clock())
        session.commit()
    conn = session.connection()
    destroyed = conn.execute(delete(data_keys).where(data_keys.c.id.in_(retiring), data_keys.c.state == "retired")).rowcount
    clear_state(session, JOB)
    record(
        session,
        by=by,
        action="keys.reencrypt.done",
        target_type="data_keys",
        details={"values_rotated": state["rotated"], "passes": state["pass"], "keys_destroyed": destroyed},
        now=clock(),
    )
    session.commit()
    return RotationResult(resumed, int(state["rotated"]), int(state["pass"]), int(destroyed))
