"""Alembic from code: the only way the schema is made (`flask db upgrade`, tests), and the app role's grants.

Migrations run as the schema owner (MIGRATION_DATABASE_URL, else DATABASE_URL). On Postgres the app
itself should connect as another role that may read and write rows but owns nothing: only an owner
(or a superuser) can DROP or DISABLE the audit table's triggers, so the app cannot lift its own guard
(issue 12 item 13, WECO §9.1(f)). `grant_app_role` gives such a role exactly what the app needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import NullPool, create_engine, text

from app.exceptions import Refused
from config.settings import REPO_ROOT

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Append-only for the app: it may add events and read them, never change or remove one.
APPEND_ONLY_TABLES = ("audit_events",)
READ_ONLY_TABLES = ("alembic_version",)


class MigrationRefused(Refused):
    """Alembic refused the request (an unknown revision, a bad range) or the role cannot be set up."""


# Alembic is imported where it is used: every process that imports the app (each `flask` command, each piped message)
# would otherwise load it, and only migrations need it.


def alembic_config(url: str) -> Config:
    """An Alembic config for the repository's migrations and the given database."""
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema down to `revision`."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise when the models and the migrated schema differ."""
    from alembic import command

    command.check(alembic_config(url))


def run_command(fn: Callable[[str, str], T], url: str, argument: str) -> T:
    """Run `fn(url, argument)` for the CLI: Alembic's refusal (e.g. an unknown revision) becomes MigrationRefused, one line."""
    from alembic.util import CommandError

    try:
        return fn(url, argument)
    except CommandError as exc:
        raise MigrationRefused(str(exc).splitlines()[0] if str(exc) else "alembic refused the command") from None


def grant_statements(role: str) -> list[str]:
    """The SQL that lets `role` use the schema as the app does (rows only; no DDL, no triggers, audit append-only)."""
    if not _ROLE.match(role):
        raise MigrationRefused("ROLE must be a plain lower-case Postgres role name")
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE CREATE ON SCHEMA public FROM {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        # Tables and sequences later migrations create (as the owner who runs this) get the same.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    statements += [f"REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {t} FROM {role}" for t in APPEND_ONLY_TABLES]
    statements += [f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {t} FROM {role}" for t in READ_ONLY_TABLES]
    return statements


def grant_app_role(url: str, role: str) -> list[str]:
    """Run `grant_statements(role)` as the owner on Postgres; returns what was done, one line each.

    MigrationRefused when the database is not Postgres, the role does not exist, or it is the
    owner or a superuser (such a role could drop the audit triggers whatever it is granted).
    """
    statements = grant_statements(role)
    if not url.startswith("postgresql"):
        raise MigrationRefused("db grant is for Postgres; SQLite has no roles (the file's owner is the only user)")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            found = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
            if found is None:
                raise MigrationRefused(f"no role {role}: CREATE ROLE {role} LOGIN PASSWORD '...' first")
            owner = conn.execute(text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'")).scalar()
            if found.rolsuper or owner == role:
                raise MigrationRefused("the app role must be neither a superuser nor the owner of the tables")
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    return [f"{statement};" for statement in statements]
