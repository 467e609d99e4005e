"""Declarative base, engine set-up and session lifecycles.

Views get one session per request (`db.session`), the CLI and workers open
`session_scope()`. Services receive a session and only flush: the edge commits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import (
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    false,
    func,
    literal_column,
    make_url,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Session, configure_mappers, make_transient_to_detached, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.pool_liveness import ping_when_in_doubt

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


intpk = Annotated[int, mapped_column(primary_key=True)]
utc = Annotated[dt.datetime, mapped_column(UTCDateTime())]
str_short = Annotated[str, mapped_column(String(200))]


class Base(DeclarativeBase):
    """Every model's base; constraint names are stable for Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


def table_of_model(model: type) -> Table:
    """The Core table a mapped class is stored in."""
    table: object = sa_inspect(model).local_table
    assert isinstance(table, Table), f"{model.__name__} is not mapped to a table"
    return table


M = TypeVar("M")


_MAPPED: dict[type, tuple[Any, frozenset[str]]] = {}


def _mapped(model: type) -> tuple[Any, frozenset[str]]:
    found = _MAPPED.get(model)
    if found is None:
        configure_mappers()  # the constructor would configure them; new_instance does not
        mapper: Any = sa_inspect(model)
        found = _MAPPED[model] = (mapper.class_manager, frozenset(mapper.column_attrs.keys()))
    return found


def bare_instance(model: type[M]) -> M:
    """An empty instance of the mapped class `model`, made without its constructor (no attribute events): for state a
    caller sets itself as loaded (`loaded`; the audit append's events)."""
    instance: M = _mapped(model)[0].new_instance()
    return instance


def loaded(session: Session, model: type[M], **values: Any) -> M:
    """An instance of `model` with `values` (its primary key among them) as its loaded state, persistent in `session`:
    as a query would return the row a Core statement just wrote. Nothing to flush; relationships not given load on
    access. The values are set as loaded state, not through the constructor's attribute events (they cost more CPU
    than the statement that wrote the row: issue 11 item 7). Raises TypeError for a name that is no mapped column.
    """
    unknown = values.keys() - _mapped(model)[1]
    if unknown:
        raise TypeError(f"{model.__name__} has no mapped column {sorted(unknown)!r}")
    instance = bare_instance(model)
    vars(instance).update(values)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


# Lock conflicts, not outages: Postgres's serialization failure, deadlock and lock timeout (SQLSTATE).
_CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_log = logging.getLogger(__name__)
T = TypeVar("T")


def is_contention(exc: BaseException) -> bool:
    """Whether a database error is a lock conflict that the same transaction, run again, may pass.

    SQLite's SQLITE_BUSY* / SQLITE_LOCKED* (a busy timeout ran out, or SQLite refused one side at once: a stale
    WAL snapshot, a deadlock it breaks), Postgres's 40001, 40P01, 55P03. An unreachable or failing database is not.
    """
    orig = getattr(exc, "orig", None)
    name = getattr(orig, "sqlite_errorname", None)
    if name:
        return str(name).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    return getattr(orig, "sqlstate", None) in _CONTENTION_SQLSTATES


def retry_contention(call: Callable[[], T], *, attempts: int = 3, pause: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, run again after `pause` seconds (doubling) when it fails on lock contention, at most `attempts` times.

    For a unit of work that commits nothing when it raises (an inbound message: the MTA would otherwise defer it
    for minutes). The last error propagates, as does any error that is not contention (`is_contention`).
    """
    attempt = 1
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or not is_contention(exc):
                raise
            _log.warning("database lock conflict (%s); trying again, attempt %d of %d", type(getattr(exc, "orig", exc)).__name__, attempt + 1, attempts)
            sleep(pause * 2 ** (attempt - 1))
            attempt += 1


def ids_in(session: Session, column: Any, ids: Collection[int]) -> Any:
    """`column IN ids` for thousands of ids as ONE parameter, bounded by their range (a WHERE clause; none: matches nothing).

    Postgres: `column BETWEEN lo AND hi AND column = ANY(:ids)` (an integer array); SQLite: `... AND column IN
    (SELECT value FROM json_each(:ids))`. A plain `in_()` renders one bound parameter per id, which costs the
    compiler and the driver more than the statement itself at batch sizes; the range keeps the planner on the
    index (../shared/PERFORMANCE.md).
    """
    values = sorted({int(i) for i in ids})
    if not values:
        return false()
    bounded = column.between(values[0], values[-1])
    if session.get_bind().dialect.name == "postgresql":
        # The array as one text literal, cast by the server: the driver would dump a Python list element by element.
        literal = "{" + ",".join(map(str, values)) + "}"
        return and_(bounded, column == any_(cast(bindparam(None, literal, type_=String()), ARRAY(Integer))))
    listed: Any = select(literal_column("value")).select_from(func.json_each(bindparam(None, json.dumps(values), type_=String())))
    return and_(bounded, column.in_(listed))


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the pragmas and transaction behaviour the desk relies on."""
    if url.startswith("sqlite"):
        _owner_only_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, **kwargs)
    ping_when_in_doubt(engine)  # pre_ping's safety without its round trip on every transaction
    return engine


def _owner_only_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only (0600) before SQLite does, and tighten one made earlier.

    SQLite gives its -wal and -shm files the database file's permissions, so 0600 here
    keeps all three unreadable to other local users whatever the umask.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Only a missing file is opened here: closing any descriptor of an existing database drops
        # this process's POSIX locks on it (SQLite's, held by its open connections), and another
        # process closing its last connection then deletes the -wal/-shm still in use here.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if candidate.exists() and candidate.stat().st_uid == os.getuid() and candidate.stat().st_mode & 0o077:
            candidate.chmod(0o600)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and defers locks;
    # take control (SQLAlchemy docs, "Serializable isolation / Savepoints").
    # BEGIN IMMEDIATE takes the write lock up front, so two writers queue on
    # busy_timeout instead of failing on a stale WAL snapshot.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass
class _DatabaseState:
    engine: Engine
    sessionmaker: sessionmaker[Session]


class Database:
    """Engine and session factory per app, reached through the current app context.

    State lives in `app.extensions["db"]`, not on this object, so two apps in
    one process (tests with their own database) never share an engine.
    """

    def init_app(self, app: Flask) -> None:
        """Create the engine from DATABASE_URL and close sessions after each request."""
        engine = make_engine(app.config["DATABASE_URL"])
        app.extensions["db"] = _DatabaseState(engine, sessionmaker(bind=engine, expire_on_commit=False))
        app.teardown_appcontext(self._close_request_session)

    @staticmethod
    def state(app: Flask | None = None) -> _DatabaseState:
        """The engine and session factory of `app`, or of the current app."""
        state: _DatabaseState = (app or current_app).extensions["db"]
        return state

    @property
    def engine(self) -> Engine:
        """The current app's engine."""
        return self.state().engine

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        """The current app's session factory."""
        return self.state().sessionmaker

    @property
    def session(self) -> Session:
        """The session of the current request (or app context), opened on first use."""
        if "db_session" not in g:
            g.db_session = self.sessionmaker()
        session: Session = g.db_session
        return session

    def _close_request_session(self, _exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A unit of work for the CLI and workers: commit on success, roll back on error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
