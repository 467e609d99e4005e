"""Cross-process locks: the scheduler's leadership, and long jobs that must never run twice at once.

Postgres: a session-level advisory lock held on a dedicated connection; the server
releases it when that connection ends, so a process killed with -9 frees it at once.
SQLite: an exclusive `flock` on a file; the kernel releases it when the process dies.
No lease or expiry to tune, and a crashed job can be resumed right away.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from pathlib import Path
from types import TracebackType
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from app.exceptions import Conflict

log = logging.getLogger(__name__)


class LockHeld(Conflict):
    """Another process holds the lock."""


def advisory_key(name: str) -> int:
    """A stable Postgres advisory-lock key (signed 64-bit) for a lock name."""
    return int.from_bytes(hashlib.sha256(f"dsr-desk/{name}".encode()).digest()[:8], "big", signed=True)


class ProcessLock:
    """An advisory lock on a dedicated Postgres connection, or a file lock for SQLite."""

    def __init__(self, engine: Engine, key: int, lock_file: Path) -> None:
        self.engine = engine
        self.key = key
        self.lock_file = lock_file
        self._conn: Connection | None = None
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock right now (for Postgres: its connection is still alive)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
            except SQLAlchemyError:
                log.warning("lost the connection holding a process lock")
                conn, self._conn = self._conn, None
                try:
                    conn.invalidate()  # the server session, and with it the lock, is gone
                    conn.close()
                except SQLAlchemyError:  # a rollback listener may refuse the dead connection: it is gone either way
                    pass
                return False
            return True
        return self._file is not None

    def acquire(self) -> bool:
        """Try once to take the lock; False when another process holds it."""
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_file, "a+")  # held open for as long as the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        """Let go (a no-op when not held)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> ProcessLock:
        if not self.acquire():
            raise LockHeld(f"another process holds the lock {self.lock_file.stem!r}")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
