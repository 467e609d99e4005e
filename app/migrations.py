"""Alembic from code: the only way the schema is made (`flask db upgrade`, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from config.settings import REPO_ROOT


def alembic_config(url: str) -> Config:
    """An Alembic config for the repository's migrations and the given database."""
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema down to `revision`."""
    command.downgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise when the models and the migrated schema differ."""
    command.check(alembic_config(url))
