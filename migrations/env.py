"""Alembic environment: one metadata for SQLite and Postgres; batch mode for SQLite ALTERs."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from app.db import UTCDateTime, make_engine
from app.models import Base
from config.settings import database_url

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Render the desk's UTC column type as the plain type it stores."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Indexes the migrations make on Postgres only, on expressions SQLite cannot reflect (0027): not in the models, so
# `alembic check` leaves them out rather than propose dropping them.
POSTGRES_ONLY_INDEXES = frozenset({"ix_controller_identifiers_identifier_lower"})


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Compare everything but the Postgres-only expression indexes."""
    return not (type_ == "index" and name in POSTGRES_ONLY_INDEXES)


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ.get("MIGRATION_DATABASE_URL") or database_url(os.environ)


def run_migrations_offline() -> None:
    url = _url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode rebuilds a table on SQLite (copy, drop, rename): with foreign keys on, dropping the old
                # table fires ON DELETE CASCADE into its children and empties them (0010 once deleted every ticket
                # message). SQLite ignores this pragma inside a transaction, so it goes on the raw connection
                # (autocommit) before Alembic begins; the keys are checked after the migrations and turned back on.
                _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
                render_item=render_item,
                include_object=include_object,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = _sqlite_pragma(connection, "PRAGMA foreign_key_check")
                _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
                if broken:
                    raise RuntimeError(f"migration left {len(broken)} row(s) whose foreign keys point nowhere: {sorted({row[0] for row in broken})}")
    finally:
        engine.dispose()  # also when a migration raises: no pooled connection is left open


def _sqlite_pragma(connection: Connection, pragma: str) -> list[tuple[object, ...]]:
    """Run a pragma on the DBAPI connection itself, outside any SQLAlchemy transaction."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(pragma)
        return list(cursor.fetchall())
    finally:
        cursor.close()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
