"""A statement built once, compiled once, sent on the DBAPI cursor: SQLAlchemy's per-execution work skipped.

For the writes every inbound message makes (issue 11 item 7): a Core statement held for the life of the process
(built once, as `functools.cache` builds the ingest path's writes) is compiled once per dialect; each execution
sends its SQL text and parameters on a cursor of the connection's DBAPI connection and reads back its one row.
SQLAlchemy's per-execution work (the compiled-cache lookup, the execution context, the result object) cost about
0.2 ms of CPU a message over the ingest corpus (bench/ingest.py, `Session.execute` against this path).

What `Connection.execute` does and this keeps: the parameters pass through each bind parameter's own type
processor (`TypeEngine.bind_processor`: a JSON column's serialiser, the UTC date-time decorator); the cursor events
fire (`before_cursor_execute`, `after_cursor_execute`), so statement counters and loggers see the statement; a
DBAPI error is raised as SQLAlchemy's (`DBAPIError.instance`: IntegrityError, OperationalError, ...) and a lost
connection is invalidated, as SQLAlchemy does for any statement. What it does not: result processing. Only a
statement whose returned columns need none (integers, text, booleans) takes this path, and none with an expanding
(`IN`) parameter; any other is executed by `Connection.execute` itself.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable

# At most this many statements are kept compiled; the ingest path has a handful. Past it the cache starts again.
MAX_STATEMENTS = 256


@dataclass(frozen=True)
class _Compiled:
    statement: Any  # kept: the cache is keyed by its id(), which must not be reused while the entry lives
    dialect: Dialect
    text: str | None  # None: not for this path (executed the ordinary way)
    compiled: Any
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    row: Any  # a namedtuple class of the returned columns' keys (a duplicate or unusable key renamed _N)


_cache: dict[int, _Compiled] = {}
_lock = threading.Lock()


def one_row(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> Any:
    """The one row `statement` returns with `params`, or None when it returns none; on `conn`'s transaction.

    The row is a named tuple: by position, or by the returned columns' keys as attributes (as SQLAlchemy's Row).

    `statement` must be an object kept for the life of the process (it is compiled once, keyed by identity) that
    returns at most one row. Thread-safe. Errors as `conn.execute` raises them (see the module).
    """
    entry = _cache.get(id(statement))
    if entry is None or entry.statement is not statement or entry.dialect is not conn.dialect:
        entry = _compile(statement, conn.dialect)
    if entry.text is None:
        row = conn.execute(statement, dict(params)).one_or_none()
        return None if row is None else entry.row._make(row)
    values = entry.compiled.construct_params(dict(params))
    for key, process in entry.processors:
        values[key] = process(values[key])
    text, dispatch = entry.text, cast(Any, conn.dispatch)
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        for before in dispatch.before_cursor_execute:
            text, values = before(conn, cursor, text, values, None, False)
        cursor.execute(text, values)
        for after in dispatch.after_cursor_execute:
            after(conn, cursor, text, values, None, False)
        row = cursor.fetchone()
    except conn.dialect.loaded_dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, dbapi_conn, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(text, values, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=conn.dialect) from exc
    finally:
        cursor.close()
    return None if row is None else entry.row._make(row)


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled: Any = cast(ClauseElement, statement).compile(dialect=dialect)
    text: str | None = compiled.string
    if text is None or "POSTCOMPILE" in text or compiled.positional or _processes_results(statement, dialect):
        text = None
    processors: dict[str, Callable[[Any], Any]] = {}
    # Each bind parameter and the name it is rendered (and valued) under; one parameter used twice (two BindParameter
    # objects of one name) is one value, processed once.
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.setdefault(compiled.escaped_bind_names.get(name, name), process)
    row = collections.namedtuple("Row", [str(column.key) for column in _returned(statement)], rename=True)  # type: ignore[misc]
    entry = _Compiled(statement, dialect, text, compiled, tuple(processors.items()), row)
    with _lock:
        if len(_cache) >= MAX_STATEMENTS:
            _cache.clear()
        _cache[id(statement)] = entry
    return entry


def _returned(statement: Executable) -> Any:
    # A SELECT's columns, or what an INSERT/UPDATE ... RETURNING returns.
    columns: Any = getattr(statement, "selected_columns", None)
    return getattr(statement, "exported_columns", ()) if columns is None else columns


def _processes_results(statement: Executable, dialect: Dialect) -> bool:
    return any(column.type.dialect_impl(dialect).result_processor(dialect, None) is not None for column in _returned(statement))


def begin_with(conn: Connection, statement: str) -> bool:
    """Open `conn`'s database transaction with `statement` (SQL text without parameters): BEGIN and it sent as one simple
    query, one round trip where psycopg would send BEGIN on its own first. True when done; False (nothing sent, or
    whatever was sent undone) where it does not apply: not psycopg, a transaction already open, a connection set to
    autocommit or to a non-default isolation, read-only or deferrable mode, or the query failed. The caller then
    executes `statement` the ordinary way, so a failure is raised as it always was (a lost connection, a lock
    timeout), by `Connection.exec_driver_sql`. The cursor events see `statement` (BEGIN, as psycopg's own, unseen).
    """
    if conn.dialect.driver != "psycopg":
        return False
    from psycopg import pq  # the driver is psycopg: importable

    if not conn.in_transaction():
        conn.begin()  # SQLAlchemy's side of it (executing would autobegin): its commit and rollback reach the driver
    dbapi_conn: Any = conn.connection.dbapi_connection
    if (
        dbapi_conn is None
        or dbapi_conn.pgconn.transaction_status != pq.TransactionStatus.IDLE
        or dbapi_conn.autocommit
        or (dbapi_conn.isolation_level, dbapi_conn.read_only, dbapi_conn.deferrable) != (None, None, None)
    ):
        return False
    dispatch: Any = conn.dispatch
    for before in dispatch.before_cursor_execute:
        statement, _ = before(conn, None, statement, (), None, False)
    result = dbapi_conn.pgconn.exec_(b"BEGIN; " + statement.encode())
    if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK) and dbapi_conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
        for after in dispatch.after_cursor_execute:
            after(conn, None, statement, (), None, False)
        return True
    if dbapi_conn.pgconn.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
        dbapi_conn.pgconn.exec_(b"ROLLBACK")  # back to no transaction: the ordinary path begins again and meets the error
    return False
