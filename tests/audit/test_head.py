"""The chain head a transaction keeps: later events of the transaction append with one INSERT, and the chain stays linear.

Each test makes its own committed database (as tests/audit/test_chain.py does): the
head is only worth keeping because the chain lock is held until commit, so the tests
commit, roll back savepoints and write from several threads at once.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.audit.models import AuditEvent
from app.audit.verify import verify_chain
from app.db import make_engine
from app.principal import Principal
from tests.databases import ON_POSTGRES, migrated_database

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with migrated_database(tmp_path, "audithead") as url:
        eng = make_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


def note(session: Session, n: int) -> tuple[int, str, str]:
    """Append one event; its (seq, prev_hash, hash), read before the commit expires it."""
    added = audit.record(session, by=Principal.staff(1), action="test.head", target_type="thread", target_id=n, now=T0)
    return added.seq, added.prev_hash, added.hash


def chain_ok(engine: Engine, tmp_path: Path) -> tuple[bool, int]:
    with Session(engine) as session:
        result = verify_chain(session, tmp_path / "checkpoints.log", lambda _v: b"k" * 32)
    return result.ok, result.events


def test_later_events_of_a_transaction_are_one_insert_each(engine: Engine, tmp_path: Path) -> None:
    statements: list[str] = []
    with Session(engine) as session:
        first = note(session, 1)
        listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: statements.append(" ".join(a[2].split())))
        second, third = note(session, 2), note(session, 3)
        event.remove(session.connection(), "before_cursor_execute", listen)
        session.commit()
    # No lock and no head query for the second and third event: the lock taken for the first is still held.
    assert [s.split(" (")[0] for s in statements] == ["INSERT INTO audit_events", "INSERT INTO audit_events"]
    assert (second[0], second[1], third[0], third[1]) == (first[0] + 1, first[2], first[0] + 2, second[2])
    assert chain_ok(engine, tmp_path) == (True, 3)


def test_a_rolled_back_savepoint_takes_its_events_and_the_next_one_links_to_what_is_left(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        first = note(session, 1)
        savepoint = session.begin_nested()
        note(session, 2)
        savepoint.rollback()
        after = note(session, 3)
        session.commit()
    assert after[:2] == (first[0] + 1, first[2])
    assert chain_ok(engine, tmp_path) == (True, 2)


def test_a_session_reads_the_head_again_in_its_next_transaction(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as mine, Session(engine) as other:
        note(mine, 1)
        mine.commit()
        theirs = note(other, 2)
        other.commit()
        again = note(mine, 3)  # a new transaction of the first session: the head it kept is stale
        mine.commit()
    assert again[:2] == (theirs[0] + 1, theirs[2])
    assert chain_ok(engine, tmp_path) == (True, 3)


def test_writers_of_several_events_a_transaction_make_one_linear_chain(engine: Engine, tmp_path: Path) -> None:
    # 4 threads x 30 transactions x 3 events, each transaction committed: the kept head never forks the chain.
    threads, transactions, per_transaction = 4, 30, 3
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(transactions):
                with Session(engine) as session:
                    for j in range(per_transaction):
                        note(session, n * 1000 + i * 10 + j)
                    session.commit()
        except BaseException as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert chain_ok(engine, tmp_path) == (True, threads * transactions * per_transaction)
    with Session(engine) as session:
        # Each transaction's events are consecutive in the chain (the lock was held from its first to its commit).
        targets = [int(t) for t in session.scalars(select(AuditEvent.target_id).order_by(AuditEvent.seq))]
    assert all(targets[k] // 10 == targets[k + 2] // 10 for k in range(0, len(targets), per_transaction))


@pytest.mark.skipif(not ON_POSTGRES, reason="the chain lock is a Postgres advisory lock (TEST_DATABASE_URL); SQLite serialises writers itself")
def test_a_writer_waiting_for_the_chain_lock_appends_to_the_head_committed_while_it_waited(engine: Engine, tmp_path: Path) -> None:
    # The lock and the head are one round trip: the head must still be read after the lock is held (its own snapshot).
    with Session(engine) as holder:
        first = note(holder, 1)  # holds the chain lock until its commit
        waited: list[tuple[int, str, str]] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                with Session(engine) as session:
                    session.execute(select(1))  # its transaction began before the holder commits
                    waited.append(note(session, 2))
                    session.commit()
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive() and not waited  # waiting for the chain lock
        holder.commit()
        thread.join()
    assert errors == []
    assert waited[0][:2] == (first[0] + 1, first[2])
    assert chain_ok(engine, tmp_path) == (True, 2)
