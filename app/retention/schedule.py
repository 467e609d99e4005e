"""The cross-process lock of retention runs, and the daily scheduled run (`workers.retention`, at RETENTION_RUN_AT).

One run at a time across processes and hosts sharing the database: the lock pattern of `keys rotate`
(`app.jobs.locks`: a Postgres advisory lock on its own connection, or a file lock for SQLite), freed by the
server or the kernel when the holder dies, so a run killed with -9 can be resumed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from app.jobs.batch import Clock, SessionScope
from app.jobs.locks import ProcessLock, advisory_key
from app.principal import Principal
from app.retention import runner

log = logging.getLogger(__name__)

SCHEDULED = Principal.system("retention schedule")


def run_lock(config: Mapping[str, Any], engine: Engine) -> ProcessLock:
    """The lock every retention run takes (CLI and scheduled job alike)."""
    return ProcessLock(engine, advisory_key("retention run"), Path(config["INSTANCE_PATH"]) / "retention-run.lock")


def scheduled_run(sessions: SessionScope, config: Mapping[str, Any], engine: Engine, *, clock: Clock) -> int | None:
    """The daily run: every covered category and controller (resuming an unfinished run first); None when another run holds the lock."""
    lock = run_lock(config, engine)
    if not lock.acquire():
        log.info("retention: a run is already under way; the scheduled run is skipped")
        return None
    try:
        result = runner.execute(sessions, by=SCHEDULED, clock=clock)
    finally:
        lock.release()
    log.info("retention: run %s finished (%d batches)", result.run_id, result.progress.batches)
    return result.run_id
