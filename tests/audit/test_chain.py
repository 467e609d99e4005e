"""The audit chain on really committed databases: the database refuses change, and tampering is found.

Each test makes its own database (the suite's shared one is rolled back per
test and must keep its triggers). Triggers are switched off only to play the
attacker who owns the database; `verify` must still name the first broken event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.audit import checkpoint as cp
from app.audit import service as audit
from app.audit.chain import event_hash
from app.audit.models import AuditEvent
from app.audit.verify import VerifyResult, verify_chain
from app.db import make_engine
from app.principal import Principal
from tests.databases import ON_POSTGRES, migrated_database

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
KEYS = {1: b"k" * 32, 2: b"K" * 32}


def key_for(version: int) -> bytes:
    return KEYS[version]  # KeyError is a LookupError: "version not configured"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with migrated_database(tmp_path, "audit") as url:
        eng = make_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints.log"


def append(engine: Engine, n: int, *, start: int = 0, action: str = "test.event") -> None:
    with Session(engine) as session:
        for i in range(start, start + n):
            audit.record(
                session,
                by=Principal.staff(1 + i % 3),
                action=action,
                target_type="controller",
                target_id=i,
                controller_id=i % 4,
                details={"count": i, "kinds": {"dsr": 1}},
                now=T0 + dt.timedelta(seconds=i),
            )
        session.commit()


def sign_head(engine: Engine, path: Path, version: int = 1) -> cp.Checkpoint:
    with Session(engine) as session:
        checkpoint, _ = audit.take_checkpoint(session, path, key_version=version, key_for=key_for, now=T0 + dt.timedelta(hours=1))
    return checkpoint


def verify(engine: Engine, path: Path) -> VerifyResult:
    with Session(engine) as session:
        return verify_chain(session, path, key_for)


def attack(engine: Engine, *statements: str) -> None:
    """Run SQL as the database owner with the append-only triggers switched off."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        for statement in statements:
            conn.execute(text(statement))


def count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


REFUSED = ["UPDATE audit_events SET action = 'x' WHERE seq = 2", "DELETE FROM audit_events WHERE seq = 2", "DELETE FROM audit_events"]
if ON_POSTGRES:
    REFUSED.append("TRUNCATE audit_events")  # SQLite has no TRUNCATE


@pytest.mark.parametrize("statement", REFUSED)
def test_the_database_refuses_to_change_the_log(engine: Engine, checkpoints: Path, statement: str) -> None:
    append(engine, 3)
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    assert count(engine) == 3
    assert verify(engine, checkpoints).ok


def test_an_intact_chain_verifies_with_its_checkpoint(engine: Engine, checkpoints: Path) -> None:
    append(engine, 5)
    sign_head(engine, checkpoints)
    append(engine, 2, start=5)
    result = verify(engine, checkpoints)
    assert result.ok and result.events == 7
    assert result.message() == "ok, 7 events, last checkpoint at seq 5 signed 2026-11-21T13:00:00.000000Z"


def test_an_empty_chain_verifies(engine: Engine, checkpoints: Path) -> None:
    sign_head(engine, checkpoints)
    assert verify(engine, checkpoints).ok


def test_an_edited_event_is_named(engine: Engine, checkpoints: Path) -> None:
    append(engine, 10)
    attack(engine, "UPDATE audit_events SET target_id = '999' WHERE seq = 6")
    result = verify(engine, checkpoints)
    assert not result.ok and result.broken_seq == 6
    assert "seq 6" in result.message()


def test_an_edited_event_with_a_recomputed_hash_breaks_the_next_link(engine: Engine, checkpoints: Path) -> None:
    append(engine, 10)
    with Session(engine) as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.seq == 4)).one()
        forged = event_hash(dataclasses.replace(row.link(), action="forged"))
    attack(engine, f"UPDATE audit_events SET action = 'forged', hash = '{forged}' WHERE seq = 4")
    result = verify(engine, checkpoints)
    assert not result.ok and result.broken_seq == 5 and "prev_hash" in result.reason


def test_a_deleted_event_is_named(engine: Engine, checkpoints: Path) -> None:
    append(engine, 10)
    attack(engine, "DELETE FROM audit_events WHERE seq = 7")
    result = verify(engine, checkpoints)
    assert not result.ok and result.broken_seq == 7 and "missing" in result.reason


def test_two_swapped_events_are_named(engine: Engine, checkpoints: Path) -> None:
    append(engine, 10)
    attack(
        engine,
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 8",
        "UPDATE audit_events SET seq = 8 WHERE seq = -1",
    )
    result = verify(engine, checkpoints)
    assert not result.ok and result.broken_seq == 3


def test_a_cut_tail_fails_against_the_checkpoint(engine: Engine, checkpoints: Path) -> None:
    # Given a checkpoint at seq 10 written outside the database
    append(engine, 10)
    sign_head(engine, checkpoints)
    # When the owner deletes the last events, the remaining chain is internally valid
    attack(engine, "DELETE FROM audit_events WHERE seq > 6")
    # Then only the checkpoint can tell, and it does
    result = verify(engine, checkpoints)
    assert not result.ok and result.broken_seq == 7
    assert "chain ends at seq 6" in result.reason


def test_a_cut_and_recomputed_tail_fails_against_the_checkpoint(engine: Engine, checkpoints: Path) -> None:
    append(engine, 10)
    sign_head(engine, checkpoints)
    # The attacker deletes events 5.. and writes a new, well-linked tail beyond the checkpoint.
    attack(engine, "DELETE FROM audit_events WHERE seq >= 5")
    append(engine, 8, start=100, action="test.rewritten")
    with Session(engine) as session:
        assert audit.chain_head(session)[0] == 12
    result = verify(engine, checkpoints)
    assert not result.ok and result.broken_seq == 10
    assert "checkpoint file line 1" in result.reason


def test_a_forged_or_foreign_checkpoint_is_refused(engine: Engine, checkpoints: Path) -> None:
    append(engine, 3)
    good = sign_head(engine, checkpoints)
    forged = cp.Checkpoint(seq=good.seq, hash="f" * 64, signed_at=good.signed_at, key_version=1, mac=good.mac)
    with checkpoints.open("a") as handle:
        handle.write(forged.line() + "\n")
    result = verify(engine, checkpoints)
    assert not result.ok and "line 2 has a bad signature" in result.reason

    checkpoints.write_text(cp.sign(3, good.hash, key_version=3, key_for=lambda v: b"z" * 32, now=T0).line() + "\n")
    result = verify(engine, checkpoints)
    assert not result.ok and "master key version 3, which is not configured" in result.reason


def test_a_checkpoint_under_a_retired_master_version_is_superseded_by_a_newer_one(engine: Engine, checkpoints: Path) -> None:
    # Given a checkpoint signed under master version 3, whose secret has since been removed
    append(engine, 4)
    with Session(engine) as session:
        seq, head = audit.chain_head(session)
    checkpoints.write_text(cp.sign(seq, head, key_version=3, key_for=lambda v: b"z" * 32, now=T0).line() + "\n")
    assert not verify(engine, checkpoints).ok
    # When the head is signed again under a configured version, the old line is covered by the new one
    sign_head(engine, checkpoints, version=2)
    assert verify(engine, checkpoints).ok


def test_checkpoints_record_the_master_version_and_skip_an_unchanged_head(engine: Engine, checkpoints: Path) -> None:
    append(engine, 2)
    sign_head(engine, checkpoints, version=1)
    sign_head(engine, checkpoints, version=1)
    sign_head(engine, checkpoints, version=2)
    lines = checkpoints.read_text().splitlines()
    assert [line.split()[4] for line in lines] == ["1", "2"]
    assert verify(engine, checkpoints).ok


@pytest.mark.slow
def test_concurrent_writers_make_one_linear_chain(engine: Engine, checkpoints: Path) -> None:
    # 8 threads x 500 appends, each append its own committed transaction.
    threads, per_thread = 8, 500
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with Session(engine) as session:
                    audit.record(session, by=Principal.staff(n), action="test.concurrent", target_type="thread", target_id=n, details={"i": i}, now=T0)
                    session.commit()
        except BaseException as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    sign_head(engine, checkpoints)
    result = verify(engine, checkpoints)
    assert result.ok, result.message()
    assert result.events == threads * per_thread == result.head_seq
