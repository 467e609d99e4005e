"""Benchmark: `keys rotate --reencrypt` over encrypted 1 KiB values in Postgres, against a raw ceiling.

    .venv/bin/python bench/rotation.py                 # 1,000,000 values (about 20 minutes on 2 cores)
    .venv/bin/python bench/rotation.py --rows 50000    # a quick run

It creates a fresh database (and drops it at the end), fills `controller_contacts`
with N values encrypted by the desk's own code under master key v1 (1,000 values
per controller), then in the same run times:

* the ceiling: plain psycopg 3, no application code: SELECT 5,000 rows by id
  range, AES-GCM decrypt + encrypt, binary COPY into a temp table, UPDATE ... FROM
  the temp table bounded by the id range, commit (PERFORMANCE.md);
* the desk: `flask keys rotate --reencrypt` with master v2 current (invoked
  in-process through Flask's CLI runner, so interpreter start-up is not timed):
  re-wrap, new data keys, every value re-encrypted with its cursor committed
  per batch and compare-and-swap writes, final recount, old keys destroyed.

Each run starts from a VACUUM FULL table. Prints rows/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402 - after the sys.path line above (run as a script)
from app import migrations as desk_migrations  # noqa: E402 - after the sys.path line above (run as a script)
from app.crypto.cipher import HEADER, NONCE_BYTES, encrypt_field, field_aad  # noqa: E402 - after the sys.path line above (run as a script)
from app.crypto.keyring import keyring_for  # noqa: E402 - after the sys.path line above (run as a script)
from app.crypto.keys import KeyCache, LoadedKey, active_key, load_key, owner_of  # noqa: E402 - after the sys.path line above (run as a script)
from app.extensions import db  # noqa: E402 - after the sys.path line above (run as a script)
from app.keys.service import key_status  # noqa: E402 - after the sys.path line above (run as a script)
from bench.common import ADMIN_URL, fresh_postgres, libpq_url  # noqa: E402 - after the sys.path line above (run as a script)
from config.settings import DevelopmentConfig  # noqa: E402 - after the sys.path line above (run as a script)

V1 = "bench-master-secret-v1-0123456789abcdef-0123"
V2 = "bench-master-secret-v2-fedcba9876543210-3210"
PER_CONTROLLER = 1000
CHUNK = 50_000
BATCH = 5000
TABLE, COLUMN = "controller_contacts", "email_ct"


def settings(url: str, folder: str, **env: str) -> dict[str, object]:
    base = {"DESK_INSTANCE_PATH": folder, "DATABASE_URL": url, "SECRET_KEY": "bench-secret-key-" + "x" * 24, "DRAMATIQ_BROKER_URL": ""}
    return DevelopmentConfig.from_env({**base, **env})


def seed(url: str, folder: str, rows: int) -> None:
    """N values encrypted by the desk's code under master v1, written with COPY."""
    app = create_app(settings(url, folder, MASTER_SECRET=V1))
    controllers = max(1, -(-rows // PER_CONTROLLER))
    raw = psycopg.connect(libpq_url(url))
    with raw, raw.cursor() as cur:
        with cur.copy("COPY controllers (name, status, created_at, updated_at) FROM STDIN") as copy:
            for i in range(controllers):
                copy.write_row((f"Bench {i}", "active", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))
        cur.execute("SELECT id FROM controllers ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
    keys: dict[int, LoadedKey] = {}
    with app.app_context(), db.session_scope() as session:
        cache = KeyCache(keyring_for(session))
        conn = session.connection()
        for cid in ids:
            keys[cid] = active_key(conn, cache, owner_of(cid))
    raw = psycopg.connect(libpq_url(url))
    written = 0
    with raw, raw.cursor() as cur:
        while written < rows:
            n = min(CHUNK, rows - written)
            with cur.copy("COPY controller_contacts (controller_id, kind, row_uid, email_ct) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "varchar", "varchar", "bytea"])
                for i in range(written, written + n):
                    cid = ids[i // PER_CONTROLLER]
                    key = keys[cid]
                    uid = uuid.uuid4().hex
                    value = os.urandom(512).hex().encode()  # 1 KiB of text
                    copy.write_row((cid, "dsr", uid, encrypt_field(key.aead, key.id, value, table=TABLE, column=COLUMN, row_uid=uid)))
            raw.commit()
            written += n
            print(f"  seeded {written:,}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    db.state(app).engine.dispose()


def vacuum(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"VACUUM FULL ANALYZE {TABLE}")
        conn.execute("CHECKPOINT")


def ceiling(url: str, folder: str) -> float:
    """Raw psycopg re-encryption (same keys, fresh nonces): rows/s."""
    app = create_app(settings(url, folder, MASTER_SECRET=V1))
    aeads: dict[int, AESGCM] = {}
    with app.app_context(), db.session_scope() as session:
        cache = KeyCache(keyring_for(session))
        conn = session.connection()
        for (key_id,) in conn.exec_driver_sql("SELECT id FROM data_keys WHERE state = 'active'"):
            aeads[key_id] = load_key(conn, cache, key_id).aead
    db.state(app).engine.dispose()
    raw = psycopg.connect(libpq_url(url))
    rows = 0
    started = time.perf_counter()
    with raw, raw.cursor() as cur:
        cur.execute("CREATE TEMP TABLE ceiling_tmp (id bigint, value bytea) ON COMMIT DELETE ROWS")
        found = cur.execute(f"SELECT max(id) FROM {TABLE}").fetchone()
        top = found[0] if found and found[0] is not None else 0
        lo = 0
        while lo < top:
            hi = lo + BATCH
            batch = cur.execute(f"SELECT id, row_uid, {COLUMN} FROM {TABLE} WHERE id > %s AND id <= %s", (lo, hi)).fetchall()
            out = []
            for row_id, uid, blob in batch:
                header = blob[: HEADER.size]
                aead = aeads[int.from_bytes(header[1:], "big")]
                aad = field_aad(header, TABLE, COLUMN, uid)
                plain = aead.decrypt(blob[HEADER.size : HEADER.size + NONCE_BYTES], blob[HEADER.size + NONCE_BYTES :], aad)
                nonce = os.urandom(NONCE_BYTES)
                out.append((row_id, header + nonce + aead.encrypt(nonce, plain, aad)))
            with cur.copy("COPY ceiling_tmp (id, value) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea"])
                for item in out:
                    copy.write_row(item)
            cur.execute(
                f"UPDATE {TABLE} AS t SET {COLUMN} = r.value FROM ceiling_tmp AS r WHERE t.id = r.id AND t.id > %s AND t.id <= %s",
                (lo, hi),
            )
            rows += cur.rowcount
            raw.commit()
            lo = hi
    elapsed = time.perf_counter() - started
    print(f"ceiling: {rows:,} rows in {elapsed:.1f} s", file=sys.stderr)
    return rows / elapsed


def desk(url: str, folder: str, rows: int) -> float:
    """`keys rotate --reencrypt`, master v1 -> v2: rows/s."""
    app = create_app(settings(url, folder, MASTER_SECRET=V2, MASTER_KEY_VERSION="2", MASTER_SECRET_V1=V1))
    runner = app.test_cli_runner()
    started = time.perf_counter()
    result = runner.invoke(args=["keys", "rotate", "--reencrypt"])
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"keys rotate --reencrypt failed: {result.output} {result.exception!r}")
    with app.app_context(), db.session_scope() as session:
        status = key_status(session)
        on_v1 = next((v.values for v in status.versions if v.version == 1), 0)
        on_v2 = next((v.values for v in status.versions if v.version == 2), 0)
    db.state(app).engine.dispose()
    if on_v1 or on_v2 != rows or status.values_on_retired_keys:
        raise SystemExit(f"rotation incomplete: v1 {on_v1}, v2 {on_v2}, retired {status.values_on_retired_keys}")
    print(f"desk:    {rows:,} rows in {elapsed:.1f} s ({result.output.strip().splitlines()[-1]})", file=sys.stderr)
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    with fresh_postgres("rotation", args.admin_url) as url, tempfile.TemporaryDirectory() as folder:
        desk_migrations.upgrade(url)
        print(f"seeding {args.rows:,} encrypted 1 KiB values", file=sys.stderr)
        seed(url, folder, args.rows)
        vacuum(url)
        raw_rate = ceiling(url, folder)
        vacuum(url)
        desk_rate = desk(url, folder, args.rows)
    print(f"rows: {args.rows:,}")
    print(f"ceiling (raw psycopg): {raw_rate:,.0f} rows/s")
    print(f"desk keys rotate --reencrypt: {desk_rate:,.0f} rows/s")
    print(f"ratio desk/ceiling: {desk_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
