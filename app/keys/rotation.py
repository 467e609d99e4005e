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
from app.exceptions import DeskError
from app.jobs.batch import Clock, SessionScope, in_transaction, run_batches
from app.jobs.service import clear_state, get_state, save_state
from app.keys.service import rewrap_keys, table_of, values_by_key
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


class RotationStopped(DeskError):
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
    """Every encrypted column of every imported model, in a stable order.

    A model's fields register themselves when its module is imported; create_app imports every
    model (app.models), so in any process that created the app this is every encrypted column.
    """
    return sorted(FIELDS, key=field_name)


def start(session: Session, *, by: Principal, now: dt.datetime) -> tuple[dict[str, Any], bool]:
    """Begin a rotation (re-wrap, retire the active keys, create their successors) or return the saved cursor."""
    saved = get_state(session, JOB)
    if saved is not None:
        return saved, True
    conn = session.connection()
    # The active keys' rows first, then the audit chain (rewrap_keys records): the order every writer takes them in
    # (a write holds its key FOR SHARE until it commits, and appends its audit events last); the other way round, a
    # rotation starting while a write waited for the chain lock was a deadlock.
    conn.execute(select(data_keys.c.id).where(data_keys.c.state == "active").order_by(data_keys.c.id).with_for_update()).all()
    rewrap_keys(session, by=by, now=now)
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


class _Run:
    """One run's cursor (kept in memory, saved with every batch) and what it reports between batches."""

    def __init__(self, specs: list[FieldSpec], batch_rows: int, on_total: Callable[[int], None], on_progress: Callable[[int], None]) -> None:
        self.specs = specs
        self.batch_rows = batch_rows
        self.on_total = on_total
        self.on_progress = on_progress
        self.state: dict[str, Any] = {}
        self.retiring: set[int] = set()
        self.tops: dict[str, int] = {}
        self.resumed = False
        self.destroyed = 0
        self._moved = 0
        self._total: int | None = None

    def plan(self, conn: Connection) -> None:
        """Fix this pass's end of each column still to do (rows added later are written under the new keys)."""
        todo = [s for s in self.specs if field_name(s) not in self.state["done"]]
        self.tops = {field_name(s): max_id(conn, s) for s in todo}
        after = {self.state["field"]: self.state["after_id"]} if self.state.get("field") else {}
        self._total = sum(max(0, top - after.get(name, 0)) for name, top in self.tops.items())

    def begin(self, session: Session, now: dt.datetime, *, by: Principal) -> None:
        """Start or resume (first transaction): re-wrap, retire the active keys, plan the pass."""
        self.state, self.resumed = start(session, by=by, now=now)
        self.retiring = set(self.state["retiring"])
        self.plan(session.connection())

    def step(self, session: Session, now: dt.datetime, *, by: Principal) -> bool:
        """One batch in its own transaction: re-encrypt up to `batch_rows` ids of the current column, or close a
        column, or start the next pass, or (nothing left on a retired key) destroy the retired keys; True when done."""
        conn = session.connection()
        state = self.state
        todo = [s for s in self.specs if field_name(s) not in state["done"]]
        if todo:
            spec = todo[0]
            name = field_name(spec)
            after = state["after_id"] if state["field"] == name else 0
            top = self.tops.get(name, 0)
            if after < top:
                hi = min(after + self.batch_rows, top)
                if spec.binary:  # blobs: cap the bytes a batch holds in memory, not only its rows
                    hi = byte_capped_end(conn, spec, after, hi)
                state["rotated"] += rotate_batch(conn, spec, after, hi, _Keys(conn, session, self.retiring))
                state.update(field=name, after_id=hi)
                self._moved = hi - after
            else:
                state["done"].append(name)
                state.update(field=None, after_id=0)
            save_state(session, JOB, state, now=now)
            return False
        left = remaining(conn, self.retiring)
        if left:
            if state["pass"] >= MAX_PASSES:
                raise RotationError(f"{left} values are still on retired keys after {MAX_PASSES} passes; rerun keys rotate --reencrypt")
            state.update(done=[], field=None, after_id=0, **{"pass": state["pass"] + 1})
            save_state(session, JOB, state, now=now)
            self.plan(conn)
            return False
        self.destroyed = conn.execute(delete(data_keys).where(data_keys.c.id.in_(self.retiring), data_keys.c.state == "retired")).rowcount
        clear_state(session, JOB)
        record(
            session,
            by=by,
            action="keys.reencrypt.done",
            target_type="data_keys",
            details={"values_rotated": state["rotated"], "passes": state["pass"], "keys_destroyed": self.destroyed},
            now=now,
        )
        return True

    def report(self, _batches: int = 0) -> None:
        """After a committed batch: the progress it made (and a new pass's total)."""
        if self._total is not None:
            self.on_total(self._total)
            self._total = None
        if self._moved:
            self.on_progress(self._moved)
            self._moved = 0


def run(
    sessions: SessionScope,
    *,
    by: Principal,
    clock: Clock,
    batch_rows: int = BATCH_ROWS,
    on_total: Callable[[int], None] = lambda _n: None,
    on_progress: Callable[[int], None] = lambda _n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RotationResult:
    """Run (or resume) the re-encryption to the end, one committed transaction per batch (app.jobs.batch).

    `sessions` opens a transaction committed when it closes (e.g. `db.session_scope`). `on_total(n)` gets the
    ids a pass will walk, `on_progress(n)` the ids each committed batch walked. `should_stop` is asked after
    each committed batch: when it says so, RotationStopped is raised with the saved cursor (a rerun resumes
    from it). RotationError when a value does not decrypt or the job does not converge.
    """
    job = _Run(fields(), batch_rows, on_total, on_progress)
    in_transaction(sessions, lambda session, now: job.begin(session, now, by=by), clock=clock)
    job.report()
    progress = run_batches(sessions, lambda session, now: job.step(session, now, by=by), clock=clock, should_stop=should_stop, on_batch=job.report)
    if not progress.finished:
        where = in_transaction(sessions, lambda session, _now: describe_progress(session), clock=clock)
        raise RotationStopped(where or "before the first batch")
    state = job.state
    return RotationResult(job.resumed, int(state["rotated"]), int(state["pass"]), int(job.destroyed))
