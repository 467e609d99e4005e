"""A lock conflict while a message is stored is tried again in the process, not handed back to the MTA (app.db.retry_contention).

`mail ingest` and `mail lmtp` wrap the ingest in `retry_contention`: an error that is a lock conflict (SQLite
busy or locked, Postgres serialization failure, deadlock, lock timeout) runs the transaction again after a
short pause, so concurrent deliveries do not make Postfix defer a message for minutes; any other error, and
a conflict that lasts, still propagates (exit 75 / 451, the MTA keeps the message). The errors here are real
ones, provoked on a real database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from app.db import is_contention, retry_contention
from app.mail.pipemode import fault_name
from config.settings import normalise_database_url
from tests.databases import ON_POSTGRES, TEST_DATABASE_URL


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one SQLite file that give up at once when locked (timeout 0)."""
    url = f"sqlite:///{tmp_path / 'locks.sqlite3'}"
    engines = [create_engine(url, connect_args={"timeout": 0}, isolation_level="AUTOCOMMIT") for _ in range(2)]
    with engines[0].connect() as conn:
        conn.execute(text("PRAGMA journal_mode=WAL"))
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engines[0], engines[1]
    for engine in engines:
        engine.dispose()


def _busy_error(holder: Engine, other: Engine) -> OperationalError:
    """The error SQLite gives a second writer while `holder` holds the write lock."""
    with holder.connect() as locked:
        locked.execute(text("BEGIN IMMEDIATE"))
        with pytest.raises(OperationalError) as caught, other.connect() as conn:
            conn.execute(text("BEGIN IMMEDIATE"))
        locked.execute(text("ROLLBACK"))
    return caught.value


def test_sqlite_busy_is_contention_and_is_named_without_the_statement(sqlite_pair: tuple[Engine, Engine]) -> None:
    error = _busy_error(*sqlite_pair)
    assert is_contention(error)
    assert fault_name(error) == "OperationalError/SQLITE_BUSY"


def test_a_missing_table_and_an_unreachable_database_are_not_contention(sqlite_pair: tuple[Engine, Engine], tmp_path: Path) -> None:
    with pytest.raises(OperationalError) as missing, sqlite_pair[0].connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not is_contention(missing.value)
    unreadable = create_engine(f"sqlite:///{tmp_path / 'no-folder' / 'x.sqlite3'}")
    with pytest.raises(OperationalError) as unopened:
        unreadable.connect()
    assert not is_contention(unopened.value)
    assert not is_contention(ValueError("not a database error"))


def test_a_conflict_that_clears_is_retried_with_growing_pauses_and_the_work_runs_once(sqlite_pair: tuple[Engine, Engine]) -> None:
    holder, other = sqlite_pair
    pauses: list[float] = []
    locked = holder.connect()
    locked.execute(text("BEGIN IMMEDIATE"))

    def store() -> int:
        with other.connect() as conn:
            conn.execute(text("BEGIN IMMEDIATE"))
            conn.execute(text("INSERT INTO t (x) VALUES (1)"))
            conn.execute(text("COMMIT"))
        return 7

    def wait(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the other writer commits while we wait the second time
            locked.execute(text("ROLLBACK"))
            locked.close()

    assert retry_contention(store, attempts=3, pause=0.5, sleep=wait) == 7
    assert pauses == [0.5, 1.0]
    with other.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_a_conflict_that_lasts_propagates_after_the_last_attempt(sqlite_pair: tuple[Engine, Engine]) -> None:
    holder, other = sqlite_pair
    pauses: list[float] = []
    with holder.connect() as locked:
        locked.execute(text("BEGIN IMMEDIATE"))

        def store() -> None:
            with other.connect() as conn:
                conn.execute(text("BEGIN IMMEDIATE"))

        with pytest.raises(OperationalError) as caught:
            retry_contention(store, attempts=3, pause=0.1, sleep=pauses.append)
        locked.execute(text("ROLLBACK"))
    assert is_contention(caught.value) and pauses == [0.1, 0.2]


def test_any_other_error_propagates_at_once(sqlite_pair: tuple[Engine, Engine]) -> None:
    pauses: list[float] = []
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        with sqlite_pair[0].connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(OperationalError):
        retry_contention(broken, sleep=pauses.append)
    assert calls == [1] and pauses == []


@pytest.mark.skipif(not ON_POSTGRES, reason="Postgres lock timeouts need the Postgres run (TEST_DATABASE_URL)")
def test_postgres_lock_timeout_is_contention() -> None:
    assert TEST_DATABASE_URL is not None
    engine = create_engine(normalise_database_url(TEST_DATABASE_URL, variable="TEST_DATABASE_URL"))
    try:
        with engine.connect() as holder, engine.connect() as other:
            holder.execute(text("SELECT pg_advisory_xact_lock(424242)"))
            other.execute(text("SET LOCAL lock_timeout = '50ms'"))
            with pytest.raises(OperationalError) as caught:
                other.execute(text("SELECT pg_advisory_xact_lock(424242)"))
            assert fault_name(caught.value) == "OperationalError/55P03"
            assert is_contention(caught.value)
    finally:
        engine.dispose()
