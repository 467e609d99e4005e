"""One shape for batch jobs (ingest, outbox delivery, key rotation, deletion runs).

A job takes a *session scope* (a factory of context managers that commit on
success and roll back on error, e.g. `db.session_scope`) and a *clock*; each
batch runs in its own transaction, committed before the next starts, so a
`kill -9` loses at most the batch in flight and the saved cursor says where
to resume. Services inside a batch take `(session, ..., *, by, now)` and only
flush.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

SessionScope = Callable[[], AbstractContextManager[Session]]
Clock = Callable[[], dt.datetime]
T = TypeVar("T")


def in_transaction(sessions: SessionScope, work: Callable[[Session, dt.datetime], T], *, clock: Clock) -> T:
    """Run `work(session, now)` in one transaction of `sessions` (committed when it returns, rolled back if it raises)."""
    with sessions() as session:
        return work(session, clock())


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch loop ended: batches committed, and whether the job finished or was asked to stop."""

    batches: int
    finished: bool

    @property
    def stopped(self) -> bool:
        """True when the loop ended before the job was done (asked to stop, or `max_batches` reached)."""
        return not self.finished


def run_batches(
    sessions: SessionScope,
    step: Callable[[Session, dt.datetime], bool],
    *,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] = lambda _n: None,
    max_batches: int | None = None,
) -> BatchProgress:
    """Call `step(session, now)` in its own committed transaction until it returns True (the job is done).

    After each committed batch `on_batch(batches_so_far)` is called (progress), then `should_stop()` is
    asked: the loop stops there, between transactions, so the job's own cursor names exactly where.
    """
    batches = 0
    while max_batches is None or batches < max_batches:
        finished = in_transaction(sessions, step, clock=clock)
        batches += 1
        if finished:
            return BatchProgress(batches, True)
        on_batch(batches)
        if should_stop():
            break
    return BatchProgress(batches, False)
