"""The schema is made only by migrations: head matches the models; every revision goes up and down."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app import migrations
from app.db import make_engine
from tests.databases import fresh_database


def test_head_matches_the_models(database_url: str) -> None:
    # alembic check raises when autogenerate would emit any operation.
    migrations.check(database_url)


def test_every_revision_upgrades_and_downgrades(tmp_path: Path) -> None:
    with fresh_database(tmp_path, "updown") as url:
        cfg = migrations.alembic_config(url)
        revisions = list(reversed(list(ScriptDirectory.from_config(cfg).walk_revisions())))
        assert revisions, "no migrations found"
        for rev in revisions:
            migrations.upgrade(url, rev.revision)
            migrations.downgrade(url, rev.down_revision or "base")
            migrations.upgrade(url, rev.revision)
        engine = make_engine(url)
        try:
            assert "controllers" in inspect(engine).get_table_names()
        finally:
            engine.dispose()
        migrations.downgrade(url, "base")
        engine = make_engine(url)
        try:
            assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        finally:
            engine.dispose()


def test_one_head_only() -> None:
    cfg = migrations.alembic_config("sqlite:////nonexistent")
    assert len(ScriptDirectory.from_config(cfg).get_heads()) == 1
