"""Benchmark: `retention run` over closed tickets, 40 % past their period and 1 % of those under a legal hold, against a raw ceiling.

    .venv/bin/python bench/retention.py                          # Postgres, 1,000,000 tickets (long: hours on 2 shared cores)
    .venv/bin/python bench/retention.py --tickets 20000          # a quick run
    .venv/bin/python bench/retention.py --tickets 20000 --sqlite # the same on SQLite (WAL), its own ceiling

Each ticket has 3 messages; every 10th has an attachment (a blob with one chunk). The rows are generated in the
database (a recursive CTE: the same SQL on both), with placeholder bytes where ciphertext would be: deletion
never decrypts. Then, in the same run:

* the ceiling: plain DBAPI, no application code: the due, unheld rows (attachments, messages, tickets, blob
  chunks, blobs) deleted by `DELETE ... WHERE id = ANY(%s)` (SQLite: `IN (...)`) in batches of 5,000 ids,
  one commit per batch (PERFORMANCE.md: 165-175 k rows/s on Postgres on a quiet machine);
* the data generated again, then the desk: `app.retention.runner.execute` (every batch through the deletion
  engine, its hold check and its audit events, a commit per batch), under the run lock.

Prints rows/s of both, the ratio (goal: >= 0.3), and checks that nothing held was deleted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402 - after the sys.path line above (run as a script)

from app import create_app  # noqa: E402 - after the sys.path line above (run as a script)
from app import migrations as desk_migrations  # noqa: E402 - after the sys.path line above (run as a script)
from app.controllers.service import ControllerInput, create_controller  # noqa: E402 - after the sys.path line above (run as a script)
from app.db import utcnow  # noqa: E402 - after the sys.path line above (run as a script)
from app.extensions import db  # noqa: E402 - after the sys.path line above (run as a script)
from app.principal import Principal  # noqa: E402 - after the sys.path line above (run as a script)
from app.retention import runner  # noqa: E402 - after the sys.path line above (run as a script)
from app.retention.schedule import run_lock  # noqa: E402 - after the sys.path line above (run as a script)
from bench.common import fresh_postgres  # noqa: E402 - after the sys.path line above (run as a script)
from config.settings import DevelopmentConfig  # noqa: E402 - after the sys.path line above (run as a script)

SECRET = "bench-retention-master-secret-0123456789abcdef"
BATCH = 5000
TABLES = ("ticket_attachments", "ticket_messages", "tickets", "blob_chunks", "blobs")


def _uid(dialect: str, seed: str) -> str:
    return f"md5({seed} || '')" if dialect == "postgresql" else f"lower(hex(randomblob(16)))||substr({seed},1,0)"


def generate(app: Any, controller_id: int, count: int) -> None:
    """`count` tickets (40 % closed past the default period, the rest closed recently or open), 3 messages each, every 10th with a file."""
    now = utcnow()
    old, recent = now - dt.timedelta(days=400), now - dt.timedelta(days=10)
    with app.app_context(), db.session_scope() as s:
        d = s.get_bind().dialect.name
        series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
        byte = "decode(md5(i::text), 'hex')" if d == "postgresql" else "randomblob(16)"
        p = {"count": count, "cid": controller_id, "old": old, "recent": recent, "now": now}
        s.execute(
            text(
                f"{series} INSERT INTO tickets (controller_id, key_owner, status, requester_email_ct, requester_email_bidx, subject_ct, reply_token,"
                " created_at, updated_at, closed_at, row_uid) SELECT :cid, :cid, CASE WHEN i % 10 < 8 THEN 'closed' ELSE 'open' END,"
                f" {byte}, {byte}, {byte}, {_uid(d, chr(39) + 't' + chr(39) + ' || i')}, :old, :old,"
                " CASE WHEN i % 10 < 4 THEN :old WHEN i % 10 < 8 THEN :recent ELSE NULL END, "
                f"{_uid(d, chr(39) + 'k' + chr(39) + ' || i')} FROM n"
            ),
            p,
        )
        s.execute(
            text(
                "INSERT INTO ticket_messages (ticket_id, direction, key_owner, body_text_ct, is_auto_reply, flags, notes, created_at, row_uid)"
                f" SELECT t.id, 'inbound', :cid, {byte.replace('i::text', 't.id::text || m.k').replace('randomblob(16)', 'randomblob(64)')},"
                f" false, '[]', '[]', :old, {_uid(d, 't.id || m.k')} FROM tickets t CROSS JOIN (SELECT 'a' AS k UNION ALL SELECT 'b' UNION ALL SELECT 'c') m"
            ),
            p,
        )
        s.execute(
            text("INSERT INTO blobs (key_owner, size, sha256, chunk_count, created_at) SELECT :cid, 7, 'x', 1, :now FROM tickets WHERE id % 10 = 0"),
            p,
        )
        chunk_bytes, chunk_uid = byte.replace("i::text", "id::text"), _uid(d, "id")
        s.execute(text(f"INSERT INTO blob_chunks (blob_id, seq, key_owner, data_ct, row_uid) SELECT id, 0, :cid, {chunk_bytes}, {chunk_uid} FROM blobs"), p)
        s.execute(
            text(
                "INSERT INTO ticket_attachments (message_id, key_owner, content_type, size, sha256, blob_id, created_at, row_uid)"
                f" SELECT m.id, :cid, 'text/plain', 7, 'x', b.id, :now, {_uid(d, 'm.id')} FROM"
                " (SELECT MIN(id) AS id, ticket_id FROM ticket_messages WHERE ticket_id % 10 = 0 GROUP BY ticket_id) m"
                " JOIN (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS r FROM blobs) b ON b.r = m.ticket_id / 10"
            ),
            p,
        )
        # 1 % of the due tickets under a legal hold (a ticket hold each).
        s.execute(
            text(
                "INSERT INTO retention_holds (kind, controller_id, ticket_id, key_owner, basis, basis_text, placed_by, placed_at, row_uid)"
                f" SELECT 'ticket', :cid, id, :cid, 'litigation', '', 'bench', :now, {_uid(d, 'id')} FROM tickets WHERE id % 10 = 3 AND id % 100 < 10"
            ),
            p,
        )
    with app.app_context():
        with db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("COMMIT"))
                for table in (*TABLES, "retention_holds"):
                    conn.execute(text(f"ANALYZE {table}"))


def counts(app: Any) -> dict[str, int]:
    """Rows in each table the run deletes from."""
    with app.app_context(), db.engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() or 0) for t in TABLES}


def held_left(app: Any) -> tuple[int, int]:
    """(held tickets, of them still stored)."""
    with app.app_context(), db.engine.connect() as conn:
        held = int(conn.execute(text("SELECT COUNT(*) FROM retention_holds")).scalar() or 0)
        kept = int(conn.execute(text("SELECT COUNT(*) FROM tickets WHERE id IN (SELECT ticket_id FROM retention_holds)")).scalar() or 0)
    return held, kept


def _in(ids: list[int], pg: bool) -> tuple[str, Any]:
    """`= ANY(%s)` with the list (psycopg), or `IN (?, ...)` with the ids (sqlite3)."""
    return ("= ANY(%s)", (ids,)) if pg else (f"IN ({','.join('?' * len(ids))})", ids)


def ceiling(app: Any) -> tuple[int, float]:
    """Delete the due, unheld rows by id in batches of BATCH with the bare DBAPI; (rows, seconds)."""
    with app.app_context():
        raw = db.engine.raw_connection()
        pg = db.engine.dialect.name == "postgresql"
    mark = "%s" if pg else "?"
    due = utcnow() - dt.timedelta(days=365)
    try:
        cur = raw.cursor()
        sql = f"SELECT id FROM tickets WHERE status = 'closed' AND closed_at <= {mark} AND id NOT IN (SELECT ticket_id FROM retention_holds) ORDER BY id"
        cur.execute(sql, (due if pg else due.isoformat(sep=" "),))
        ticket_ids = [r[0] for r in cur.fetchall()]
        rows, began = 0, time.perf_counter()
        for start in range(0, len(ticket_ids), BATCH):
            chunk = ticket_ids[start : start + BATCH]
            clause, arg = _in(chunk, pg)
            cur.execute(f"SELECT id FROM ticket_messages WHERE ticket_id {clause}", arg)
            message_ids = [r[0] for r in cur.fetchall()]
            clause, arg = _in(message_ids, pg)
            cur.execute(f"SELECT id, blob_id FROM ticket_attachments WHERE message_id {clause}", arg)
            files = cur.fetchall()
            blob_ids = [f[1] for f in files]
            steps = [("ticket_attachments", "id", [f[0] for f in files]), ("ticket_messages", "id", message_ids), ("tickets", "id", chunk)]
            steps += [("blob_chunks", "blob_id", blob_ids), ("blobs", "id", blob_ids)]
            for table, column, ids in steps:
                for part in range(0, len(ids), BATCH):
                    clause, arg = _in(ids[part : part + BATCH], pg)
                    cur.execute(f"DELETE FROM {table} WHERE {column} {clause}", arg)
                    rows += cur.rowcount
            raw.commit()
        return rows, time.perf_counter() - began
    finally:
        raw.close()


def desk_run(app: Any) -> tuple[int, float]:
    """The desk's retention run of closed-ticket content; (rows deleted, seconds)."""
    before = counts(app)
    began = time.perf_counter()
    with app.app_context(), run_lock(app.config, db.engine):
        runner.execute(db.session_scope, only_category="closed_ticket_content", by=Principal.system("bench"), clock=utcnow)
    seconds = time.perf_counter() - began
    after = counts(app)
    return sum(before.values()) - sum(after.values()), seconds


def reset(app: Any) -> None:
    """Empty the generated tables (and the run's own rows) for the next measurement, ids starting at 1 again."""
    tables = ("retention_holds", *TABLES[:3], "blob_chunks", "blobs", "retention_runs", "deletion_runs", "job_state")
    with app.app_context(), db.session_scope() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))  # the bench database: nothing else refers to these rows
            return
        for table in tables:
            s.execute(text(f"DELETE FROM {table}"))  # SQLite: rowids start again after the largest left (none)


def measure(url: str, folder: Path, count: int) -> None:
    desk_migrations.upgrade(url)
    config = DevelopmentConfig.from_env({"DATABASE_URL": url, "DESK_INSTANCE_PATH": str(folder), "MASTER_SECRET": SECRET, "SECRET_KEY": "k" * 40})
    app = create_app(config)
    with app.app_context(), db.session_scope() as s:
        cid = create_controller(
            s, ControllerInput(name="Bench Retention GmbH", dsr_contacts=["dpo@bench.example"]), by=Principal.system("bench"), now=utcnow()
        ).id
    started = time.perf_counter()
    generate(app, cid, count)
    print(f"generated {count:,} tickets ({counts(app)}) in {time.perf_counter() - started:.0f} s")
    rows, seconds = ceiling(app)
    print(f"ceiling: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
    reset(app)
    generate(app, cid, count)
    print(f"generated again: {counts(app)}")
    desk_rows, desk_seconds = desk_run(app)
    held, kept = held_left(app)
    print(f"desk:    {desk_rows:,} rows in {desk_seconds:.1f} s = {desk_rows / desk_seconds:,.0f} rows/s ({held} held tickets, {kept} still stored)")
    print(f"ratio:   {(desk_rows / desk_seconds) / (rows / seconds):.2f} (goal >= 0.3); nothing held deleted: {held == kept}")
    db.state(app).engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite (WAL) in a temporary folder instead of Postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite:
            measure(f"sqlite:///{tmp}/bench.sqlite3", Path(tmp), args.tickets)
        else:
            with fresh_postgres("retention") as url:
                measure(url, Path(tmp), args.tickets)


if __name__ == "__main__":
    main()
