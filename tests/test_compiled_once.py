"""app.compiled_once.one_row: a statement compiled once and sent on the DBAPI cursor behaves as `Connection.execute`.

The ingest path's writes go through it (app.crypto.kept_active.write_checked). What the caller relies on: the same
row, the parameters through their types' processors (JSON, UTC date-times: a naive one refused), the cursor events
seen by statement counters, SQLAlchemy's exceptions (an IntegrityError is how ingest tells a concurrent duplicate; a
lost connection is a temporary fault), and a fallback to `Connection.execute` where results need processing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    event,
    insert,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError

from app.compiled_once import _cache, begin_with, last_rows, one_row
from app.db import UTCDateTime, make_engine
from app.mail.inbound import is_temporary
from tests.databases import ON_POSTGRES, fresh_database

metadata = MetaData()
things = Table(
    "compiled_once_things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), unique=True, nullable=False),
    Column("notes", JSON, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
AT = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
# Built once, as the callers build theirs: the cache is keyed by the statement object.
INSERT = (
    insert(things)
    .values(name=bindparam("name"), notes=bindparam("notes", type_=JSON), at=bindparam("at", type_=UTCDateTime()))
    .returning(things.c.id, things.c.name)
)
counted = Table(
    "compiled_once_counted", metadata, Column("id", Integer, primary_key=True), Column("name", String(40)), Column("counter", Integer, default=lambda: 7)
)
INSERT_COUNTED = insert(counted).values(name=bindparam("name")).returning(counted.c.id, counted.c.counter)
NUMERIC = select(literal(decimal.Decimal("1.50"), Numeric(4, 2)).label("n"))
READ_AT = select(things.c.at, things.c.notes).where(things.c.name == bindparam("name"))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with fresh_database(tmp_path, "compiled") as url:
        made = make_engine(url)
        metadata.create_all(made)
        yield made
        made.dispose()


def test_the_row_is_written_with_its_types_processed_and_the_statement_is_seen_by_cursor_listeners(engine: Engine) -> None:
    seen: list[str] = []
    listen = event.listens_for(engine, "before_cursor_execute")(lambda *args: seen.append(args[2]))
    with engine.begin() as conn:
        row = one_row(conn, INSERT, {"name": "first", "notes": [{"code": "x"}], "at": AT})
        again = one_row(conn, INSERT, {"name": "second", "notes": [], "at": AT})
    event.remove(engine, "before_cursor_execute", listen)
    assert row is not None and again is not None and row[1] == "first" and again[0] == row[0] + 1
    # On Postgres (psycopg, named parameters) it went on the DBAPI cursor; SQLite's positional style takes execute
    assert (_cache[id(INSERT)].text is not None) == ON_POSTGRES
    assert sum("INSERT INTO compiled_once_things" in s for s in seen) == 2
    with engine.connect() as conn:
        stored = conn.execute(READ_AT, {"name": "first"}).one()
    # The JSON serialised and the time stored as UTC, as Connection.execute would have (read back the ordinary way)
    assert stored.notes == [{"code": "x"}] and stored.at == AT and stored.at.tzinfo == dt.UTC


def test_a_naive_datetime_is_refused_by_the_type_as_it_would_be_by_execute(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises((StatementError, ValueError)):
        one_row(conn, INSERT, {"name": "naive", "notes": [], "at": AT.replace(tzinfo=None)})
    with engine.connect() as conn:
        assert conn.execute(select(things.c.id)).first() is None


def test_a_unique_violation_is_sqlalchemys_integrity_error_and_the_transaction_rolls_back(engine: Engine) -> None:
    with engine.begin() as conn:
        one_row(conn, INSERT, {"name": "taken", "notes": [], "at": AT})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        one_row(conn, INSERT, {"name": "other", "notes": [], "at": AT})
        one_row(conn, INSERT, {"name": "taken", "notes": [], "at": AT})
    with engine.connect() as conn:
        assert [r.name for r in conn.execute(select(things.c.name))] == ["taken"]  # "other" went with the rollback


def test_a_statement_whose_results_need_processing_is_executed_the_ordinary_way(engine: Engine) -> None:
    with engine.begin() as conn:
        one_row(conn, INSERT, {"name": "read", "notes": {"a": 1}, "at": AT})
        row = one_row(conn, READ_AT, {"name": "read"})
        missing = one_row(conn, READ_AT, {"name": "nobody"})
    assert row is not None and row[0] == AT and row[0].tzinfo == dt.UTC and row[1] == {"a": 1}
    assert _cache[id(READ_AT)].text is None
    assert missing is None


@pytest.mark.skipif(not ON_POSTGRES, reason="a server that ends the connection (SQLite has none)")
def test_a_connection_the_server_ended_is_a_disconnect_and_invalidated(engine: Engine) -> None:
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            one_row(conn, INSERT, {"name": "lost", "notes": [], "at": AT})
        assert raised.value.connection_invalidated and conn.invalidated


LOCK = "SELECT pg_advisory_xact_lock(424243)"


def _lock_holders(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        query = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 424243 AND granted"
        return list(conn.exec_driver_sql(query).scalars())


@pytest.mark.skipif(not ON_POSTGRES, reason="psycopg's own BEGIN (SQLite's is BEGIN IMMEDIATE, sent by app.db)")
def test_begin_with_opens_the_transaction_with_the_statement_and_the_rest_commits_or_rolls_back_with_it(engine: Engine) -> None:
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.commit()
        assert begin_with(conn, LOCK)
        assert _lock_holders(engine) == [pid]  # held by this transaction
        one_row(conn, INSERT, {"name": "kept", "notes": [], "at": AT})
        assert not begin_with(conn, LOCK)  # a transaction is open: nothing sent
        conn.commit()
        assert _lock_holders(engine) == []  # a transaction-level lock: gone with the commit
        assert begin_with(conn, LOCK)
        one_row(conn, INSERT, {"name": "undone", "notes": [], "at": AT})
        conn.rollback()
    with engine.connect() as conn:
        assert [r.name for r in conn.execute(select(things.c.name))] == ["kept"]


@pytest.mark.skipif(not ON_POSTGRES, reason="psycopg's own BEGIN")
def test_begin_with_a_failing_statement_raises_sqlalchemys_error_once_and_leaves_no_transaction(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.commit()
        with pytest.raises(DBAPIError) as raised:
            begin_with(conn, "SELECT 1 / 0")
        assert "division by zero" in str(raised.value)
        conn.rollback()
        assert conn.exec_driver_sql("SELECT 2").scalar_one() == 2


@pytest.mark.skipif(not ON_POSTGRES, reason="a lock held by another server session")
def test_begin_with_a_lock_timeout_waits_once_and_is_a_temporary_fault(engine: Engine) -> None:
    with engine.connect() as holder, engine.connect() as conn:
        holder.exec_driver_sql(LOCK)
        conn.exec_driver_sql("SET lock_timeout = '1s'")
        conn.commit()
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            begin_with(conn, LOCK)
        waited = time.monotonic() - started
        # Raised by the one attempt (it is not sent again the ordinary way: 2 s); exit 75 for `mail ingest`
        assert 0.9 < waited < 1.9 and "lock timeout" in str(raised.value) and is_temporary(raised.value)
        conn.rollback()
        holder.rollback()


@pytest.mark.skipif(not ON_POSTGRES, reason="a lock held by another server session")
def test_begin_with_is_interrupted_while_it_waits_for_the_lock(engine: Engine) -> None:
    def interrupt(*_args: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with engine.connect() as holder, engine.connect() as conn:
            holder.exec_driver_sql(LOCK)
            conn.commit()
            started = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(KeyboardInterrupt):
                begin_with(conn, LOCK)
            # Ctrl-C (or a shutdown handler) is not held back for as long as the other holds the lock
            assert time.monotonic() - started < 2.0 and conn.invalidated
            holder.rollback()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not ON_POSTGRES, reason="a server that ends the connection")
def test_begin_with_on_a_connection_the_server_ended_is_a_temporary_fault(engine: Engine) -> None:
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.commit()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            begin_with(conn, LOCK)
        assert raised.value.connection_invalidated and is_temporary(raised.value)


def test_one_row_on_a_connection_with_no_transaction_begins_one_and_its_commit_keeps_the_row(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.commit()
        assert not conn.in_transaction()
        one_row(conn, INSERT, {"name": "autobegun", "notes": [], "at": AT})
        assert conn.in_transaction()
        conn.commit()
    with engine.connect() as conn:
        assert [r.name for r in conn.execute(select(things.c.name))] == ["autobegun"]


def test_python_side_defaults_and_numeric_results_take_execute(engine: Engine) -> None:
    with engine.begin() as conn:
        first = one_row(conn, INSERT_COUNTED, {"name": "counted"})
        number = one_row(conn, NUMERIC, {})
    assert first is not None and first.counter == 7  # the column's Python default ran, as execute runs it
    assert number is not None and number.n == decimal.Decimal("1.50")
    assert _cache[id(INSERT_COUNTED)].text is None and _cache[id(NUMERIC)].text is None


def test_begin_with_applies_only_to_psycopg(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.commit()
        assert begin_with(conn, "SELECT 1") == ON_POSTGRES
        conn.rollback()


# One parameter used twice in a statement (two BindParameter objects, one name): one value, processed once.
TWICE = select(things.c.id, things.c.name).where(things.c.name == bindparam("name"), literal_column("'x'") != bindparam("name"))
BYTES_TWICE = select(literal(1).label("one")).where(bindparam("b", type_=LargeBinary) == bindparam("b", type_=LargeBinary))


def test_a_parameter_named_twice_is_processed_once_and_the_row_reads_by_name(engine: Engine) -> None:
    with engine.begin() as conn:
        one_row(conn, INSERT, {"name": "named", "notes": [], "at": AT})
        row = one_row(conn, TWICE, {"name": "named"})
        same = one_row(conn, BYTES_TWICE, {"b": b"\x00\xffbytes"})
    assert row is not None and row.name == "named" and row[1] == "named" and row.id == row[0]
    assert same is not None and same.one == 1


def test_last_rows_reads_the_last_statements_rows_and_takes_positional_parameters(engine: Engine) -> None:
    with engine.begin() as conn:
        assert last_rows(conn, "SELECT 2 UNION ALL SELECT 3") == [(2,), (3,)]
        if ON_POSTGRES:  # several statements in one simple query (SQLite's driver takes one at a time)
            assert last_rows(conn, "SELECT 1; SELECT 2 UNION ALL SELECT 3") == [(2,), (3,)]
            rows = last_rows(conn, "INSERT INTO compiled_once_counted (name, counter) VALUES (%s, %s), (%s, %s) RETURNING name", ("a", 1, "b", 2))
            assert sorted(rows) == [("a",), ("b",)]


@pytest.mark.skipif(not ON_POSTGRES, reason="psycopg's parameters")
def test_last_rows_raises_sqlalchemys_errors(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        last_rows(conn, "INSERT INTO compiled_once_things (id, name, notes, at) VALUES (%s, %s, '[]', now()), (%s, %s, '[]', now())", (1, "x", 2, "x"))
