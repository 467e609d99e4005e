"""`appended_at_end`: a block's events are queued and appended at its end, in call order, as one lock, head and INSERT.

The same chain as recording each at once (same events, order and hashes, `audit verify` passes); a rollback takes
the queue along, a commit writes it first; a savepoint inside the block may not record. Each test but the last makes
its own committed database (as tests/audit/test_head.py does).
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
from app.audit.chain import event_hash
from app.audit.models import AuditEvent
from app.audit.personal import open_parts
from app.audit.verify import verify_chain
from app.db import make_engine
from app.principal import Principal
from tests.databases import migrated_database

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
BY = Principal.staff(1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with migrated_database(tmp_path, "auditend") as url:
        eng = make_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


def note(session: Session, n: int, *, now: dt.datetime = T0) -> AuditEvent:
    return audit.record(session, by=BY, action="test.end", target_type="thread", target_id=n, details={"n": n}, now=now)


def chain(engine: Engine, tmp_path: Path) -> tuple[bool, list[tuple[int, str | None, str]]]:
    """Whether the chain verifies, and its (seq, target_id, action) in order."""
    with Session(engine) as session:
        result = verify_chain(session, tmp_path / "checkpoints.log", lambda _v: b"k" * 32)
        rows = [(e.seq, e.target_id, e.action) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    return result.ok, rows


def test_the_block_appends_its_events_at_its_end_in_call_order_with_one_head_read_and_one_insert(engine: Engine, tmp_path: Path) -> None:
    statements: list[str] = []
    with Session(engine) as session:
        note(session, 1)  # before the block: appended at once, the head kept
        listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: statements.append(" ".join(a[2].split())))
        with audit.appended_at_end(session):
            second = note(session, 2, now=T0 + dt.timedelta(seconds=1))
            more = audit.record_all(session, [audit.Entry("test.end", "thread", 3), audit.Entry("test.end", "thread", 4)], by=BY, now=T0)
            # Given nothing written yet: the events handed out have no seq, id or hash
            assert statements == [] and (second.seq, second.id, second.hash) == (None, None, None)
        event.remove(session.connection(), "before_cursor_execute", listen)
        # Then INSERTs only at the end (the lock is held since the first event, the head kept): one on Postgres (SQLAlchemy
        # sends SQLite a row at a time when the ids must come back in order), and the events filled in
        assert {s.split(" (")[0] for s in statements} == {"INSERT INTO audit_events"}
        assert engine.dialect.name != "postgresql" or len(statements) == 1
        assert [e.seq for e in (second, *more)] == [2, 3, 4] and second.prev_hash is not None and more[0].prev_hash == second.hash
        assert second.hash == event_hash(second.link()) and second.occurred_at == T0 + dt.timedelta(seconds=1)
        assert session.get(AuditEvent, second.id) is second  # in the session, loaded
        session.commit()
    assert chain(engine, tmp_path) == (True, [(1, "1", "test.end"), (2, "2", "test.end"), (3, "3", "test.end"), (4, "4", "test.end")])


def test_a_first_append_at_the_end_takes_the_lock_and_reads_the_head_there(engine: Engine, tmp_path: Path) -> None:
    statements: list[str] = []
    with Session(engine) as session:
        listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: statements.append(" ".join(a[2].split())))
        with audit.appended_at_end(session):
            note(session, 1)
            note(session, 2)
            assert statements == []
        event.remove(session.connection(), "before_cursor_execute", listen)
        session.commit()
    assert "audit_events" in statements[0] and {s.split(" (")[0] for s in statements[1:]} == {"INSERT INTO audit_events"}
    if engine.dialect.name == "postgresql":
        assert len(statements) == 2 and statements[0].startswith("SELECT pg_advisory_xact_lock(")
    assert chain(engine, tmp_path) == (True, [(1, "1", "test.end"), (2, "2", "test.end")])


def test_a_rollback_takes_the_queue_along_and_the_next_transaction_links_to_what_was_committed(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        note(session, 1)
        session.commit()
        with pytest.raises(RuntimeError), audit.appended_at_end(session):
            note(session, 2)
            raise RuntimeError("the work failed")
        session.rollback()
        with audit.appended_at_end(session):
            after = note(session, 3)
        session.commit()
        assert after.seq == 2
    assert chain(engine, tmp_path) == (True, [(1, "1", "test.end"), (2, "3", "test.end")])


def test_a_block_that_raised_still_has_its_events_appended_if_its_transaction_commits(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        with pytest.raises(RuntimeError), audit.appended_at_end(session):
            note(session, 1)
            raise RuntimeError("caught by the caller, who commits what was done")
        note(session, 2)  # appended at once, after the queued event: the call order
        session.commit()
    assert chain(engine, tmp_path) == (True, [(1, "1", "test.end"), (2, "2", "test.end")])


def test_a_commit_inside_the_block_appends_the_queue_first(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, audit.appended_at_end(session):
        note(session, 1)
        session.commit()
        note(session, 2)
        session.rollback()  # the second transaction's event goes with it
        note(session, 3)
    # The block's end appended the third; nothing committed it
    assert chain(engine, tmp_path) == (True, [(1, "1", "test.end")])


def test_no_event_may_be_recorded_in_a_savepoint_inside_the_block_and_chain_head_sees_the_queue(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        with audit.appended_at_end(session):
            note(session, 1)
            assert audit.chain_head(session)[0] == 1  # the queue appended first
            with pytest.raises(audit.AuditError), session.begin_nested():
                note(session, 2)
            note(session, 3)
        session.commit()
    assert chain(engine, tmp_path) == (True, [(1, "1", "test.end"), (2, "3", "test.end")])


def test_writers_using_blocks_make_one_linear_chain(engine: Engine, tmp_path: Path) -> None:
    threads, transactions = 4, 20
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(transactions):
                with Session(engine) as session:
                    with audit.appended_at_end(session):
                        for j in range(3):
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
    ok, rows = chain(engine, tmp_path)
    assert ok and len(rows) == threads * transactions * 3
    targets = [int(target) for _, target, _ in rows if target is not None]
    assert all(targets[k] // 10 == targets[k + 2] // 10 for k in range(0, len(targets), 3))


def test_a_personal_part_queued_is_sealed_under_its_seq_at_the_end(session: Session) -> None:
    with audit.appended_at_end(session):
        plain = note(session, 1)
        event_ = audit.record(session, by=BY, action="test.end", target_type="user", personal={"client_address": "203.0.113.9"}, now=T0)
        assert event_.personal_ct is None
    assert event_.seq == plain.seq + 1 and event_.personal_ct is not None and event_.hash == event_hash(event_.link())
    part = open_parts(session, [(event_.seq, event_.personal_ct)])[event_.seq]
    assert part.values == {"client_address": "203.0.113.9"}
