"""The database's own copies of what a run deleted or overwrote (SQLite; Postgres keeps dead tuples of ciphertext).

SQLite keeps deleted and overwritten bytes in free space and in the WAL:
every batch runs with `PRAGMA secure_delete=ON` (freed content is zeroed,
cost proportional to what is changed) and the finished run truncates the WAL
(`wal_checkpoint(TRUNCATE)`); VACUUM would also work but rewrites the whole
file under an exclusive lock. Postgres keeps dead tuples (ciphertext only:
every personal field is encrypted) until autovacuum reclaims them.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session


def secure_delete(session: Session) -> None:
    """SQLite: zero freed content on this session's connection (see the module docstring)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")


def truncate_wal(engine: Engine) -> str:
    """SQLite: copy the WAL into the database and truncate it, so no old page image survives; 'ok', 'busy' or 'n/a'."""
    if engine.dialect.name != "sqlite":
        return "n/a"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # Best effort: while another connection reads, TRUNCATE waits for it up to the busy timeout and then
        # reports busy (the next checkpoint truncates). Wait a second, not the desk's 30 s write timeout.
        cursor.execute("PRAGMA busy_timeout")
        current = cursor.fetchone()
        previous = int(current[0]) if current else 30_000
        cursor.execute("PRAGMA busy_timeout = 1000")
        try:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            row = cursor.fetchone()
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {previous}")  # the connection goes back to the pool
        busy = row[0] if row else 0
        cursor.close()
    finally:
        raw.close()
    return "busy" if busy else "ok"
