"""A statement built once, compiled once, sent on the DBAPI cursor: SQLAlchemy's per-execution work skipped.

For the statements every inbound message makes (issue 11 item 7): a Core statement held for the life of the process
(built once, as `functools.cache` builds the ingest path's writes and lookups) is compiled once per dialect; each
execution sends its SQL text and parameters on a cursor of the connection's DBAPI connection and reads back its one
row. SQLAlchemy's per-execution work (the compiled-cache lookup, the execution context, the result object) cost
about 0.2 ms of CPU a message for the writes and as much for the duplicate lookup over the ingest corpus (docs/
benchmarks.md, ninth pass). `begin_with` sends a transaction's first statement with its BEGIN (one round trip).

What `Connection.execute` does and this keeps: SQLAlchemy's transaction is begun if it was not (its commit and
rollback reach the driver); the parameters pass through each bind parameter's own type processor
(`TypeEngine.bind_processor`: a JSON column's serialiser, the UTC date-time decorator); the `before_cursor_execute`
and `after_cursor_execute` events fire (statement counters see the statement; the `context` they get is None); any
error, DBAPI or interrupt, goes through SQLAlchemy's own handling (`Connection._handle_dbapi_exception`): raised as
SQLAlchemy's (IntegrityError, OperationalError, ...), `handle_error` events, a lost connection invalidated with the
pool's older connections. What it does not: result processing, Python-side column defaults, the engine's `echo`
log. So a statement whose returned columns need result processing, with a Python-side default or onupdate, or with
an expanding (`IN`) parameter, and any statement on an engine with `echo` on, is executed by `Connection.execute`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement, Executable

T = TypeVar("T")

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
    if entry.text is None or conn.engine.echo:
        row = conn.execute(statement, dict(params)).one_or_none()
        return None if row is None else entry.row._make(row)
    values = entry.compiled.construct_params(dict(params))
    for key, process in entry.processors:
        values[key] = process(values[key])
    row = _on_cursor(conn, entry.text, values, lambda cursor: cursor.fetchone())
    return None if row is None else entry.row._make(row)


def session_row(session: Session, statement: Executable, params: Mapping[str, Any]) -> Any:
    """`one_row` on the session's connection, after the flush the ORM's own execute would make (autoflush: what the
    transaction added so far is seen)."""
    if session.autoflush:
        session.flush()
    return one_row(session.connection(), statement, params)


def last_rows(conn: Connection, text: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """The rows of the last result of SQL `text` (one statement with positional `%s` parameters, or several statements
    without parameters: one simple query) on `conn`'s transaction; psycopg only (`conn.exec_driver_sql` elsewhere).

    For SQL text the caller built once (the audit chain's lock and head, its INSERT): the same as
    `conn.exec_driver_sql(text, params)` then the last result's rows, without SQLAlchemy's execution context and result.
    Errors, events and the transaction as `one_row`. With the engine's `echo` on, exec_driver_sql itself.
    """
    if conn.dialect.driver != "psycopg" or conn.engine.echo:
        result = conn.exec_driver_sql(text, tuple(params) if params is not None else ())
        ordinary = result.cursor
        try:
            while ordinary is not None and getattr(ordinary, "nextset", None) and ordinary.nextset():
                pass  # psycopg: to the last result (sqlite3 has one, and no nextset)
            return [tuple(r) for r in ordinary.fetchall()] if ordinary is not None and ordinary.description is not None else []
        finally:
            result.close()
    return _on_cursor(conn, text, tuple(params) if params is not None else None, _last_result_rows)


def _last_result_rows(cursor: Any) -> list[tuple[Any, ...]]:
    while cursor.nextset():
        pass  # to the last statement's result
    return [tuple(r) for r in cursor.fetchall()] if cursor.description is not None else []


def _on_cursor(conn: Connection, text: str, values: Any, read: Callable[[Any], T]) -> T:
    # `text` with `values` on a cursor of `conn`'s DBAPI connection, in SQLAlchemy's transaction (begun as execute
    # autobegins: else the driver's transaction would be one SQLAlchemy never commits), with the cursor events; what
    # `read` makes of the cursor. Errors and interrupts through SQLAlchemy's own handling.
    if not conn.in_transaction():
        conn.begin()
    dispatch = cast(Any, conn.dispatch)
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = None
    try:
        cursor = dbapi_conn.cursor()
        for before in dispatch.before_cursor_execute:
            text, values = before(conn, cursor, text, values, None, False)
        cursor.execute(text, values)
        for after in dispatch.after_cursor_execute:
            after(conn, cursor, text, values, None, False)
        return read(cursor)
    except BaseException as exc:
        _raise_as_sqlalchemy(conn, exc, text, values, cursor)
    finally:
        if cursor is not None:
            cursor.close()


def _raise_as_sqlalchemy(conn: Connection, exc: BaseException, statement: str, parameters: Any, cursor: Any) -> NoReturn:
    # SQLAlchemy's own handling of an error in a statement it executed: wrapped as its exception (a DBAPI error) or
    # re-raised (anything else), handle_error events, invalidation of a lost connection and of the pool's older ones.
    conn._handle_dbapi_exception(exc, statement, parameters, cursor, None)
    raise exc  # not reached: the handler raises


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled: Any = cast(ClauseElement, statement).compile(dialect=dialect)
    text: str | None = compiled.string
    prefetch = compiled.insert_prefetch or compiled.update_prefetch  # Python-side defaults the execution context runs
    if text is None or "POSTCOMPILE" in text or compiled.positional or prefetch or _processes_results(statement, dialect):
        text = None
    processors: dict[str, Callable[[Any], Any]] = {}
    # Each bind parameter and the name it is rendered (and valued) under; one parameter used twice (two BindParameter
    # objects of one name) is one value, processed once.
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.setdefault(compiled.escaped_bind_names.get(name, name), process)
    # The field names are the statement's, known only now: mypy cannot type a namedtuple made from a runtime list.
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
    try:
        return any(column.type.dialect_impl(dialect).result_processor(dialect, None) is not None for column in _returned(statement))
    except Exception:  # a type that cannot say without the cursor's type (Numeric, Float on psycopg): take execute
        return True


def begin_with(conn: Connection, statement: str) -> bool:
    """Open `conn`'s database transaction with `statement` (SQL text without parameters): BEGIN and it sent as one simple
    query, one round trip where psycopg would send BEGIN on its own first. True when sent and done.

    False, with nothing sent, where it does not apply: not psycopg, a transaction already open, a connection set to
    autocommit or to a non-default isolation, read-only or deferrable mode, an engine with `echo` on; the caller then
    executes `statement` the ordinary way. An error of the query (a lock timeout, a lost connection) or an interrupt
    while it waits (psycopg's own wait: Ctrl-C cancels the query on the server) rolls the transaction back and is
    raised as `Connection.exec_driver_sql` would raise it (see the module); the statement is not sent again.
    """
    if conn.dialect.driver != "psycopg" or conn.engine.echo:
        return False
    from psycopg import errors, generators, pq  # the driver is psycopg: importable

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
    cursor = dbapi_conn.cursor()  # for the listeners, as execute gives them one
    try:
        for before in dispatch.before_cursor_execute:
            statement, _ = before(conn, cursor, statement, (), None, False)
        pgconn, encoding = dbapi_conn.pgconn, dbapi_conn.info.encoding
        pgconn.send_query(b"BEGIN; " + statement.encode(encoding))
        results = dbapi_conn.wait(generators.execute(pgconn))
        failed = next((r for r in results if r.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)), None)
        if failed is not None:
            raise errors.error_from_result(failed, encoding=encoding)
        for after in dispatch.after_cursor_execute:
            after(conn, cursor, statement, (), None, False)
    except BaseException as exc:
        if dbapi_conn.pgconn.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            dbapi_conn.pgconn.exec_(b"ROLLBACK")  # BEGIN went through: nothing of this transaction is kept
        _raise_as_sqlalchemy(conn, exc, statement, (), cursor)
    finally:
        cursor.close()
    return True
