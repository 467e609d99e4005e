"""Benchmark: `retention run` over closed tickets, 40 % past their period and 1 % of all tickets under a legal hold, against a raw ceiling.

    .venv/bin/python bench/retention.py                           # Postgres, 1,000,000 tickets
    .venv/bin/python bench/retention.py --tickets 100000          # smaller
    .venv/bin/python bench/retention.py --tickets 100000 --sqlite # the same on SQLite (WAL), its own ceiling
    .venv/bin/python bench/retention.py --tickets 20000 --only desk --profile /tmp/desk.prof   # the desk alone, profiled

The data, generated in the database (`INSERT ... SELECT` over a series: seconds per 100,000 tickets, not measured):

* tickets of the bench controller, 3 messages each (inbound with its raw original, an outbound reply, an inbound
  reply with its raw original), 5 blind-index entries each (message_identifiers: sender addresses and names, the
  reply's recipient), every 10th ticket with an 8 KiB attachment (a blob of one chunk); 80 % closed (half of them
  400 days ago: past the 365-day default, the other half 10 days ago), 20 % open;
* ciphertext-sized values of the desk's format (format byte, the controller's data-key id, then nonce, body and
  tag sized like a real value: 1 KiB bodies, 2 KiB raw originals), drawn from a pool of random values, and unique
  blind indexes where the schema wants them unique. They are not authentic ciphertext for their rows: deleting
  decrypts nothing, and the bench checks it (it counts the engine's decryptions of ticket data during the run:
  must be 0). SAMPLE more due tickets are made through the desk's own services (real ciphertext, blind index,
  raw originals parsed and indexed, a file each), so rows of every shape the app writes are in the run;
* legal holds on 1 % of all tickets (2.5 % of the due ones), all due: 0.8 % ticket holds, 0.1 % one subject hold
  (placed by address; those tickets' requester has that blind index), 0.1 % the tickets of a second controller
  under a controller hold.

Then, each on its own freshly generated database (same data, same VACUUM ANALYZE and CHECKPOINT first):

* the ceiling: plain DBAPI, no application code: the due, unheld tickets in id order, 5,000 a batch: their
  message and attachment ids selected, then `DELETE ... WHERE id = ANY(%b)` (SQLite: `IN (...)`, with
  secure_delete on, as the desk must) from message_identifiers, ticket_attachments, ticket_messages, tickets,
  blob_chunks and blobs, one commit per batch (PERFORMANCE.md: 165-175 k rows/s on Postgres on a quiet machine);
* the desk: `flask retention run --category closed_ticket_content` as an operator runs it (its preview, the run
  lock, the ledger, every batch through the deletion engine and its hold check, audit events, a commit per batch).

Rows = rows gone from those six tables (counted before and after, the same way for both). Prints rows/s of both,
the ratio (goal: >= 0.3), and checks: nothing held deleted, the ledger's counts, no failures, no decryption.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, make_url, text  # noqa: E402 - after the sys.path line above (run as a script)
from sqlalchemy.schema import CreateIndex, DropIndex  # noqa: E402 - after the sys.path line above (run as a script)

from app import create_app  # noqa: E402 - after the sys.path line above (run as a script)
from app import migrations as desk_migrations  # noqa: E402 - after the sys.path line above (run as a script)
from app.blobs.models import Blob, BlobChunk  # noqa: E402 - after the sys.path line above (run as a script)
from app.controllers.service import ControllerInput, create_controller  # noqa: E402 - after the sys.path line above (run as a script)
from app.crypto import fields as crypto_fields  # noqa: E402 - after the sys.path line above (run as a script)
from app.crypto.cipher import FORMAT_V1, HEADER  # noqa: E402 - after the sys.path line above (run as a script)
from app.crypto.keys import active_key, cache_for  # noqa: E402 - after the sys.path line above (run as a script)
from app.db import table_of_model, utcnow  # noqa: E402 - after the sys.path line above (run as a script)
from app.extensions import db  # noqa: E402 - after the sys.path line above (run as a script)
from app.principal import Principal  # noqa: E402 - after the sys.path line above (run as a script)
from app.retention import holds as retention_holds  # noqa: E402 - after the sys.path line above (run as a script)
from app.retention.periods import DEFAULTS, cutoff  # noqa: E402 - after the sys.path line above (run as a script)
from app.tickets import service as tickets  # noqa: E402 - after the sys.path line above (run as a script)
from app.tickets.identifiers import MessageIdentifier  # noqa: E402 - after the sys.path line above (run as a script)
from app.tickets.models import Attachment, Message, Ticket  # noqa: E402 - after the sys.path line above (run as a script)
from bench.common import fresh_postgres  # noqa: E402 - after the sys.path line above (run as a script)
from config.settings import DevelopmentConfig  # noqa: E402 - after the sys.path line above (run as a script)

SECRET = "bench-retention-master-secret-0123456789abcdef"
BATCH = 5000
SAMPLE = 100
POOL = 4096
CATEGORY = "closed_ticket_content"
TABLES = ("message_identifiers", "ticket_attachments", "ticket_messages", "tickets", "blob_chunks", "blobs")
HELD_SUBJECT = "held.subject@bench.example"
# Plaintext bytes of each kind of value (ciphertext = 5-byte header + 12-byte nonce + this + 16-byte tag).
SIZES = {"name": 14, "email": 28, "subject": 40, "body": 1024, "reply": 600, "msgid": 52, "raw": 2048, "file": 8192}
BY = Principal.system("bench")
VERBOSE = bool(os.environ.get("BENCH_VERBOSE"))


# ---- generation --------------------------------------------------------------------------------------------


def _pool(key_id: int) -> list[dict[str, Any]]:
    """POOL rows of random ciphertext-sized values in the desk's format under `key_id`, plus 16-byte blind indexes."""
    header = HEADER.pack(FORMAT_V1, key_id)
    rows = []
    for n in range(POOL):
        row: dict[str, Any] = {"n": n, **{k: header + os.urandom(12 + size + 16) for k, size in SIZES.items()}}
        row["bidx"], row["bidx2"] = os.urandom(16), os.urandom(16)
        rows.append(row)
    return rows


def _series(d: str, name: str, upto: str) -> tuple[str, str]:
    """(WITH prefix, FROM item) of a series 1..upto named `name` with column i."""
    if d == "postgresql":
        return "", f"generate_series(1, {upto}) AS {name}(i)"
    return f"WITH RECURSIVE {name}(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM {name} WHERE i < {upto}) ", name


def _unique(d: str, expr: str, hexchars: int = 32) -> str:
    """A value unique per row: md5 of `expr` (Postgres) or random (SQLite); hex text of `hexchars`."""
    if d == "postgresql":
        return f"md5({expr})" if hexchars == 32 else f"md5({expr}) || md5({expr} || '.')"
    return f"lower(hex(randomblob({hexchars // 2})))"


def _unique_bytes(d: str, expr: str) -> str:
    return f"decode(md5({expr}), 'hex')" if d == "postgresql" else "randomblob(16)"


def generate(app: Any, count: int) -> dict[str, Any]:
    """The bench's data (see the module docstring); returns the controllers' ids."""
    now = utcnow()
    old, recent = now - dt.timedelta(days=400), now - dt.timedelta(days=10)
    with app.app_context(), db.session_scope() as s:
        cid = create_controller(s, ControllerInput(name="Bench Retention GmbH", dsr_contacts=["dpo@bench.example"]), by=BY, now=now).id
        other = create_controller(s, ControllerInput(name="Bench Held AG", dsr_contacts=["dpo@held.example"]), by=BY, now=now).id
        key = active_key(s.connection(), cache_for(s), f"controller:{cid}")
        subject_hold = retention_holds.place(s, kind="subject", basis="litigation", controller_id=cid, subject_email=HELD_SUBJECT, until=None, by=BY, now=now)
        retention_holds.place(s, kind="controller", basis="accounting", controller_id=other, until=now + dt.timedelta(days=3650), by=BY, now=now)
        subject_bidx = subject_hold.subject_email_bidx
    with app.app_context(), db.session_scope() as s:
        d = s.get_bind().dialect.name
        blob = "bytea" if d == "postgresql" else "BLOB"
        s.execute(text(f"CREATE TEMP TABLE bench_pool (n INTEGER PRIMARY KEY, {', '.join(f'{k} {blob}' for k in [*SIZES, 'bidx', 'bidx2'])})"))
        cols = ["n", *SIZES, "bidx", "bidx2"]
        s.execute(text(f"INSERT INTO bench_pool ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"), _pool(key.id))
        p = {"n": count, "cid": cid, "other": other, "old": old, "recent": recent, "now": now, "sbidx": subject_bidx}
        if d == "postgresql":
            s.execute(text("SET LOCAL session_replication_role = replica"))  # no per-row foreign-key triggers: the data is consistent by construction
        # Bulk first, indexes after (the same definitions as the migrations, built once instead of row by row).
        indexes = [
            i for m in (Ticket, Message, Attachment, Blob, BlobChunk, MessageIdentifier) for i in sorted(table_of_model(m).indexes, key=lambda i: str(i.name))
        ]
        for index in indexes:
            s.execute(DropIndex(index))

        def run(sql: str) -> None:
            began = time.perf_counter()
            s.execute(text(sql), p)
            if VERBOSE:
                print(f"    {time.perf_counter() - began:6.1f} s  {sql[sql.index('INSERT INTO') :].split('(')[0].strip()}", flush=True)

        owner = "CASE WHEN i % 1000 = 2 THEN :other ELSE :cid END"
        sha = _unique(d, "i::text", 64)
        msgid_bidx = _unique_bytes(d, "'m' || (3 * i + m.k)")

        def u(tag: str, expr: str = "i") -> str:
            return _unique(d, f"'{tag}' || {expr}")

        with_, series = _series(d, "s", ":n")
        join = f"FROM {series} JOIN bench_pool p ON p.n = i % {POOL}"
        run(
            (
                f"{with_}INSERT INTO tickets (id, reference, controller_id, key_owner, status, requester_name_ct, requester_email_ct,"
                " requester_email_bidx, subject_ct, reply_token, created_at, updated_at, closed_at, row_uid)"
                f" SELECT i, 'T-2025-' || i, {owner}, {owner}, CASE WHEN i % 10 < 8 THEN 'closed' ELSE 'open' END, p.name, p.email,"
                f" CASE WHEN i % 1000 = 1 THEN :sbidx ELSE p.bidx END, p.subject, {u('t')}, :old, :old,"
                f" CASE WHEN i % 10 < 4 THEN :old WHEN i % 10 < 8 THEN :recent ELSE NULL END, {u('k')} {join}"
            ),
        )
        with_2, series2 = _series(d, "s", "2 * :n")
        blob_owner = "CASE WHEN ((i + 1) / 2) % 1000 = 2 THEN :other ELSE :cid END"
        run(
            (
                f"{with_2}INSERT INTO blobs (id, key_owner, size, sha256, chunk_count, created_at)"
                f" SELECT i, {blob_owner}, {SIZES['raw']}, {sha}, 1, :old FROM {series2}"
            ),
        )
        run(
            (
                f"{with_2}INSERT INTO blob_chunks (id, blob_id, seq, key_owner, data_ct, row_uid)"
                f" SELECT i, i, 0, {blob_owner}, p.raw, {u('c')} FROM {series2} JOIN bench_pool p ON p.n = i % {POOL}"
            ),
        )
        run(
            (
                f"{with_}INSERT INTO blobs (id, key_owner, size, sha256, chunk_count, created_at)"
                f" SELECT 2 * :n + i / 10, {owner}, {SIZES['file']}, {sha}, 1, :old FROM {series} WHERE i % 10 = 0"
            ),
        )
        run(
            (
                f"{with_}INSERT INTO blob_chunks (id, blob_id, seq, key_owner, data_ct, row_uid)"
                f" SELECT 2 * :n + i / 10, 2 * :n + i / 10, 0, {owner}, p.file, {u('f')} {join} WHERE i % 10 = 0"
            ),
        )
        three = "(SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3) m"
        run(
            (
                f"{with_}INSERT INTO ticket_messages (id, ticket_id, direction, message_id_bidx, message_id_ct, key_owner, sender_name_ct,"
                " sender_email_ct, sender_email_bidx, subject_ct, body_text_ct, raw_blob_id, raw_sha256, is_auto_reply, flags, notes, created_at, row_uid)"
                f" SELECT 3 * (i - 1) + m.k, i, CASE WHEN m.k = 2 THEN 'outbound' ELSE 'inbound' END,"
                f" {msgid_bidx}, p.msgid, {owner},"
                " CASE WHEN m.k = 2 THEN NULL ELSE p.name END, CASE WHEN m.k = 2 THEN NULL ELSE p.email END,"
                " CASE WHEN m.k = 2 THEN NULL ELSE p.bidx END, p.subject, CASE WHEN m.k = 1 THEN p.body ELSE p.reply END,"
                f" CASE m.k WHEN 1 THEN 2 * i - 1 WHEN 3 THEN 2 * i ELSE NULL END, CASE WHEN m.k = 2 THEN NULL ELSE {sha} END,"
                f" false, '[]', '[]', :old, {u('u', '(3 * i + m.k)')} {join} CROSS JOIN {three}"
            ),
        )
        run(
            (
                f"{with_}INSERT INTO ticket_attachments (id, message_id, key_owner, filename_ct, content_type, size, sha256, blob_id, created_at, row_uid)"
                f" SELECT i / 10, 3 * (i - 1) + 1, {owner}, p.name, 'application/pdf', {SIZES['file']}, {sha}, 2 * :n + i / 10, :old,"
                f" {u('a')} {join} WHERE i % 10 = 0"
            ),
        )
        # Per ticket: the sender's address and name of both inbound messages, the reply's recipient.
        five = (
            "(SELECT 1 AS r, 1 AS k, 'email' AS kind UNION ALL SELECT 2, 1, 'name' UNION ALL SELECT 3, 2, 'email'"
            " UNION ALL SELECT 4, 3, 'email' UNION ALL SELECT 5, 3, 'name') x"
        )
        run(
            (
                f"{with_}INSERT INTO message_identifiers (id, message_id, key_owner, kind, digest)"
                f" SELECT 5 * (i - 1) + x.r, 3 * (i - 1) + x.k, {owner}, x.kind, CASE WHEN x.kind = 'name' THEN p.bidx2 ELSE p.bidx END"
                f" {join} CROSS JOIN {five}"
            ),
        )
        # 0.8 % of all tickets under a ticket hold each (all of them due: i % 10 = 3).
        run(
            (
                f"{with_}INSERT INTO retention_holds (kind, controller_id, ticket_id, key_owner, basis, basis_text, placed_by, placed_at, row_uid)"
                f" SELECT 'ticket', :cid, i, :cid, 'litigation', 'bench', 'system:bench', :now, {u('h')}"
                f" FROM {series} WHERE i % 1000 IN (3, 13, 23, 33, 43, 53, 63, 73)"
            ),
        )
        s.execute(text("DROP TABLE bench_pool"))
        began = time.perf_counter()
        for index in indexes:
            s.execute(CreateIndex(index))
        if VERBOSE:
            print(f"    {time.perf_counter() - began:6.1f} s  {len(indexes)} indexes", flush=True)
        if d == "postgresql":
            for table, column in (*((t, "id") for t in TABLES), ("retention_holds", "id")):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT MAX(id) FROM {table}))"))
    _sample(app, cid, old)
    _settle_database(app)
    return {"controller": cid, "other": other}


RAW = (
    "From: {name} <{email}>\r\nTo: support@desk.example\r\nSubject: Invoice {n}\r\nMessage-ID: <bench-{n}-{k}@mail.example>\r\n"
    "Date: Mon, 02 Dec 2024 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
)


def _sample(app: Any, cid: int, old: dt.datetime) -> None:
    """SAMPLE due tickets through the desk's services: real ciphertext, blind indexes, raw originals, identifiers, a file each."""
    with app.app_context(), db.session_scope() as s:
        for n in range(SAMPLE):
            name, email = f"Sample Person {n}", f"sample.person{n}@mail.example"
            ticket = tickets.create_ticket(s, controller_id=cid, requester_name=name, requester_email=email, subject=f"Invoice {n}", by=BY, now=old)
            body = f"Hello, my phone is +49 30 1234{n:04d}, my IBAN DE89370400440532013000.\n" + "The invoice of last month is wrong. " * 28
            for k, direction in enumerate(("inbound", "outbound", "inbound")):
                inbound = direction == "inbound"
                raw = RAW.format(name=name, email=email, n=n, k=k, body=body).encode() if inbound else None
                data = tickets.MessageInput(
                    direction=direction,
                    body_text=body,
                    sender_name=name if inbound else None,
                    sender_email=email if inbound else None,
                    subject=f"Invoice {n}",
                    message_id=f"bench-{n}-{k}@mail.example",
                    raw=raw,
                    recipients=["support@desk.example"] if inbound else [email],
                )
                message = tickets.add_message(s, ticket, data, by=BY, now=old)
                if k == 0:
                    tickets.add_attachment(
                        s, message, filename=f"invoice-{n}.pdf", content_type="application/pdf", content=os.urandom(SIZES["file"]), by=BY, now=old
                    )
            ticket.status, ticket.closed_at = "closed", old
        s.flush()


def _settle_database(app: Any) -> None:
    """Both measurements start alike: statistics and hint bits set, dirty pages written (Postgres); the WAL emptied (SQLite)."""
    with app.app_context():
        raw = db.engine.raw_connection()
        pg = db.engine.dialect.name == "postgresql"
    driver: Any = raw.driver_connection
    try:
        if pg:
            driver.autocommit = True
            cur = raw.cursor()
            cur.execute(f"VACUUM ANALYZE {', '.join((*TABLES, 'retention_holds'))}")
            cur.execute("CHECKPOINT")
        else:
            cur = raw.cursor()
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        if pg:
            driver.autocommit = False
        raw.close()


# ---- what is due, what is held -----------------------------------------------------------------------------

HELD = (
    "(t.id IN (SELECT ticket_id FROM retention_holds WHERE kind = 'ticket' AND ticket_id IS NOT NULL)"
    " OR t.controller_id IN (SELECT controller_id FROM retention_holds WHERE kind = 'controller')"
    " OR EXISTS (SELECT 1 FROM retention_holds h WHERE h.kind = 'subject' AND h.controller_id = t.controller_id"
    " AND h.subject_email_bidx = t.requester_email_bidx))"
)


def _due_clause(app: Any) -> tuple[str, dict[str, Any]]:
    due = cutoff(utcnow(), DEFAULTS[CATEGORY].period_days)
    with app.app_context():
        pg = db.engine.dialect.name == "postgresql"
    return "t.status = 'closed' AND t.closed_at <= :due", {"due": due if pg else due.strftime("%Y-%m-%d %H:%M:%S.%f")}


def counts(app: Any) -> dict[str, int]:
    """Rows in each table a run deletes from."""
    with app.app_context(), db.engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() or 0) for t in TABLES}


def held_state(app: Any) -> tuple[int, int]:
    """(held tickets stored, messages of held tickets stored)."""
    due, p = _due_clause(app)
    with app.app_context(), db.engine.connect() as conn:
        tickets_ = int(conn.execute(text(f"SELECT COUNT(*) FROM tickets t WHERE {HELD}")).scalar() or 0)
        messages = int(conn.execute(text(f"SELECT COUNT(*) FROM ticket_messages m JOIN tickets t ON t.id = m.ticket_id WHERE {HELD}")).scalar() or 0)
    return tickets_, messages


def due_tickets(app: Any) -> tuple[list[int], int]:
    """(the due, unheld tickets in id order, how many due tickets are held)."""
    due, p = _due_clause(app)
    with app.app_context(), db.engine.connect() as conn:
        ids = [int(r[0]) for r in conn.execute(text(f"SELECT t.id FROM tickets t WHERE {due} AND NOT {HELD} ORDER BY t.id"), p)]
        held = int(conn.execute(text(f"SELECT COUNT(*) FROM tickets t WHERE {due} AND {HELD}"), p).scalar() or 0)
    return ids, held


# ---- the two measurements ----------------------------------------------------------------------------------


def _in(column: str, ids: list[int], pg: bool) -> tuple[str, Any]:
    """`column BETWEEN lo AND hi AND column = ANY(%b)` with the list (psycopg, binary), or `... IN (?, ...)` (sqlite3).

    The range keeps the planner on the index (PERFORMANCE.md: without it, a hash join against a scan of the table).
    """
    lo, hi = min(ids), max(ids)
    if pg:
        return f"{column} BETWEEN {lo} AND {hi} AND {column} = ANY(%b)", (ids,)
    return f"{column} BETWEEN {lo} AND {hi} AND {column} IN ({','.join('?' * len(ids))})", ids


def ceiling(app: Any, *, secure_delete: bool = True) -> float:
    """Delete the due, unheld rows by id in batches of BATCH tickets with the bare DBAPI; seconds (SQLite: with secure_delete unless told)."""
    ticket_ids, _held = due_tickets(app)
    with app.app_context():
        raw = db.engine.raw_connection()
        pg = db.engine.dialect.name == "postgresql"
    try:
        cur = raw.cursor()
        if not pg:
            cur.execute(f"PRAGMA secure_delete={'ON' if secure_delete else 'OFF'}")  # what deleting means on SQLite (the desk does the same)
        spent: dict[str, float] = {}
        began = time.perf_counter()
        for start in range(0, len(ticket_ids), BATCH):
            chunk = ticket_ids[start : start + BATCH]
            clause, arg = _in("ticket_id", chunk, pg)
            cur.execute(f"SELECT id, raw_blob_id FROM ticket_messages WHERE {clause}", arg)
            messages = cur.fetchall()
            message_ids = [m[0] for m in messages]
            files: list[Any] = []
            for part in range(0, len(message_ids), BATCH):
                clause, arg = _in("message_id", message_ids[part : part + BATCH], pg)
                cur.execute(f"SELECT id, blob_id FROM ticket_attachments WHERE {clause}", arg)
                files += cur.fetchall()
            blob_ids = [f[1] for f in files] + [m[1] for m in messages if m[1] is not None]
            steps = [("message_identifiers", "message_id", message_ids), ("ticket_attachments", "id", [f[0] for f in files])]
            steps += [("ticket_messages", "id", message_ids), ("tickets", "id", chunk), ("blob_chunks", "blob_id", blob_ids), ("blobs", "id", blob_ids)]
            for table, column, ids in steps:
                for part in range(0, len(ids), BATCH):
                    clause, arg = _in(column, ids[part : part + BATCH], pg)
                    began_statement = time.perf_counter()
                    cur.execute(f"DELETE FROM {table} WHERE {clause}", arg)
                    spent[table] = spent.get(table, 0.0) + time.perf_counter() - began_statement
            raw.commit()
        if not pg:
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the desk truncates the WAL at the end too
        if VERBOSE:
            print("    ceiling's DELETEs, seconds by table: " + ", ".join(f"{t} {v:.1f}" for t, v in spent.items()), flush=True)
        return time.perf_counter() - began
    finally:
        raw.close()


@contextmanager
def counting_decryptions() -> Iterator[dict[str, int]]:
    """Count decryptions by table while inside (the engine must decrypt no ticket data to delete it)."""
    seen: dict[str, int] = {}
    original = crypto_fields.decrypt_field

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen[kwargs.get("table", "?")] = seen.get(kwargs.get("table", "?"), 0) + 1
        return original(*args, **kwargs)

    crypto_fields.decrypt_field = counted
    try:
        yield seen
    finally:
        crypto_fields.decrypt_field = original


def desk_run(app: Any, profile: str | None) -> tuple[float, str, dict[str, int]]:
    """`flask retention run --category closed_ticket_content`; (seconds, its output, decryptions by table)."""
    runner = app.test_cli_runner()
    profiler = cProfile.Profile() if profile else None
    with counting_decryptions() as seen:
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        result = runner.invoke(args=["retention", "run", "--category", CATEGORY])
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - began
    if profiler and profile:
        profiler.dump_stats(profile)
    if result.exit_code != 0:
        raise SystemExit(f"retention run failed ({result.exit_code}): {result.output} {result.exception!r}")
    return seconds, result.output.strip().splitlines()[-1], seen


def ledger(app: Any) -> dict[str, int]:
    """The last ledger row's totals and errors."""
    from app.retention import runner

    with app.app_context(), db.session_scope() as s:
        row = runner.describe(runner.ledger(s, limit=1)[0])
    totals = {"due": 0, "changed": 0, "held": 0}
    for per_controller in row["counts"].values():
        for c in per_controller.values():
            for k in totals:
                totals[k] += int(c.get(k, 0))
    return {**totals, "errors": len(row["errors"])}


def desk_app(url: str, folder: Path) -> Any:
    desk_migrations.upgrade(url)
    config = DevelopmentConfig.from_env({"DATABASE_URL": url, "DESK_INSTANCE_PATH": str(folder), "MASTER_SECRET": SECRET, "SECRET_KEY": "k" * 40})
    return create_app(config)


@contextmanager
def copy_of(url: str, folder: Path) -> Iterator[str]:
    """A copy of the database at `url` (Postgres: CREATE DATABASE ... TEMPLATE, a file copy; SQLite: the file), removed after."""
    if url.startswith("sqlite"):
        source, target = Path(make_url(url).database or ""), folder / "copy.sqlite3"
        shutil.copyfile(source, target)
        yield f"sqlite:///{target}"
        target.unlink(missing_ok=True)
        return
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    copy = f"{name}_copy"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "{name}" STRATEGY FILE_COPY'))
        yield make_url(url).set(database=copy).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def seeded(sqlite: bool, folder: Path, count: int) -> Iterator[str]:
    """A database with the bench's data (its URL); generated once, copied for the second measurement."""
    if sqlite:
        url = f"sqlite:///{folder}/bench.sqlite3"
        app = desk_app(url, folder)
        began = time.perf_counter()
        generate(app, count)
        print(f"  generated {count:,} + {SAMPLE} tickets in {time.perf_counter() - began:.0f} s: {counts(app)}", flush=True)
        db.state(app).engine.dispose()
        yield url
        return
    with fresh_postgres("retention") as url:
        app = desk_app(url, folder)
        began = time.perf_counter()
        generate(app, count)
        print(f"  generated {count:,} + {SAMPLE} tickets in {time.perf_counter() - began:.0f} s: {counts(app)}", flush=True)
        db.state(app).engine.dispose()
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite (WAL) in a temporary folder instead of Postgres")
    parser.add_argument("--only", choices=("ceiling", "desk"), help="measure one side only (no ratio)")
    parser.add_argument("--profile", help="write a cProfile of the desk's run to this file")
    args = parser.parse_args()
    base = os.environ.get("BENCH_TMP") or None
    ceiling_rate = desk_rate = None
    print(f"retention bench: {'SQLite' if args.sqlite else 'Postgres'}, {args.tickets:,} tickets, {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp, seeded(args.sqlite, Path(tmp), args.tickets) as url:
        folder = Path(tmp)
        if args.only != "ceiling":
            with copy_of(url, folder) if args.only is None else nullcontext(url) as desk_url:
                app = desk_app(desk_url, folder)
                before, held_before = counts(app), held_state(app)
                due_ids, held_due = due_tickets(app)
                seconds, line, seen = desk_run(app, args.profile)
                rows = sum(before.values()) - sum(counts(app).values())
                desk_rate = rows / seconds
                held_after, (left_due, _) = held_state(app), due_tickets(app)
                books = ledger(app)
                print(f"desk:    {rows:,} rows in {seconds:.1f} s = {desk_rate:,.0f} rows/s ({line})", flush=True)
                ok_held = held_after == held_before
                ok_books = books["due"] == len(due_ids) + held_due and books["held"] == held_due and books["errors"] == 0 and not left_due
                print(f"  held tickets/messages before {held_before}, after {held_after}: nothing held deleted: {ok_held}")
                print(f"  ledger {books}; due unheld {len(due_ids):,}, due held {held_due:,}, due left {len(left_due)}: ledger right: {ok_books}")
                print(f"  decryptions during the run by table: {seen or 'none'} (ticket data: {sum(v for k, v in seen.items() if k in TABLES)})", flush=True)
                db.state(app).engine.dispose()
        if args.only != "desk":
            with copy_of(url, folder) if args.sqlite else nullcontext(None) as plain_url:
                app = desk_app(url, folder)
                before = counts(app)
                seconds = ceiling(app)
                rows = sum(before.values()) - sum(counts(app).values())
                ceiling_rate = rows / seconds
                print(f"ceiling: {rows:,} rows in {seconds:.1f} s = {ceiling_rate:,.0f} rows/s", flush=True)
                db.state(app).engine.dispose()
                if plain_url:  # for the record: the same without secure_delete (which the desk may not skip)
                    app = desk_app(plain_url, folder)
                    before = counts(app)
                    seconds = ceiling(app, secure_delete=False)
                    plain = (sum(before.values()) - sum(counts(app).values())) / seconds
                    print(f"ceiling without secure_delete: {plain:,.0f} rows/s" + (f" (desk / it: {desk_rate / plain:.2f})" if desk_rate else ""), flush=True)
                    db.state(app).engine.dispose()
    if ceiling_rate and desk_rate:
        print(f"ratio:   {desk_rate / ceiling_rate:.2f} (goal >= 0.3)")


if __name__ == "__main__":
    main()
