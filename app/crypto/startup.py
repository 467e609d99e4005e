"""The keyring at process start: built from the config, bound to the engine, checked against the database.

`install_keyring` is called by create_app (the composition root) for every
process that creates the app: web, CLI, workers, scheduler. Nothing here reads
Flask: the config mapping and the engine are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from app.crypto.keyring import Keyring, KeyringError, bind_engine
from app.crypto.keys import data_keys
from app.crypto.periods import period_keys
from app.db import make_engine


def check_versions_in_use(conn: Connection, keyring: Keyring) -> None:
    """KeyringError naming the variable when a master version in use has no secret or is above the current one."""
    counted: dict[int | None, int] = {}
    keys = select(data_keys.c.master_version, func.count()).where(data_keys.c.state != "shredded").group_by(data_keys.c.master_version)
    queries = [keys]
    if inspect(conn).has_table("period_keys"):  # audit month keys (app.crypto.periods); none before migration 0022
        queries.append(select(period_keys.c.master_version, func.count()).where(period_keys.c.state == "active").group_by(period_keys.c.master_version))
    for query in queries:
        for version, n in conn.execute(query):
            counted[version] = counted.get(version, 0) + int(n)
    in_use = [(v, n) for v, n in counted.items() if v is not None]
    for version, n in sorted(in_use):
        if version > keyring.current_version:
            raise KeyringError(f"MASTER_KEY_VERSION={keyring.current_version} is lower than master key version {version}, which still wraps {n} data keys")
        if not keyring.has_version(version):
            raise KeyringError(f"MASTER_SECRET_V{version} is not set but master key version {version} still wraps {n} data keys (restore it, run keys rotate)")


def check_database(url: str, keyring: Keyring) -> None:
    """The startup check: every master version the database still uses is configured (KeyringError otherwise).

    Runs on a throwaway connection (no pooled socket survives a pre-fork);
    a database not reachable or not migrated yet is left to the commands that need it.
    """
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("data_keys"):
                return
            check_versions_in_use(conn, keyring)
    except (OperationalError, ProgrammingError):
        return
    finally:
        engine.dispose()


def install_keyring(config: Mapping[str, Any], engine: Engine | None) -> Keyring:
    """The keyring of `config` (MASTER_SECRET, MASTER_KEY_VERSION, MASTER_SECRETS_OLD), bound to `engine` and checked.

    KeyringError (a ConfigError naming the variable) when the secrets are missing or malformed, or when
    the database still needs a master version that is not configured.
    """
    keyring = Keyring.from_config(config)
    if engine is not None:
        bind_engine(engine, keyring)
    check_database(config["DATABASE_URL"], keyring)
    return keyring
